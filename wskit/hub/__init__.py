"""A hub: messages published on a channel reach every connection subscribed to it, on every worker.

``broadcast`` reaches the connections of one process. A :class:`Hub` reaches
the connections subscribed to a channel wherever they are: in this process
with the embedded :class:`LocalBackend` (the default), or in every process
and on every machine that shares a Redis server with
:class:`wskit.hub.redis.RedisBackend` (``pip install 'wskit[redis]'``).

::

    hub = Hub()                                   # or Hub.from_url("redis://127.0.0.1:6379/0")

    async def chat(ws):
        hub.subscribe("lobby", ws)                # unsubscribed when ws closes
        async for message in ws:
            await hub.publish("lobby", message)

    async with hub, serve(chat, "127.0.0.1", 8765) as server:
        await server.serve_forever()

Each worker delivers to its own subscribers with
:func:`wskit.asyncio.broadcast`, so slow clients are treated the same way: a
connection that cannot take the message now (its write buffer is over
``write_limit``, or it is sending a fragmented message) does not get it and
is reported (``on_skipped``, counted in :attr:`Hub.skipped`); no client ever
holds the others up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..asyncio.connection import Connection
from ..asyncio.server import broadcast
from .base import Backend, Deliver, Message

__all__ = ["Backend", "Hub", "LocalBackend", "Message", "OnSkipped"]

OnSkipped = Callable[[str, list[Connection]], Any]


class LocalBackend(Backend):
    """The embedded backend: the hub's own process only, no server, nothing lost.

    :meth:`Hub.publish` delivers to the local subscribers before it returns.
    """

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def publish(self, channel: str, message: Message) -> None:
        if self._deliver is not None:
            self._deliver(channel, message)

    async def close(self) -> None:
        self._deliver = None


def _check_channel(channel: object) -> str:
    if not isinstance(channel, str) or not channel:
        raise TypeError(f"a hub channel is a non-empty str, not {channel!r}")
    return channel


class Hub:
    """Channels of connections, shared by every worker that uses the same backend.

    Args:
        backend: how messages reach the other workers (default: a
            :class:`LocalBackend`, this process only).
        on_skipped: ``(channel, connections)`` called (in the event loop)
            with the connections of this worker that did not get a message
            because they could not take it at once (slow clients; see
            :func:`wskit.asyncio.broadcast`). The default logs a warning.
            Close them, count them, or send again later.
        logger: the hub's logger (default ``wskit.hub``).

    Attributes:
        backend: the backend.
        delivered: messages delivered to this worker's subscribers (one per
            message and channel with at least one local subscriber).
        skipped: connections skipped as slow, summed over every delivery.
    """

    def __init__(self, backend: Backend | None = None, *, on_skipped: OnSkipped | None = None,
                 logger: logging.Logger | None = None) -> None:
        self.backend: Backend = LocalBackend() if backend is None else backend
        self.logger = logger if logger is not None else logging.getLogger("wskit.hub")
        self._on_skipped = on_skipped
        self._channels: dict[str, set[Connection]] = {}
        self._subscriptions: dict[Connection, tuple[set[str], Callable[[Any], None]]] = {}
        self._started = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.delivered = 0
        self.skipped = 0

    @classmethod
    def from_url(cls, url: str | None, **options: Any) -> Hub:
        """A hub for a backend URL: ``None`` or ``"local:"`` for this process only,
        ``"redis://host:port/db"`` (or ``rediss://``, ``unix://``) for Redis.

        Args:
            url: the backend's URL.
            **options: passed to :class:`~wskit.hub.redis.RedisBackend` (``prefix``, ``buffer``...).

        Raises:
            ValueError: a URL of another kind.
        """
        if url is None or url in ("local:", "local://"):
            if options:
                raise TypeError(f"the local hub takes no options, got {sorted(options)}")
            return cls()
        if url.split(":", 1)[0] in ("redis", "rediss", "unix"):
            from .redis import RedisBackend

            return cls(RedisBackend(url, **options))
        raise ValueError(f"unknown hub URL {url!r}: use redis://host:port/db, or local: for this process only")

    # -- life cycle ------------------------------------------------------------

    async def start(self) -> Hub:
        """Start the backend (connect to Redis...). Use ``async with hub:`` instead to close it at the end."""
        if not self._started:
            self._started = True
            await self.backend.start(self._deliver)
        return self

    async def close(self) -> None:
        """Stop the backend. Subscriptions stay; the hub may be started again."""
        if self._started:
            self._started = False
            await self.backend.close()

    async def __aenter__(self) -> Hub:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """Whether published messages leave this worker now (the backend is connected)."""
        return self._started and self.backend.connected

    async def wait_connected(self) -> None:
        """Wait until the backend is connected (at once for the local backend)."""
        await self.backend.wait_connected()

    # -- subscriptions ---------------------------------------------------------

    def subscribe(self, channel: str, connection: Connection) -> None:
        """Deliver the messages of ``channel`` to ``connection`` (on this worker) from now on.

        The connection is unsubscribed from every channel when it closes.
        Subscribing twice does nothing more.
        """
        _check_channel(channel)
        entry = self._subscriptions.get(connection)
        if entry is None:
            def closed(_: Any, connection: Connection = connection) -> None:
                self.unsubscribe_all(connection)

            entry = self._subscriptions[connection] = (set(), closed)
            connection._closed.add_done_callback(closed)
        entry[0].add(channel)
        self._channels.setdefault(channel, set()).add(connection)

    def unsubscribe(self, channel: str, connection: Connection) -> None:
        """Stop delivering ``channel`` to ``connection`` (nothing happens if it was not subscribed)."""
        entry = self._subscriptions.get(connection)
        if entry is None or channel not in entry[0]:
            return
        entry[0].discard(channel)
        members = self._channels[channel]
        members.discard(connection)
        if not members:
            del self._channels[channel]
        if not entry[0]:
            del self._subscriptions[connection]
            connection._closed.remove_done_callback(entry[1])

    def unsubscribe_all(self, connection: Connection) -> None:
        """Unsubscribe ``connection`` from every channel (done when it closes)."""
        entry = self._subscriptions.get(connection)
        if entry is not None:
            for channel in list(entry[0]):
                self.unsubscribe(channel, connection)

    def subscribers(self, channel: str) -> set[Connection]:
        """This worker's connections subscribed to ``channel`` (a copy)."""
        return set(self._channels.get(channel, ()))

    def channels(self, connection: Connection | None = None) -> set[str]:
        """The channels ``connection`` is subscribed to, or every channel with a subscriber here."""
        if connection is None:
            return set(self._channels)
        entry = self._subscriptions.get(connection)
        return set() if entry is None else set(entry[0])

    # -- messages --------------------------------------------------------------

    async def publish(self, channel: str, message: Message | bytearray | memoryview) -> None:
        """Send ``message`` to every connection subscribed to ``channel``, on every worker.

        Returns once the backend took the message: with the local backend,
        after it was written to this worker's subscribers; with Redis, once
        Redis got it (or once it was buffered while Redis is unreachable:
        see :class:`~wskit.hub.redis.RedisBackend`). It never waits for a
        client.

        Raises:
            TypeError: ``message`` is neither ``str`` nor bytes-like, or
                ``channel`` is not a non-empty ``str``.
            RuntimeError: the hub was not started (``async with hub``).
        """
        _check_channel(channel)
        if isinstance(message, (bytearray, memoryview)):
            message = bytes(message)
        elif not isinstance(message, (str, bytes)):
            raise TypeError(f"publish() takes a str or a bytes-like message, not {type(message).__name__}")
        if not self._started:
            if isinstance(self.backend, LocalBackend):
                await self.start()
            else:
                raise RuntimeError("the hub is not started: use `async with hub:` or `await hub.start()` first")
        await self.backend.publish(channel, message)

    def _deliver(self, channel: str, message: Message) -> None:
        """Called by the backend for every message: write it to this worker's subscribers."""
        members = self._channels.get(channel)
        if not members:
            return
        self.delivered += 1
        skipped = broadcast(members, message)
        if skipped:
            self.skipped += len(skipped)
            if self._on_skipped is None:
                self.logger.warning("hub: %d slow connection(s) skipped a message on channel %r", len(skipped),
                                    channel)
            else:
                try:
                    result = self._on_skipped(channel, skipped)
                    if asyncio.iscoroutine(result):
                        task = asyncio.ensure_future(result)
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                except Exception:
                    self.logger.error("hub: on_skipped failed", exc_info=True)

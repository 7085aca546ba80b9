"""The Redis backend of :class:`wskit.hub.Hub`: pub/sub through redis-py's asyncio client.

``pip install 'wskit[redis]'``. Every worker (process or machine) whose hub
uses the same Redis server and ``prefix`` gets every message published on
any of them: each worker holds one pattern subscription (``PSUBSCRIBE
prefix*``) and delivers a message to its own subscribers, if it has any.

When the connection to Redis is lost, the hub logs a warning and connects
again, waiting longer after each failure (``backoff_initial`` doubling up to
``backoff_max``, with jitter). No worker stops and no exception reaches the
application. While Redis cannot be reached:

- messages published on this worker are kept, in order, in a buffer of at
  most ``buffer`` messages, and sent once Redis is back; when the buffer is
  full the oldest message is dropped (logged, counted in :attr:`RedisBackend.dropped`);
- messages published by other workers during that time do not reach this
  worker's clients (Redis pub/sub keeps nothing for a subscriber that is
  not connected).

A publish that fails while it is being sent is buffered too: if Redis had
received it before the connection broke, it is delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from ..reconnect import backoff_delays, check_backoff
from .base import Backend, Deliver, Message

__all__ = ["RedisBackend"]

_TEXT, _BINARY = b"t", b"b"  # the first byte of a message on Redis: its kind


def _redis() -> Any:
    try:
        import redis.asyncio as redis_asyncio
    except ImportError as exc:  # redis-py is the optional [redis] extra
        raise ImportError("the Redis hub needs redis-py: pip install 'wskit[redis]'") from exc
    return redis_asyncio


def encode(message: Message) -> bytes:
    """A message as sent to Redis: its kind (text or binary), then its bytes."""
    if isinstance(message, str):
        return _TEXT + message.encode("utf-8")
    return _BINARY + message


def decode(data: bytes) -> Message:
    """The message :func:`encode` made ``data`` from.

    Raises:
        ValueError: ``data`` was not made by :func:`encode`.
    """
    kind, payload = data[:1], data[1:]
    if kind == _TEXT:
        return payload.decode("utf-8")
    if kind == _BINARY:
        return payload
    raise ValueError(f"not a wskit hub message (first byte {kind!r})")


class RedisBackend(Backend):
    """Messages between workers through Redis pub/sub.

    Args:
        url: the Redis server, e.g. ``redis://127.0.0.1:6379/0``
            (``rediss://`` for TLS, ``unix:///path/redis.sock``).
        prefix: prepended to every channel name on Redis; hubs with
            different prefixes on one server do not see each other's messages.
        buffer: how many messages published while Redis is unreachable are
            kept to be sent later (0: none; they are dropped and counted).
        backoff_initial, backoff_max: seconds before the first retry after a
            lost connection, and the longest wait between retries.
        connect_timeout: seconds for each connection attempt.
        logger: the logger (default ``wskit.hub``).

    Attributes:
        dropped: messages published here that never went to Redis (buffer full).
        reconnects: how many times the subscription was set up again after a loss.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "wskit:", buffer: int = 1000,
                 backoff_initial: float = 0.1, backoff_max: float = 5.0, connect_timeout: float = 5.0,
                 logger: logging.Logger | None = None) -> None:
        if not isinstance(buffer, int) or buffer < 0:
            raise ValueError(f"buffer must be an int >= 0, got {buffer!r}")
        check_backoff(backoff_initial, 2.0, backoff_max, 0.5)
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be > 0 seconds, got {connect_timeout!r}")
        redis_asyncio = _redis()
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # The hub retries by itself (below): one attempt per command, no hidden waits.
        self._client = redis_asyncio.Redis.from_url(url, socket_connect_timeout=connect_timeout,
                                                    retry=Retry(NoBackoff(), 0))
        self.url = url
        self.prefix = prefix
        self.logger = logger if logger is not None else logging.getLogger("wskit.hub")
        self._buffer: deque[tuple[str, bytes]] = deque()
        self._buffer_size = buffer
        self._backoff = (backoff_initial, backoff_max)
        self._deliver: Deliver | None = None
        self._task: asyncio.Task[None] | None = None
        self._up: asyncio.Event | None = None
        self._attempted: asyncio.Event | None = None
        self._down_since: float | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.connected = False
        self.dropped = 0
        self.reconnects = 0

    async def start(self, deliver: Deliver) -> None:
        """Subscribe on Redis and deliver from then on.

        Returns after the first attempt to connect: connected, or not (then
        a warning is logged and attempts go on in the background).
        """
        if self._task is not None:
            return
        self._deliver = deliver
        self._up = asyncio.Event()
        self._attempted = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._listen())
        await self._attempted.wait()

    async def wait_connected(self) -> None:
        """Wait until the subscription on Redis is in place."""
        if self._up is None:
            raise RuntimeError("the Redis hub is not started")
        await self._up.wait()

    async def close(self) -> None:
        """Stop listening and close the connections to Redis; buffered messages not sent yet are dropped."""
        for task in (self._task, self._flusher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._flusher = None
        self.connected = False
        with contextlib.suppress(Exception):
            await self._client.aclose()

    @property
    def buffered(self) -> int:
        """How many messages published here wait for Redis to be reachable again."""
        return len(self._buffer)

    # -- the subscription --------------------------------------------------------

    async def _listen(self) -> None:
        assert self._up is not None and self._attempted is not None
        delays = None
        prefix_length = len(self.prefix)
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.psubscribe(self.prefix + "*")
                async for item in pubsub.listen():
                    if item.get("type") != "pmessage":
                        if item.get("type") == "psubscribe":  # the confirmation: the subscription is in place
                            self._went_up()
                            delays = None
                            self._attempted.set()
                        continue
                    channel = item["channel"]
                    try:
                        name = channel.decode("utf-8")[prefix_length:]
                        message = decode(item["data"])
                    except (UnicodeDecodeError, ValueError) as exc:
                        self.logger.warning("hub: ignored a message on Redis channel %r: %s", channel, exc)
                        continue
                    assert self._deliver is not None
                    self._deliver(name, message)
                raise ConnectionError("the subscription ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if delays is None:
                    delays = backoff_delays(self._backoff[0], 2.0, self._backoff[1], 0.5)
                delay = next(delays)
                self._went_down(exc, delay)
                self._attempted.set()
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(pubsub.aclose())
            await asyncio.sleep(delay)

    def _went_up(self) -> None:
        assert self._up is not None
        if self._down_since is None:
            self.logger.info("hub: subscribed on Redis at %s (channels %s*)", self.url, self.prefix)
        else:
            self.reconnects += 1
            self.logger.warning("hub: connected to Redis at %s again after %.1f s; %d buffered message(s) to send",
                                self.url, time.monotonic() - self._down_since, len(self._buffer))
        self._down_since = None
        self.connected = True
        self._up.set()

    def _went_down(self, exc: BaseException, delay: float | None = None) -> None:
        assert self._up is not None
        first = self.connected or self._down_since is None
        self.connected = False
        self._up.clear()
        if self._down_since is None:
            self._down_since = time.monotonic()
        retry = "" if delay is None else f"; next attempt in {delay:.2f} s"
        log = self.logger.warning if first else self.logger.info
        log("hub: no connection to Redis at %s (%s: %s)%s", self.url, type(exc).__name__, exc, retry)

    # -- publishing ----------------------------------------------------------------

    async def publish(self, channel: str, message: Message) -> None:
        if self._task is None:
            raise RuntimeError("the Redis hub is not started")
        data = encode(message)
        if not self.connected or self._buffer:  # keep the order: behind what waits already
            self._keep(channel, data)
            return
        try:
            await self._client.publish(self.prefix + channel, data)
        except Exception as exc:
            self.logger.warning("hub: could not publish on Redis at %s (%s: %s); the message waits in the buffer",
                                self.url, type(exc).__name__, exc)
            self._keep(channel, data)

    def _keep(self, channel: str, data: bytes) -> None:
        if self._buffer_size == 0:
            self.dropped += 1
            self.logger.warning("hub: Redis unreachable, a message on channel %r was dropped (buffer=0)", channel)
            return
        if len(self._buffer) >= self._buffer_size:
            self._buffer.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                self.logger.warning("hub: Redis unreachable and %d messages buffered: dropped the oldest "
                                    "(%d dropped so far)", self._buffer_size, self.dropped)
        self._buffer.append((channel, data))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Send the buffered messages, in order, once connected; retry with backoff until none is left."""
        assert self._up is not None
        delays = None
        while self._buffer:
            await self._up.wait()
            channel, data = self._buffer[0]
            try:
                await self._client.publish(self.prefix + channel, data)
            except Exception as exc:
                if delays is None:
                    delays = backoff_delays(self._backoff[0], 2.0, self._backoff[1], 0.5)
                delay = next(delays)
                self.logger.info("hub: buffered messages not sent yet (%s: %s); next attempt in %.2f s",
                                 type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                continue
            delays = None
            if self._buffer and self._buffer[0][1] is data:
                self._buffer.popleft()

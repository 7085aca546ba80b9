"""What a backend of :class:`wskit.hub.Hub` is: how messages reach the hubs of other workers."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Backend", "Deliver", "Message"]

Message = str | bytes
"""What a hub carries: a ``str`` is sent as a text message, ``bytes`` as a binary one."""

Deliver = Callable[[str, Message], None]


class Backend:
    """How a :class:`~wskit.hub.Hub` carries messages to the hubs of other workers.

    A backend calls the ``deliver(channel, message)`` given to :meth:`start`
    once for each message published on any hub sharing it, this one
    included; the hub delivers it to its local subscribers.
    """

    #: Whether published messages leave this process now (always true for the local backend).
    connected: bool = True

    async def start(self, deliver: Deliver) -> None:
        """Start carrying messages; ``deliver`` is called for each one, in the event loop."""
        raise NotImplementedError

    async def publish(self, channel: str, message: Message) -> None:
        """Send ``message`` to every hub of this backend, on ``channel``."""
        raise NotImplementedError

    async def close(self) -> None:
        """Stop (idempotent)."""
        raise NotImplementedError

    async def wait_connected(self) -> None:
        """Wait until published messages leave this process (at once for the local backend)."""

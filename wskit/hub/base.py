"""What a backend of :class:`wskit.hub.Hub` is: how messages reach the hubs of other workers."""

from __future__ import annotations

import abc
from collections.abc import Callable

__all__ = ["Backend", "Deliver", "Message"]

Message = str | bytes
"""What a hub carries: a ``str`` is sent as a text message, ``bytes`` as a binary one."""

Deliver = Callable[[str, Message], None]


class Backend(abc.ABC):
    """How a :class:`~wskit.hub.Hub` carries messages to the hubs of other workers.

    A backend calls the ``deliver(channel, message)`` given to :meth:`start`
    once for each message published on any hub sharing it, this one
    included; the hub delivers it to its local subscribers.

    A subclass implements :meth:`start`, :meth:`publish` and :meth:`close`
    (creating one that lacks any of them raises ``TypeError`` naming it).
    """

    #: Whether published messages leave this process now (always true for the local backend).
    connected: bool = True

    @abc.abstractmethod
    async def start(self, deliver: Deliver) -> None:
        """Start carrying messages; ``deliver`` is called for each one, in the event loop."""

    @abc.abstractmethod
    async def publish(self, channel: str, message: Message) -> None:
        """Send ``message`` to every hub of this backend, on ``channel``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop (idempotent)."""

    async def wait_connected(self) -> None:
        """Wait until published messages leave this process (at once for the local backend)."""
        return None

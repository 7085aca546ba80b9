"""The sans-I/O half of ``broadcast``: one message, framed for many connections.

``wskit.asyncio.broadcast`` and ``wskit.sync.broadcast`` send one message to
many connections without waiting for any of them. What they share, with no
I/O, is here: a :class:`Broadcast` holds the message, encoded once, and gives
each connection's protocol the bytes to write
(:meth:`Broadcast.frames_for`).

The frame is built once and shared by every connection that sends a message
as one plain frame: a server-side connection (frames are not masked) that
negotiated no extension, has no ``max_fragment_size`` smaller than the
message, no plugin observing sent frames, and no fragmented message being
sent. Any other connection (permessage-deflate, whose compressor state is its
own; a client connection, whose frames carry a fresh mask) frames the message
through its own protocol, so its state stays right.
"""

from __future__ import annotations

from ._protocol import Protocol
from .frames import encode_frame
from .protocol import Side

__all__ = ["Broadcast"]


class Broadcast:
    """One message to send to many connections.

    Args:
        message: a ``str`` (a text message) or a bytes-like object (a binary
            message).
        compress: ``False`` sends it uncompressed on connections that
            negotiated permessage-deflate (see ``Protocol.send_text``).

    Attributes:
        text: whether the message is a text message.
        payload: the message's bytes (UTF-8 for text), encoded once.
        shared: how many connections got the shared frame so far.

    Raises:
        TypeError: for another type.
    """

    __slots__ = ("text", "payload", "shared", "_message", "_frame", "_compress")

    def __init__(self, message: str | bytes | bytearray | memoryview, *, compress: bool = True) -> None:
        if isinstance(message, str):
            self.text = True
            self.payload = message.encode("utf-8")
        elif isinstance(message, (bytes, bytearray, memoryview)):
            self.text = False
            self.payload = bytes(message)
        else:
            raise TypeError(f"broadcast() takes a str or a bytes-like message, not {type(message).__name__}")
        self._message = message
        self._frame: bytes | None = None
        self._compress = compress
        self.shared = 0

    def __len__(self) -> int:
        """The payload's size in bytes (what a connection's write buffer grows by, about)."""
        return len(self.payload)

    def frames_for(self, protocol: Protocol) -> list[bytes]:
        """The bytes to write to send the message on ``protocol``'s connection.

        Call it only when the connection may send data (its state is OPEN)
        and when the bytes are written right away, in this order with the
        connection's other writes: for a connection whose protocol frames the
        message itself, this call is the send.

        Raises:
            InvalidState: the protocol may not send data now.
        """
        # A plain connection sends a message as one frame that depends on
        # nothing but the message (see _update_plain_send in wskit._protocol).
        if protocol.side is Side.SERVER and getattr(protocol, "_plain_send", False):
            frame = self._frame
            if frame is None:
                frame = self._frame = encode_frame(0x81 if self.text else 0x82, self.payload, False)
            self.shared += 1
            return [frame]
        if self.text:
            return protocol.send_text(self._message, compress=self._compress)  # type: ignore[arg-type]
        return protocol.send_binary(self.payload, compress=self._compress)

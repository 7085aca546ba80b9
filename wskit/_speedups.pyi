"""Type stubs for the optional C accelerator ``wskit._speedups``."""

import socket
from typing import Any

def apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the repeating 4-byte ``mask`` (RFC 6455 §5.3).

    Args:
        data: the payload, any bytes-like object.
        mask: the 4-byte masking key.

    Returns:
        The masked (or unmasked: the operation is its own inverse) bytes.

    Raises:
        TypeError: ``data`` or ``mask`` is not a bytes-like object.
        ValueError: ``mask`` is not exactly 4 bytes long.
    """


def mask_frame(header: bytes | bytearray | memoryview, data: bytes | bytearray | memoryview,
               mask: bytes | bytearray | memoryview) -> bytes:
    """Return ``header + mask + apply_mask(data, mask)`` in one allocation."""


def send_nowait(sock: socket.socket, data: bytes | bytearray | memoryview) -> int:
    """Send what ``sock`` takes at once (at most 64 KiB), keeping the GIL (POSIX only).

    Returns:
        The number of bytes sent; 0 if the socket's buffer is full or the
        call was interrupted.

    Raises:
        OSError: any other error of ``send(2)`` (``EBADF`` once closed).
        ValueError: ``data`` is longer than 64 KiB.
    """


def read_messages(buf: bytes | bytearray | memoryview, pos: int, masked: bool, max_size: int, text: Any,
                  binary: Any) -> tuple[list[Any], int]:
    """Parse the run of complete, unfragmented text/binary frames at ``buf[pos:]``.

    Stops, without raising, at the first other frame (control, fragment,
    incomplete, oversize, invalid UTF-8, RSV bit, wrong masking): the
    general parser takes over there.

    Returns:
        ``([text(str) or binary(bytes), ...], position after them)``.
    """


class Gather:
    """A writable buffer of ``length`` bytes that becomes a ``bytes`` object.

    Write a large frame's payload into it through ``memoryview(gather)``,
    release every view, then call :meth:`take`: the payload, unmasked in
    place, is returned without a copy. A view still held then gets a copy
    returned instead, so that nothing writes into a ``bytes`` object after
    it is handed out. After :meth:`take` no new view can be made. The
    buffer starts uninitialised: write every byte before :meth:`take`.

    Raises:
        ValueError: ``length`` is negative.
        MemoryError: ``length`` bytes cannot be allocated.
    """

    def __init__(self, length: int) -> None: ...

    def __buffer__(self, flags: int, /) -> memoryview: ...

    @property
    def exports(self) -> int:
        """How many buffers of this object are exported and not released."""

    @property
    def copied(self) -> bool:
        """Whether :meth:`take` returned a copy because a view was left."""

    def take(self, mask: bytes | bytearray | memoryview | None = None, /) -> bytes:
        """Return the gathered bytes, XORed with the 4-byte ``mask`` when one is given.

        In place and without a copy when no view of the buffer is left;
        else a copy. Only once.

        Raises:
            ValueError: called twice, or ``mask`` is not 4 bytes long.
            TypeError: ``mask`` is not a bytes-like object.
        """


class Cursor:
    """Where the next piece of a large frame goes in the buffer it is gathered in.

    Holds a writable buffer of ``buffer`` (any writable, C-contiguous
    bytes-like object; its bytes are counted) from offset 0 until
    :meth:`release`: an export, which a ``Gather`` counts and which keeps a
    ``bytearray`` from being resized. :meth:`put` copies a piece that leaves
    bytes due; :meth:`advance` accounts for bytes written there some other
    way. ``wskit.mask.PyCursor`` is its pure-Python twin.

    Raises:
        BufferError: ``buffer`` is not writable or not C-contiguous.
        TypeError: ``buffer`` is not bytes-like.
    """

    def __init__(self, buffer: Any) -> None: ...

    @property
    def offset(self) -> int:
        """Where the next byte goes: how many were written so far."""

    @property
    def remaining(self) -> int:
        """How many bytes are still due (0 once released)."""

    def put(self, data: bytes | bytearray | memoryview, /) -> bool:
        """Copy ``data`` in at the offset and advance, if it leaves bytes due.

        ``data`` is taken when it is ``bytes``, a ``bytearray`` or a
        ``memoryview`` of plain contiguous bytes (format ``"B"``, one
        dimension) and strictly shorter than what is still due.

        Returns:
            ``True`` when ``data`` was copied; ``False``, with nothing
            changed, for any other object, for the piece that completes the
            frame (or a longer one), and once released.
        """

    def advance(self, n: int, /) -> int:
        """Account for ``n`` bytes written at the offset some other way; return what is due.

        Raises:
            ValueError: ``n`` is negative or more than what is due.
            TypeError: ``n`` is not an integer.
        """

    def release(self) -> None:
        """Release the buffer: nothing is due from here on (:meth:`put` returns ``False``).

        A ``Gather`` hands its bytes out without a copy only once every
        buffer of it is released. Calling it again does nothing.
        """

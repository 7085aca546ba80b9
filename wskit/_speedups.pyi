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

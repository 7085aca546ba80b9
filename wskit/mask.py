"""Frame masking (RFC 6455 §5.3), with an optional C accelerator.

:func:`apply_mask` XORs data with a 4-byte key. The C version from
``wskit._speedups`` is used when it was built; set ``WSKIT_NO_SPEEDUPS=1``
in the environment to force the pure-Python fallback (it also turns off the
threaded layer's ``send_nowait``, see :mod:`wskit.sync.connection`).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["Gather", "apply_mask", "mask_frame", "py_apply_mask", "py_mask_frame", "read_messages", "send_nowait",
           "write_at", "USING_SPEEDUPS"]


def py_apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the repeating 4-byte ``mask`` (pure Python).

    Args:
        data: the payload.
        mask: the 4-byte masking key.

    Returns:
        The masked (or unmasked: the operation is its own inverse) bytes.
    """
    if len(mask) != 4:
        raise ValueError(f"mask must be 4 bytes, got {len(mask)}")
    if not isinstance(data, bytes):
        data = memoryview(data).tobytes()  # bytes-like only; counts bytes, not items
    n = len(data)
    if n == 0:
        return b""
    reps, rest = divmod(n, 4)
    key = int.from_bytes(mask * reps + mask[:rest], sys.byteorder)
    return (int.from_bytes(data, sys.byteorder) ^ key).to_bytes(n, sys.byteorder)


def py_mask_frame(header: bytes | bytearray | memoryview, data: bytes | bytearray | memoryview,
                  mask: bytes) -> bytes:
    """Return ``header + mask + apply_mask(data, mask)``: a whole masked frame.

    Args:
        header: the frame header up to the masking key.
        data: the payload.
        mask: the 4-byte masking key.
    """
    return bytes(header) + mask + py_apply_mask(data, mask)


USING_SPEEDUPS = False
apply_mask = py_apply_mask
mask_frame = py_mask_frame
# The accelerator's non-blocking send for the threaded layer (POSIX builds
# only; None without it): see wskit.sync.connection.
send_nowait: Callable[[socket.socket, bytes], int] | None = None
# The accelerator's parser for the common case of received frames (None
# without it): see wskit.frames.FrameReader.read_simple.
read_messages: Callable[[bytes | bytearray | memoryview, int, bool, int, Any, Any], tuple[list[Any], int]] | None = None
# The accelerator's copy of a piece into a buffer at an offset (None without
# it: a slice assignment does the same): see wskit.Protocol.receive_data.
write_at: Callable[[Any, int, bytes | bytearray | memoryview], None] | None = None
# The accelerator's buffer that gathers a large frame's payload in the bytes
# object that becomes the message (None without it): see
# wskit.frames.GATHER_MAX.
Gather: Any = None
if not os.environ.get("WSKIT_NO_SPEEDUPS"):
    try:
        from . import _speedups
    except ImportError:  # not built (or blocked): the pure-Python fallback
        pass
    else:
        apply_mask = _speedups.apply_mask
        mask_frame = _speedups.mask_frame
        send_nowait = getattr(_speedups, "send_nowait", None)
        read_messages = _speedups.read_messages
        Gather = _speedups.Gather
        write_at = _speedups.write_at
        USING_SPEEDUPS = True

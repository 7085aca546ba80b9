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
from operator import index
from typing import Any

__all__ = ["Cursor", "Gather", "PyCursor", "apply_mask", "mask_frame", "py_apply_mask", "py_mask_frame",
           "read_messages", "send_nowait", "USING_SPEEDUPS"]


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


class PyCursor:
    """Where the next piece of a large frame goes in the buffer it is gathered in (pure Python).

    Holds a writable view of ``buffer`` (any writable, C-contiguous
    bytes-like object; its bytes are counted) from offset 0 until
    :meth:`release`. :meth:`put` copies a piece that leaves bytes due;
    :meth:`advance` accounts for bytes written there some other way. The
    C accelerator's ``Cursor`` behaves the same (used when it is built).

    Raises:
        BufferError: ``buffer`` is not writable or not C-contiguous.
        TypeError: ``buffer`` is not bytes-like.
    """

    __slots__ = ("_view", "_at", "_due")

    def __init__(self, buffer: Any) -> None:
        view = memoryview(buffer)
        if view.readonly:
            raise BufferError("Object is not writable.")
        if not view.c_contiguous:
            raise BufferError("memoryview: underlying buffer is not C-contiguous")
        self._view = view.cast("B")
        self._at = 0
        self._due = self._view.nbytes

    @property
    def offset(self) -> int:
        """Where the next byte goes: how many were written so far."""
        return self._at

    @property
    def remaining(self) -> int:
        """How many bytes are still due (0 once released)."""
        return self._due

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
        kind = type(data)
        if kind is bytes or kind is bytearray or (
                type(data) is memoryview and data.format == "B" and data.ndim == 1 and data.c_contiguous):
            n = len(data)
            due = self._due
            if n < due:
                at = self._at
                self._view[at:at + n] = data
                self._at = at + n
                self._due = due - n
                return True
        return False

    def advance(self, n: int, /) -> int:
        """Account for ``n`` bytes written at the offset some other way; return what is due.

        Raises:
            ValueError: ``n`` is negative or more than what is due.
            TypeError: ``n`` is not an integer.
        """
        n = index(n)
        due = self._due
        if not 0 <= n <= due:
            raise ValueError(f"advance({n}): {due} bytes are due")
        self._at += n
        self._due = due = due - n
        return due

    def release(self) -> None:
        """Release the buffer: nothing is due from here on (:meth:`put` returns ``False``).

        Calling it again does nothing.
        """
        self._view.release()
        self._due = 0


USING_SPEEDUPS = False
apply_mask = py_apply_mask
mask_frame = py_mask_frame
# The accelerator's non-blocking send for the threaded layer (POSIX builds
# only; None without it): see wskit.sync.connection.
send_nowait: Callable[[socket.socket, bytes], int] | None = None
# The accelerator's parser for the common case of received frames (None
# without it): see wskit.frames.FrameReader.read_simple.
read_messages: Callable[[bytes | bytearray | memoryview, int, bool, int, Any, Any], tuple[list[Any], int]] | None = None
# The accelerator's buffer that gathers a large frame's payload in the bytes
# object that becomes the message (None without it): see
# wskit.frames.GATHER_MAX.
Gather: Any = None
# Where the next piece of a large frame goes (wskit.frames.FrameReader; the
# C type when it is built, else its pure-Python twin).
Cursor: type[PyCursor] = PyCursor
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
        Cursor = _speedups.Cursor  # type: ignore[assignment]  # the same methods and attributes, in C
        USING_SPEEDUPS = True

"""Shared helpers for the data-path tests: raw frame builders and in-memory peers.

The frame builder writes any header on purpose, including the invalid ones a
receiver must reject (reserved bits and opcodes, wrong masking, 64-bit lengths
with the most significant bit set, non-minimal length encodings), so that the
tests do not depend on :func:`wskit.frames.serialize_frame` being right.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import pytest

from wskit import Protocol, Side, State
from wskit.events import Event
from wskit.exceptions import ProtocolError
from wskit.frames import Frame, FrameReader, Opcode, parse_close

__all__ = [
    "MASK_KEY",
    "mask_bytes",
    "build_frame",
    "client_frame",
    "server_frame",
    "close_payload",
    "parse_frames",
    "parse_close_frame",
    "make_pair",
    "deliver",
    "feed_chunks",
    "assert_failed",
    "state_of",
]

MASK_KEY = b"\x37\xfa\x21\x3d"
"""A fixed masking key, so that expected wire bytes are reproducible."""


def mask_bytes(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the repeating 4-byte ``key`` (RFC 6455 §5.3), byte by byte.

    Deliberately naive: it is the reference the library's masking is checked against.

    Args:
        data: the payload.
        key: the 4-byte masking key.

    Returns:
        The masked bytes.
    """
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bytes | None = None,
    length: int | None = None,
    length_bytes: int | None = None,
) -> bytes:
    """Build a raw frame with arbitrary header bits.

    Args:
        opcode: the 4-bit opcode (reserved ones allowed).
        payload: the unmasked payload.
        fin: the FIN bit.
        rsv1: the RSV1 bit.
        rsv2: the RSV2 bit.
        rsv3: the RSV3 bit.
        mask: a 4-byte masking key, or ``None`` for an unmasked frame.
        length: the declared payload length (defaults to ``len(payload)``);
            may differ from the payload to build truncated or lying frames.
        length_bytes: force the length encoding: 0 (7-bit), 2 (16-bit) or
            8 (64-bit); by default the minimal one.

    Returns:
        The frame's bytes.
    """
    if not 0 <= opcode <= 0xF:
        raise ValueError(f"opcode must fit in 4 bits, got {opcode}")
    declared = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | (0x10 if rsv3 else 0) | opcode
    mbit = 0x80 if mask is not None else 0
    if length_bytes is None:
        length_bytes = 0 if declared < 126 else 2 if declared < 65536 else 8
    if length_bytes == 0:
        header = bytes([b0, mbit | declared])
    elif length_bytes == 2:
        header = bytes([b0, mbit | 126]) + struct.pack("!H", declared)
    elif length_bytes == 8:
        header = bytes([b0, mbit | 127]) + struct.pack("!Q", declared)
    else:
        raise ValueError(f"length_bytes must be 0, 2 or 8, got {length_bytes}")
    if mask is not None:
        if len(mask) != 4:
            raise ValueError(f"a masking key has 4 bytes, got {len(mask)}")
        return header + mask + mask_bytes(payload, mask)
    return header + payload


def client_frame(opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
    """Build a frame as a client sends it (masked with :data:`MASK_KEY` unless ``mask=`` says otherwise)."""
    kwargs.setdefault("mask", MASK_KEY)
    return build_frame(opcode, payload, **kwargs)  # type: ignore[arg-type]


def server_frame(opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
    """Build a frame as a server sends it (unmasked)."""
    return build_frame(opcode, payload, **kwargs)  # type: ignore[arg-type]


def close_payload(code: int, reason: bytes = b"") -> bytes:
    """Return a Close frame payload: the 2-byte code and the raw reason bytes."""
    return struct.pack("!H", code) + reason


def parse_frames(data: bytes | Iterable[bytes], *, masked: bool) -> list[Frame]:
    """Parse complete frames from wire bytes, failing the test on any violation or leftover.

    Args:
        data: the bytes (or a list of writes) to parse.
        masked: whether the frames are expected to be masked (client frames).

    Returns:
        The frames, unmasked.
    """
    raw = data if isinstance(data, bytes) else b"".join(data)
    reader = FrameReader(masked, None, 0x70, stream=False)
    reader.feed(raw)
    frames, error = reader.read()
    assert error is None, f"wire bytes do not parse: {error}"
    assert reader.buffered() == 0, f"{reader.buffered()} bytes left after the frames"
    return frames


def parse_close_frame(data: Sequence[bytes], *, masked: bool) -> tuple[int, str]:
    """Assert ``data`` is exactly one Close frame and return its ``(code, reason)``."""
    frames = parse_frames(data, masked=masked)
    assert len(frames) == 1, f"expected one Close frame, got {frames}"
    assert frames[0].opcode == Opcode.CLOSE and frames[0].fin
    return parse_close(frames[0].data)


def make_pair(**kwargs: object) -> tuple[Protocol, Protocol]:
    """Return a connected ``(client, server)`` pair of bare protocols, both OPEN."""
    return Protocol(Side.CLIENT, **kwargs), Protocol(Side.SERVER, **kwargs)  # type: ignore[arg-type]


def deliver(writes: Iterable[bytes], receiver: Protocol) -> list[Event]:
    """Feed the bytes one peer wrote to the other, in one chunk; return the events."""
    return receiver.receive_data(b"".join(writes))


def feed_chunks(receiver: Protocol, data: bytes, size: int) -> list[Event]:
    """Feed ``data`` in chunks of ``size`` bytes; return every event, in order."""
    events: list[Event] = []
    for i in range(0, len(data), size):
        events.extend(receiver.receive_data(data[i:i + size]))
    return events


def assert_failed(receiver: Protocol, data: bytes, code: int) -> ProtocolError:
    """Feed ``data`` and assert the connection fails with ``code`` as docs/sansio.md documents.

    Checks ``exc.close_code``, ``receiver.close_code`` and that ``exc.to_send``
    is exactly one Close frame carrying ``code``, masked as the receiver's side
    requires.

    Returns:
        The exception, for further checks.
    """
    with pytest.raises(ProtocolError) as info:
        receiver.receive_data(data)
    exc = info.value
    assert exc.close_code == code, f"{exc!r}: close_code {exc.close_code} != {code}"
    assert receiver.close_code == code
    sent_code, _ = parse_close_frame(exc.to_send, masked=receiver.side is Side.CLIENT)
    assert sent_code == code
    assert str(exc), "the exception must say what was wrong"
    return exc


def state_of(protocol: Protocol) -> State:
    """Return ``protocol.state`` (a call, so that type checkers do not keep a narrowed state across calls)."""
    return protocol.state

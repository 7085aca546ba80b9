"""FrameReader gathers a large frame that arrives in pieces in one buffer of its size.

The frames it returns must be exactly those of the same bytes read at once,
whatever the chunking and the type of the chunks (RFC 6455 §5: framing is
independent of how the byte stream is split).
"""

from __future__ import annotations

import itertools
import random
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wskit import BinaryMessage
from wskit import frames as frames_module
from wskit.frames import GATHER_KEEP, GATHER_MIN, Frame, FrameReader, Opcode

from helpers import build_frame, make_pair

KEY = b"\x12\x34\x56\x78"


def payload(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


frame_specs = st.lists(
    st.tuples(
        st.sampled_from(["big", "small"]),
        st.integers(0, 3000),  # size offset
        st.booleans(),  # rsv1
        st.integers(0, 2**16),  # seed
    ),
    min_size=1, max_size=4,
)


def stream_of(specs: list[tuple[str, int, bool, int]], masked: bool) -> bytes:
    """Binary messages, the second of each pair split in two frames (a fragmented message)."""
    out = b""
    for kind, extra, rsv1, seed in specs:
        size = GATHER_MIN - 2 + extra if kind == "big" else extra
        data = payload(seed, size)
        half = size // 2
        mask = KEY if masked else None
        if seed % 2:
            out += build_frame(Opcode.BINARY, data[:half], fin=False, rsv1=rsv1, mask=mask)
            out += build_frame(Opcode.CONT, data[half:], mask=mask)
        else:
            out += build_frame(Opcode.BINARY, data, rsv1=rsv1, mask=mask)
    return out


def read_chunked(reader: FrameReader, data: bytes, cuts: list[int], kinds: list[int]) -> list[Frame]:
    frames: list[Frame] = []
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for i, (a, b) in enumerate(itertools.pairwise(points)):
        chunk = data[a:b]
        kind = kinds[i % len(kinds)] if kinds else 0
        if kind == 0:
            got, error = reader.read(chunk)
        elif kind == 1:
            got, error = reader.read(memoryview(bytearray(chunk)))
        elif kind == 2:
            got, error = reader.read(bytearray(chunk))
        else:
            reader.feed(chunk)
            got, error = reader.read()
        assert error is None
        frames += got
    return frames


@settings(max_examples=60, deadline=None)
@given(specs=frame_specs, masked=st.booleans(), cuts=st.lists(st.integers(0, 10**6), max_size=12),
       kinds=st.lists(st.integers(0, 3), max_size=5))
def test_chunked_read_returns_the_frames_of_a_whole_read(specs: list[tuple[str, int, bool, int]], masked: bool,
                                                         cuts: list[int], kinds: list[int]) -> None:
    data = stream_of(specs, masked)
    whole, error = FrameReader(masked, None, rsv_mask=0x70, stream=False).read(data)
    assert error is None
    reader = FrameReader(masked, None, rsv_mask=0x70, stream=False)
    assert read_chunked(reader, data, cuts, kinds) == whole
    assert reader.buffered() == 0 and reader.in_message == 0


def test_a_smaller_frame_after_a_larger_one_gets_only_its_own_bytes() -> None:
    reader = FrameReader(True, None, stream=False)
    for size in (GATHER_MIN + 5000, GATHER_MIN, GATHER_MIN + 9000):  # reuse, then a larger one
        data = payload(size, size)
        frame = build_frame(Opcode.BINARY, data, mask=KEY)
        assert read_chunked(reader, frame, [1000, 40000], [0, 1]) == [Frame(Opcode.BINARY, data)]


def test_a_frame_above_the_kept_size_is_delivered() -> None:
    reader = FrameReader(False, None, stream=False)
    data = payload(7, GATHER_KEEP + 10)
    frame = build_frame(Opcode.BINARY, data)
    assert read_chunked(reader, frame, [3, 1 << 19, 1 << 20], [1]) == [Frame(Opcode.BINARY, data)]


def held_after(receive: Callable[[Any], object], chunks: Sequence[Any]) -> int:
    """Bytes allocated by the frame reader still held once ``chunks`` were received (results dropped)."""
    for chunk in chunks:
        receive(chunk)
    only_reader = [tracemalloc.Filter(True, frames_module.__file__)]
    return sum(stat.size for stat in tracemalloc.take_snapshot().filter_traces(only_reader).statistics("filename"))


@pytest.mark.parametrize("through", ["protocol", "protocol-view", "reader"])
def test_the_large_frame_buffer_is_held_only_while_large_messages_follow(through: str) -> None:
    client, server = make_pair(max_size=None)
    reader = FrameReader(True, None, stream=False)
    receive = server.receive_data if through == "protocol" else reader.read
    big = b"".join(client.send_binary(payload(3, GATHER_KEEP)))
    pieces = [big[i:i + 65536] for i in range(0, len(big), 65536)]
    tracemalloc.start()
    try:
        kept = held_after(receive, pieces)
        assert kept >= GATHER_KEEP  # kept for the next large message
        assert held_after(receive, pieces) < kept + 65536  # reused: nothing more
        small = b"".join(client.send_binary(b"small"))
        chunk = memoryview(bytearray(small)) if through == "protocol-view" else small
        assert held_after(receive, [chunk]) < 65536  # released
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("as_view", ["", "B", "I"])
def test_protocol_receives_large_messages_in_tcp_sized_chunks(as_view: str) -> None:
    client, server = make_pair(max_size=None)
    messages = [payload(1, 1 << 20), b"small", payload(2, GATHER_MIN * 3)]
    wire = b"".join(b"".join(client.send_binary(m)) for m in messages)
    events = []
    for i in range(0, len(wire), 1460):  # a multiple of 4: chunks can be viewed as 32-bit items
        chunk = wire[i:i + 1460]
        if as_view and len(chunk) % 4 == 0:
            events += server.receive_data(memoryview(bytearray(chunk)).cast(as_view))
        else:
            events += server.receive_data(chunk)
    assert events == [BinaryMessage(m) for m in messages]

"""FrameReader gathers a large frame that arrives in pieces in one buffer of its size.

The frames it returns must be exactly those of the same bytes read at once,
whatever the chunking and the type of the chunks (RFC 6455 §5: framing is
independent of how the byte stream is split).
"""

from __future__ import annotations

import gc
import itertools
import os
import pickle
import random
import tracemalloc
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wskit import BinaryMessage, Protocol, Side, TextMessage
from wskit import frames as frames_module
from wskit.exceptions import ProtocolError
from wskit.extensions.permessage_deflate import PerMessageDeflate
from wskit.frames import GATHER_KEEP, GATHER_MIN, Frame, FrameReader, Opcode
from wskit.mask import PyCursor

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


# The kept size as it is, and lowered so that about half of the "big" frames
# are longer: those are gathered in their own bytes object (a Gather, with the
# C accelerator) or, without it, in the receive buffer.
KEPT_SIZES = [GATHER_KEEP, GATHER_MIN + 1500]


@pytest.mark.parametrize("keep", KEPT_SIZES)
@settings(max_examples=60, deadline=None)
@given(specs=frame_specs, masked=st.booleans(), cuts=st.lists(st.integers(0, 10**6), max_size=12),
       kinds=st.lists(st.integers(0, 3), max_size=5))
def test_chunked_read_returns_the_frames_of_a_whole_read(keep: int, specs: list[tuple[str, int, bool, int]],
                                                         masked: bool, cuts: list[int], kinds: list[int]) -> None:
    data = stream_of(specs, masked)
    whole, error = FrameReader(masked, None, rsv_mask=0x70, stream=False).read(data)
    assert error is None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frames_module, "GATHER_KEEP", keep)
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


@pytest.fixture
def no_spare() -> Any:
    """Start without a spare gathering buffer; restore the process's afterwards.

    Readers that earlier tests left in reference cycles give their buffers
    back when the garbage collector finds them: that happens first, into the
    process's spare, and no automatic collection runs during the test, so
    the spare it sees holds only what its own readers gave back.
    """
    gc.collect()
    saved = list(frames_module._SPARE)
    frames_module._SPARE.clear()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield frames_module._SPARE
    finally:
        if enabled:
            gc.enable()
        frames_module._SPARE[:] = saved


@pytest.mark.parametrize("through", ["protocol", "protocol-view", "reader"])
def test_the_large_frame_buffer_is_held_only_while_large_messages_follow(through: str, no_spare: Any) -> None:
    client, server = make_pair(max_size=None)
    reader = FrameReader(True, None, stream=False)
    receive = server.receive_data if through == "protocol" else reader.read
    kept = (lambda: server._reader._kept) if through == "protocol" else (lambda: reader._kept)
    big = b"".join(client.send_binary(payload(3, GATHER_KEEP)))
    pieces = [big[i:i + 65536] for i in range(0, len(big), 65536)]
    tracemalloc.start()
    try:
        held = held_after(receive, pieces)
        assert held >= GATHER_KEEP and kept() is not None  # kept for the next large message
        assert held_after(receive, pieces) < held + 65536  # reused: nothing more
        small = b"".join(client.send_binary(b"small"))
        chunk = memoryview(bytearray(small)) if through == "protocol-view" else small
        buffer = kept()
        assert held_after(receive, [chunk]) < held + 65536  # nothing new...
        assert kept() is None and no_spare == [buffer]  # ...the connection let go: it is the process's spare now
    finally:
        tracemalloc.stop()


def test_a_new_connection_gathers_in_the_spare_buffer(no_spare: Any) -> None:
    client, first = make_pair(max_size=None)
    big = b"".join(client.send_binary(payload(4, GATHER_MIN * 2)))
    assert first.receive_data(big[:1000]) == []
    buffer = first._reader._kept
    assert buffer is not None and no_spare == []
    del first  # a connection that ends while it holds the buffer gives it back
    gc.collect()
    assert no_spare == [buffer]
    second = make_pair(max_size=None)[1]
    assert second.receive_data(big[:1000]) == []
    assert second._reader._kept is buffer and no_spare == []  # taken, not copied
    assert second.receive_data(big[1000:]) == [BinaryMessage(payload(4, GATHER_MIN * 2))]
    # Only one spare per process: a second released buffer is dropped.
    third = make_pair(max_size=None)[1]
    third.receive_data(big[:1000])
    other = third._reader._kept
    assert other is not None and other is not buffer
    del second, third
    gc.collect()
    assert len(no_spare) == 1


def test_a_spare_too_small_for_the_frame_is_replaced(no_spare: Any) -> None:
    client, server = make_pair(max_size=None)
    no_spare.append(bytearray(GATHER_MIN))
    big = b"".join(client.send_binary(payload(5, GATHER_MIN * 3)))
    assert server.receive_data(big[:1000]) == []
    assert len(server._reader._kept) == GATHER_MIN * 3 and no_spare == []
    assert server.receive_data(big[1000:]) == [BinaryMessage(payload(5, GATHER_MIN * 3))]
    # A larger spare serves a smaller frame: only [:length] of it is used.
    no_spare[:] = [bytearray(b"\xee" * (GATHER_MIN * 4))]
    other = make_pair(max_size=None)[1]
    smaller = payload(6, GATHER_MIN)
    wire = b"".join(client.send_binary(smaller))
    assert other.receive_data(wire[:10]) == []
    assert other.receive_data(wire[10:]) == [BinaryMessage(smaller)]


def test_a_reader_that_never_finished_initialising_is_collected_quietly() -> None:
    reader = FrameReader.__new__(FrameReader)  # __init__ never ran: no buffer to give back
    reader.__del__()


@pytest.mark.parametrize("cursor", ["c", "python"])  # the accelerator's cursor puts a piece, or its Python twin
@pytest.mark.parametrize("as_view", ["", "B", "I"])
def test_protocol_receives_large_messages_in_tcp_sized_chunks(as_view: str, cursor: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if cursor == "python":
        monkeypatch.setattr(frames_module, "Cursor", PyCursor)
    elif frames_module.Cursor is PyCursor:
        pytest.skip("the C accelerator is not built, or WSKIT_NO_SPEEDUPS turns it off")
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


def test_the_buffer_a_frame_is_gathered_in_is_not_given_away_meanwhile(no_spare: Any) -> None:
    # A frame that is not gathered, then the start of one that is, in one read:
    # the buffer the second is gathered in stays the reader's (only a buffer
    # no frame is gathered in may serve another connection).
    big = payload(13, GATHER_MIN * 2)
    other = payload(14, GATHER_MIN * 2)
    wire = build_frame(Opcode.PING, b"p", mask=KEY) + build_frame(Opcode.BINARY, big, mask=KEY)
    first, second = FrameReader(True, None), FrameReader(True, None)
    assert first.read(wire[:3000]) == ([Frame(Opcode.PING, b"p")], None)
    assert first._kept is not None and no_spare == []
    second_wire = build_frame(Opcode.BINARY, other, mask=KEY)
    assert second.read(second_wire[:3000]) == ([], None)
    assert second._kept is not first._kept
    assert second.read(second_wire[3000:]) == ([Frame(Opcode.BINARY, other)], None)
    assert first.read(wire[3000:]) == ([Frame(Opcode.BINARY, big)], None)


def test_two_connections_each_gathering_after_a_ping_receive_their_own_messages(no_spare: Any) -> None:
    # As a server sees it: on each connection, a Ping and the start of a
    # large message arrive in one read, then the rest; the two messages
    # arrive interleaved and each connection delivers its own, intact.
    pairs = [make_pair(max_size=None) for _ in range(2)]
    messages = [payload(20, GATHER_MIN * 3), payload(21, GATHER_MIN * 2)]
    wires = [b"".join(client.send_ping(b"p") + client.send_binary(message))
             for (client, _), message in zip(pairs, messages)]
    events: list[list[Any]] = [[], []]
    for i in range(0, max(map(len, wires)), 3000):
        for k, ((_, server), wire) in enumerate(zip(pairs, wires)):
            if i < len(wire):
                events[k] += server.receive_data(wire[i:i + 3000])
    for k, message in enumerate(messages):
        assert events[k][-1] == BinaryMessage(message)


def test_a_large_frame_gathered_in_its_bytes_is_not_copied_because_of_the_kept_buffer(no_spare: Any) -> None:
    # The same with a frame over the kept size: the kept buffer is not
    # needed, and goes; the frame's own bytes object is handed out as it is.
    require_gather()
    reader = FrameReader(True, None)
    first = build_frame(Opcode.BINARY, payload(16, GATHER_MIN), mask=KEY)
    assert reader.read(first[:3000]) == ([], None)
    assert reader.read(first[3000:]) == ([Frame(Opcode.BINARY, payload(16, GATHER_MIN))], None)
    kept = reader._kept
    assert kept is not None
    big = payload(17, GATHER_KEEP + 5000)
    wire = build_frame(Opcode.PING, b"p", mask=KEY) + build_frame(Opcode.BINARY, big, mask=KEY)
    assert reader.read(wire[:3000]) == ([Frame(Opcode.PING, b"p")], None)
    assert reader._kept is None and no_spare == [kept]
    assert reader.read(wire[3000:]) == ([Frame(Opcode.BINARY, big)], None)


@pytest.mark.parametrize("cursor", ["c", "python"])
@pytest.mark.parametrize("completes", ["receive_data", "receive_into"])
def test_a_frame_gathered_in_its_bytes_is_handed_out_without_a_copy(cursor: str, completes: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The cursor holds a buffer of the frame's Gather while pieces arrive: it
    # is released before take(), which then needs no copy.
    require_gather()
    made: list[Any] = []
    real = frames_module.Gather

    def gather(length: int) -> Any:
        made.append(real(length))
        return made[-1]

    monkeypatch.setattr(frames_module, "Gather", gather)
    if cursor == "python":
        monkeypatch.setattr(frames_module, "Cursor", PyCursor)
    client, server = make_pair(max_size=None)
    message = payload(18, GATHER_KEEP + 3000)
    wire = b"".join(client.send_binary(message))
    events = []
    for i in range(0, len(wire) - 5000, 1460):
        events += server.receive_data(wire[i:min(i + 1460, len(wire) - 5000)])
    assert events == [] and made[0].exports > 0
    if completes == "receive_data":
        events = server.receive_data(wire[-5000:])
    else:
        view = server.receive_buffer()
        assert view is not None
        view[:] = wire[-5000:]
        del view
        events = server.receive_into(5000)
    assert events == [BinaryMessage(message)]
    assert len(made) == 1 and not made[0].copied and made[0].exports == 0


# -- reading straight into the frame being gathered (receive_buffer / receive_into) --


def receive_into_when_offered(receiver: Any, data: bytes, cuts: list[int], fills: list[int]) -> list[Any]:
    """Feed ``data`` as a transport that reads into the offered buffer would.

    At each step, when the protocol offers a buffer, write into it as much
    as a read would give (at most ``fills[i]`` bytes, never more than the
    view); otherwise give the next chunk (cut at ``cuts``) to receive_data.
    """
    events: list[Any] = []
    points = sorted({c % (len(data) + 1) for c in cuts} | {len(data)})
    pos = 0
    step = 0
    while pos < len(data):
        view = receiver.receive_buffer()
        if view is not None:
            n = min(len(view), len(data) - pos, max(1, fills[step % len(fills)] if fills else len(view)))
            view[:n] = data[pos:pos + n]
            events += receiver.receive_into(n)
            pos += n
        else:
            end = next((p for p in points if p > pos), len(data))
            events += receiver.receive_data(data[pos:end])
            pos = end
        step += 1
    return events


@pytest.mark.parametrize("keep", KEPT_SIZES)
@settings(max_examples=60, deadline=None)
@given(specs=frame_specs, cuts=st.lists(st.integers(0, 10**6), max_size=12),
       fills=st.lists(st.integers(1, 70000), max_size=5), masked=st.booleans())
def test_reading_into_the_offered_buffer_gives_the_events_of_receive_data(
        keep: int, specs: list[tuple[str, int, bool, int]], cuts: list[int], fills: list[int], masked: bool) -> None:
    # Binary messages only (no extension: RSV1 clear), from a client or a server.
    plain = [(kind, extra, False, seed) for kind, extra, _rsv1, seed in specs]
    data = stream_of(plain, masked) + (build_frame(Opcode.TEXT, b"after", mask=KEY if masked else None))
    receiving = 1 if masked else 0  # the server receives masked frames, the client unmasked ones
    expected = make_pair(max_size=None)[receiving].receive_data(data)
    receiver = make_pair(max_size=None)[receiving]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(frames_module, "GATHER_KEEP", keep)
        assert receive_into_when_offered(receiver, data, cuts, fills) == expected
    assert receiver.receive_buffer() is None  # nothing is being gathered once the stream ends


def test_the_offered_buffer_is_exactly_what_the_frame_still_needs() -> None:
    client, server = make_pair(max_size=None)
    message = payload(11, GATHER_MIN * 2)
    wire = b"".join(client.send_binary(message)) + b"".join(client.send_text("next"))
    assert server.receive_buffer() is None  # no large frame under way: read into your own buffer
    head = 14 + 1000  # header (2 + 8 + 4 bytes) and the first 1000 payload bytes
    assert server.receive_data(wire[:head]) == []
    view = server.receive_buffer()
    assert view is not None and len(view) == len(message) - 1000
    view[:5000] = wire[head:head + 5000]
    assert server.receive_into(5000) == []
    rest = server.receive_buffer()
    assert rest is not None and len(rest) == len(message) - 6000
    rest[:] = wire[head + 5000:head + len(message) - 1000]
    assert server.receive_into(len(rest)) == [BinaryMessage(message)]
    assert server.receive_buffer() is None
    assert server.receive_data(wire[head + len(message) - 1000:]) == [TextMessage("next")]


def test_a_frame_reader_offers_its_gathering_buffer_only_while_a_large_frame_arrives() -> None:
    # The FrameReader on its own (what Protocol.receive_buffer asks), for users of the frame codec.
    message = payload(3, GATHER_MIN)
    wire = build_frame(Opcode.BINARY, message, mask=b"\x01\x02\x03\x04")
    reader = FrameReader(True, None)
    assert reader.gather_view() is None
    assert reader.read(wire[:4000]) == ([], None)
    view = reader.gather_view()
    assert view is not None and len(view) == len(wire) - 4000
    view[:] = wire[4000:]
    assert reader.gathered(len(view)) == [Frame(Opcode.BINARY, message)]
    assert reader.gather_view() is None


@pytest.mark.parametrize("size", [GATHER_MIN, GATHER_KEEP + 1])
def test_receive_into_refuses_what_was_not_offered(size: int) -> None:
    if size > GATHER_KEEP:
        require_gather()
    client, server = make_pair(max_size=None)
    with pytest.raises(ValueError, match="no large frame is being gathered"):
        server.receive_into(10)
    wire = b"".join(client.send_binary(payload(5, size)))
    server.receive_data(wire[:100])
    view = server.receive_buffer()
    assert view is not None
    with pytest.raises(ValueError, match=f"needs {len(view)} more bytes"):
        server.receive_into(len(view) + 1)
    with pytest.raises(ValueError, match="needs"):
        server.receive_into(-1)
    # Nothing was accounted for, and the view is still the caller's: the frame still completes normally.
    view[:] = wire[100:]
    assert server.receive_into(len(view)) == [BinaryMessage(payload(5, size))]


def test_receive_into_after_the_connection_stopped_receiving_returns_nothing() -> None:
    client, server = make_pair(max_size=None)
    wire = b"".join(client.send_binary(payload(6, GATHER_MIN)))
    server.receive_data(wire[:100])
    view = server.receive_buffer()
    assert view is not None
    view[:] = wire[100:]
    server.receive_eof()  # the transport lost the connection meanwhile
    assert server.receive_buffer() is None
    assert server.receive_into(len(view)) == []


@pytest.mark.parametrize("size", [GATHER_MIN, GATHER_KEEP + 1])
def test_pieces_after_the_connection_stopped_receiving_give_nothing(size: int) -> None:
    # A large frame's pieces are taken before anything else is checked; once
    # the connection stops receiving, neither a piece nor the last one gives an event.
    client, server = make_pair(max_size=None)
    wire = b"".join(client.send_binary(payload(7, size)))
    assert server.receive_data(wire[:100]) == []
    assert server.receive_data(wire[100:5000]) == []
    server.receive_eof()
    assert server.receive_data(wire[5000:-10]) == []
    assert server.receive_data(wire[-10:]) == []
    assert server.receive_data(wire) == []


def test_a_frame_completed_by_receive_into_is_checked_like_any_other() -> None:
    # With permessage-deflate, text frames are gathered whole: invalid UTF-8 in a
    # gathered frame fails the connection with 1007 from receive_into.
    compressor = zlib.compressobj(wbits=-15)
    invalid = random.Random(3).randbytes(GATHER_MIN * 2)  # random bytes: not UTF-8
    body = compressor.compress(invalid) + compressor.flush(zlib.Z_SYNC_FLUSH)
    frame = build_frame(Opcode.TEXT, body[:-4], rsv1=True, mask=KEY)
    server = Protocol(Side.SERVER, max_size=None, extensions=[PerMessageDeflate()])
    assert server.receive_data(frame[:200]) == []
    view = server.receive_buffer()
    assert view is not None and len(view) == len(frame) - 200
    view[:] = frame[200:]
    with pytest.raises(ProtocolError) as info:
        server.receive_into(len(view))
    assert info.value.close_code == 1007
    assert server.receive_buffer() is None


# -- frames over the kept size: gathered in the bytes object they become --


def require_gather() -> None:
    """Skip (fail under CI=true) when the C accelerator's Gather is not there."""
    if frames_module.Gather is None:
        message = ("the C accelerator is not built or WSKIT_NO_SPEEDUPS is set: "
                   "frames over 1 MiB grow the receive buffer")
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes") and not os.environ.get("WSKIT_NO_SPEEDUPS"):
            pytest.fail(message)
        pytest.skip(message)


def read_offered(server: Protocol, wire: bytes, pos: int, piece: int) -> tuple[list[Any], int]:
    """Read ``wire`` from ``pos`` into the offered buffers, ``piece`` bytes at a time, while one is offered.

    Returns the events and the peak of traced memory during the last receive_into.
    """
    events: list[Any] = []
    peak = 0
    while (view := server.receive_buffer()) is not None:
        n = min(len(view), piece)
        view[:n] = wire[pos:pos + n]
        pos += n
        del view
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        events += server.receive_into(n)
        peak = tracemalloc.get_traced_memory()[1] - before
    return events, peak


def test_a_frame_over_the_kept_size_becomes_its_message_without_a_copy() -> None:
    require_gather()
    client, server = make_pair(max_size=None)
    message = payload(8, 3 * GATHER_KEEP + 5)
    wire = b"".join(client.send_binary(message))
    assert server.receive_data(wire[:1460]) == []
    tracemalloc.start()
    try:
        events, peak = read_offered(server, wire, 1460, 1 << 16)
    finally:
        tracemalloc.stop()
    assert events == [BinaryMessage(message)]
    assert peak < len(message) // 4  # unmasked in place: the completing read allocated no second copy


@pytest.mark.parametrize("size", [2 * GATHER_MIN, 2 * GATHER_KEEP])
@pytest.mark.parametrize("keeps", ["a slice", "an export"])
def test_a_view_kept_past_receive_into_cannot_change_the_message(size: int, keeps: str) -> None:
    if size > GATHER_KEEP:
        require_gather()
    client, server = make_pair(max_size=None)
    message = payload(9, size)
    wire = b"".join(client.send_binary(message))
    assert server.receive_data(wire[:1000]) == []
    view = server.receive_buffer()
    assert view is not None
    # What the caller does not let go: a view of the offered view, or an
    # object holding a buffer of it (which keeps it from being released).
    kept = view[:] if keeps == "a slice" else memoryview(pickle.PickleBuffer(view))
    view[:] = wire[1000:]
    events = server.receive_into(len(view))
    assert events == [BinaryMessage(message)]
    kept[:] = bytes(len(kept))  # writes after delivery reach a buffer that no message uses
    assert events[0].data == message
    if size > GATHER_KEEP and keeps == "a slice":
        with pytest.raises(ValueError, match="released"):
            view[0]  # receive_into released the view it was given


def test_frames_over_gather_max_grow_the_receive_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames_module, "GATHER_MAX", GATHER_KEEP + 100)
    client, server = make_pair(max_size=None)
    for size in (GATHER_KEEP + 100, GATHER_KEEP + 101):  # the longest gathered one, and one byte more
        message = payload(size, size)
        wire = b"".join(client.send_binary(message))
        assert server.receive_data(wire[:2000]) == []
        offered = server.receive_buffer()
        assert (offered is not None) == (size <= GATHER_KEEP + 100 and frames_module.Gather is not None)
        del offered
        events = []
        for i in range(2000, len(wire), 1460):
            events += server.receive_data(wire[i:i + 1460])
        assert events == [BinaryMessage(message)]


def test_a_large_compressed_text_frame_is_inflated_once_gathered() -> None:
    # Text that deflate shrinks by only a fifth: its compressed frame is over the kept size.
    source = random.Random(4)
    text = "".join(chr(source.randrange(0x20, 0x7F)) for _ in range(2 * GATHER_KEEP))
    compressor = zlib.compressobj(wbits=-15)
    body = compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert len(body) > GATHER_KEEP
    frame = build_frame(Opcode.TEXT, body[:-4], rsv1=True, mask=KEY)
    server = Protocol(Side.SERVER, max_size=None, extensions=[PerMessageDeflate()])
    events = []
    for i in range(0, len(frame), 1460):
        events += server.receive_data(frame[i:i + 1460])
    assert events == [TextMessage(text)]


def test_a_frame_whose_buffer_cannot_be_reserved_grows_the_receive_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    # A peer's header alone asks for the whole payload's buffer; when the
    # address space is refused, the payload is gathered as it arrives instead.
    def refused(length: int) -> Any:
        raise MemoryError(f"cannot reserve {length} bytes")

    monkeypatch.setattr(frames_module, "Gather", refused)
    client, server = make_pair(max_size=None)
    message = payload(12, GATHER_KEEP + 3000)
    wire = b"".join(client.send_binary(message))
    events = []
    for i in range(0, len(wire), 1460):
        events += server.receive_data(wire[i:i + 1460])
        assert server.receive_buffer() is None
    assert events == [BinaryMessage(message)]

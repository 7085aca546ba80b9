"""Tests for wskit.protocol.Protocol: the sans-I/O data path (RFC 6455 §5-§8) and its contract (docs/sansio.md).

Receiver rules are tested through ``receive_data`` of a bare ``Protocol``
with hand-built frames (tests/helpers.py), one test per rule; every failure
is also checked against the documented failure contract (close code, ``to_send``,
state, what may still be sent, ``receive_eof``).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wskit import (
    BinaryMessage,
    ClientProtocol,
    Close,
    ConnectionClosed,
    Ping,
    Pong,
    Protocol,
    ServerProtocol,
    Side,
    State,
    TextMessage,
)
from wskit.exceptions import InvalidState, PayloadTooBig, ProtocolError, WSKitError
from wskit.extensions.base import Extension
from wskit.frames import Frame, Opcode
from wskit.plugin import PluginManager

from helpers import (
    assert_failed,
    build_frame,
    client_frame,
    close_payload,
    deliver,
    feed_chunks,
    make_pair,
    parse_close_frame,
    parse_frames,
    server_frame,
    state_of,
)

INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]
VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
SIZES = [0, 125, 126, 65535, 65536]


def frame_for(receiver: Protocol, opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
    """A valid frame as the receiver's peer writes it (masked towards a server)."""
    if receiver.side is Side.SERVER:
        return client_frame(opcode, payload, **kwargs)
    return server_frame(opcode, payload, **kwargs)


def check_failing(receiver: Protocol, exc: ProtocolError, code: int) -> None:
    """Assert the documented contract for a connection that failed with ``code``."""
    assert receiver.state is State.CLOSING
    # Nothing more is read.
    assert receiver.receive_data(frame_for(receiver, Opcode.TEXT, b"late")) == []
    assert receiver.receive_data(b"\xff" * 20) == []
    # Our Close is in exc.to_send: no second one.
    with pytest.raises(InvalidState):
        receiver.send_close(1000)
    # exc.events may still be answered.
    out = receiver.send_text("answer") + receiver.send_pong(b"p") + receiver.send_ping() + receiver.send_binary(b"b")
    frames = parse_frames(out, masked=receiver.side is Side.CLIENT)
    assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.PONG, Opcode.PING, Opcode.BINARY]
    assert receiver.state is State.CLOSING
    events = receiver.receive_eof()
    assert state_of(receiver) is State.CLOSED
    assert receiver.close_code == code
    assert len(events) == 1 and isinstance(events[0], ConnectionClosed)
    assert events[0].exception is not None


def fail(receiver: Protocol, data: bytes, code: int) -> ProtocolError:
    """Feed ``data``, check the failure and the whole failing-state contract."""
    exc = assert_failed(receiver, data, code)
    check_failing(receiver, exc, code)
    return exc


def server() -> Protocol:
    return Protocol(Side.SERVER)


def client() -> Protocol:
    return Protocol(Side.CLIENT)


# -- construction -----------------------------------------------------------------


def test_bare_protocol_starts_open() -> None:
    assert Protocol(Side.SERVER).state is State.OPEN
    assert Protocol(Side.CLIENT).state is State.OPEN
    assert Protocol(Side.SERVER).side is Side.SERVER
    assert Protocol(Side.SERVER).close_code is None and Protocol(Side.SERVER).close_reason is None


def test_client_and_server_protocols_start_connecting() -> None:
    assert ClientProtocol().state is State.CONNECTING
    assert ServerProtocol().state is State.CONNECTING
    assert ClientProtocol().side is Side.CLIENT and ServerProtocol().side is Side.SERVER


@pytest.mark.parametrize("state", list(State))
def test_state_override(state: State) -> None:
    assert Protocol(Side.CLIENT, state=state).state is state


def test_enum_values() -> None:
    assert Side("client") is Side.CLIENT and Side("server") is Side.SERVER
    assert [s.value for s in State] == ["connecting", "open", "closing", "closed"]


def test_negative_max_size_is_refused() -> None:
    with pytest.raises(ValueError, match="max_size"):
        Protocol(Side.SERVER, max_size=-1)
    with pytest.raises(ValueError, match="max_fragment_size"):
        Protocol(Side.SERVER, max_fragment_size=0)


def test_exception_hierarchy() -> None:
    assert issubclass(InvalidState, ProtocolError)
    assert issubclass(PayloadTooBig, ProtocolError)
    assert issubclass(ProtocolError, WSKitError)


# -- sending ------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_send_binary_all_size_classes_round_trip(size: int) -> None:
    c, s = make_pair(max_size=None)
    payload = bytes(i % 251 for i in range(size))
    assert deliver(c.send_binary(payload), s) == [BinaryMessage(payload)]
    assert deliver(s.send_binary(payload), c) == [BinaryMessage(payload)]


@pytest.mark.parametrize("size", SIZES)
def test_send_text_all_size_classes_round_trip(size: int) -> None:
    c, s = make_pair(max_size=None)
    text = ("aé€😀" * (size // 4 + 1))[:size]
    assert deliver(c.send_text(text), s) == [TextMessage(text)]
    assert deliver(s.send_text(text), c) == [TextMessage(text)]


def test_rfc6455_5_3_client_masks_with_fresh_key_per_frame() -> None:
    c = client()
    one, two = c.send_text("same"), c.send_text("same")
    assert one != two, "identical messages must be masked with different keys"
    for out in (one, two):
        assert out[0][1] & 0x80
        assert parse_frames(out, masked=True)[0].data == b"same"


def test_rfc6455_5_1_server_does_not_mask() -> None:
    s = server()
    assert s.send_text("same") == s.send_text("same") == [b"\x81\x04same"]
    assert s.send_binary(bytearray(b"\x00\x01")) == [b"\x82\x02\x00\x01"]
    assert s.send_binary(memoryview(b"\x00\x01")) == [b"\x82\x02\x00\x01"]
    assert s.send_ping(b"hi") == [b"\x89\x02hi"]
    assert s.send_pong("hé") == [b"\x8a\x03h\xc3\xa9"]


def test_rfc6455_5_5_control_payload_over_125_bytes_refused_on_send() -> None:
    s = server()
    with pytest.raises(ProtocolError, match="125"):
        s.send_ping(b"x" * 126)
    with pytest.raises(ProtocolError):
        s.send_pong(b"x" * 126)
    assert len(parse_frames(s.send_ping(b"x" * 125), masked=False)[0].data) == 125
    assert s.state is State.OPEN


def test_max_fragment_size_splits_outgoing_messages() -> None:
    c, s = make_pair(max_fragment_size=10)
    payload = bytes(range(25))
    out = c.send_binary(payload)
    frames = parse_frames(out, masked=True)
    assert [(f.opcode, f.fin, len(f.data)) for f in frames] == [
        (Opcode.BINARY, False, 10), (Opcode.CONT, False, 10), (Opcode.CONT, True, 5)]
    assert deliver(out, s) == [BinaryMessage(payload)]
    text = "é€" * 7  # 35 bytes: fragment boundaries fall inside UTF-8 sequences
    out = s.send_text(text)
    frames = parse_frames(out, masked=False)
    assert all(len(f.data) <= 10 for f in frames) and len(frames) == 4
    assert frames[0].opcode == Opcode.TEXT and frames[-1].fin
    assert deliver(out, c) == [TextMessage(text)]
    # Exactly N bytes: one frame; control frames are never fragmented.
    assert len(parse_frames(c.send_binary(b"x" * 10), masked=True)) == 1
    assert len(parse_frames(c.send_ping(b"x" * 50), masked=True)) == 1


def test_max_fragment_size_off_by_default() -> None:
    s = server()
    frames = parse_frames(s.send_binary(b"x" * 100_000), masked=False)
    assert len(frames) == 1 and frames[0].fin


# -- receiving -----------------------------------------------------------------------


def test_receive_messages_and_controls_in_order() -> None:
    s = server()
    data = (client_frame(Opcode.TEXT, "héllo".encode()) + client_frame(Opcode.BINARY, b"\x00\xff")
            + client_frame(Opcode.PING, b"pi") + client_frame(Opcode.PONG, b"po") + client_frame(Opcode.TEXT, b""))
    expected = [TextMessage("héllo"), BinaryMessage(b"\x00\xff"), Ping(b"pi"), Pong(b"po"), TextMessage("")]
    assert s.receive_data(data) == expected
    assert feed_chunks(server(), data, 1) == expected
    assert feed_chunks(server(), data, 3) == expected


def test_receive_data_accepts_bytearray_and_memoryview() -> None:
    data = client_frame(Opcode.TEXT, b"hi")
    assert server().receive_data(bytearray(data)) == [TextMessage("hi")]
    assert server().receive_data(memoryview(data)) == [TextMessage("hi")]


def test_rfc6455_5_4_fragmented_messages_are_reassembled() -> None:
    s = server()
    data = (client_frame(Opcode.BINARY, b"ab", fin=False) + client_frame(Opcode.CONT, b"", fin=False)
            + client_frame(Opcode.CONT, b"cd"))
    assert s.receive_data(data) == [BinaryMessage(b"abcd")]
    assert feed_chunks(server(), data, 1) == [BinaryMessage(b"abcd")]


def test_rfc6455_5_4_control_frames_interleaved_in_fragmented_message_keep_order() -> None:
    c = client()
    data = (server_frame(Opcode.TEXT, b"a", fin=False) + server_frame(Opcode.PING, b"1")
            + server_frame(Opcode.CONT, b"b", fin=False) + server_frame(Opcode.PONG, b"2")
            + server_frame(Opcode.PING, b"3") + server_frame(Opcode.CONT, b"c"))
    assert c.receive_data(data) == [Ping(b"1"), Pong(b"2"), Ping(b"3"), TextMessage("abc")]


def test_rfc6455_8_1_utf8_sequence_split_across_fragments_is_valid() -> None:
    euro = "€".encode()
    data = (client_frame(Opcode.TEXT, euro[:1], fin=False) + client_frame(Opcode.CONT, euro[1:2], fin=False)
            + client_frame(Opcode.CONT, euro[2:] + "😀".encode()[:2], fin=False)
            + client_frame(Opcode.CONT, "😀".encode()[2:]))
    assert server().receive_data(data) == [TextMessage("€😀")]
    assert feed_chunks(server(), data, 1) == [TextMessage("€😀")]


# -- hostile fragmentation: bounded by frames, not only by payload bytes ------------------------


def _empty_continuations(count: int, fin: bool = False) -> bytes:
    frame = client_frame(Opcode.CONT, b"", fin=False)
    return frame * (count - 1) + client_frame(Opcode.CONT, b"", fin=fin)


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_message_in_exactly_the_frame_limit_is_received(opcode: int) -> None:
    s = server()  # max_size 1 MiB: 65,536 frames per message
    data = client_frame(opcode, b"a", fin=False) + _empty_continuations(65534) + client_frame(Opcode.CONT, b"b")
    expected = TextMessage("ab") if opcode == Opcode.TEXT else BinaryMessage(b"ab")
    assert s.receive_data(data) == [expected]


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_endless_empty_continuations_end_with_1009(opcode: int) -> None:
    s = server()
    exc = fail(s, client_frame(opcode, b"a", fin=False) + _empty_continuations(65536, fin=True), 1009)
    assert isinstance(exc, PayloadTooBig)
    assert "more than 65536 frames" in str(exc)


def test_endless_empty_continuations_end_with_1009_with_compression() -> None:
    client, server_ = _deflate_pair()  # max_size 1,000,000: 62,500 frames per message
    data = b"".join(client.send_binary(b"x", fin=False))
    data += b"".join(b"".join(client.send_continuation(b"", fin=False)) for _ in range(62_500))
    exc = assert_failed(server_, data, 1009)
    assert "more than 62500 frames" in str(exc)


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_empty_continuations_take_no_memory_per_frame(opcode: int) -> None:
    import tracemalloc

    s = Protocol(Side.SERVER, max_size=None)  # no frame limit: memory alone is checked
    chunk = _empty_continuations(1000)
    assert s.receive_data(client_frame(opcode, b"a", fin=False)) == []
    tracemalloc.start()
    try:
        for _ in range(5):
            assert s.receive_data(chunk) == []
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(100):
            assert s.receive_data(chunk) == []
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 16_384, f"{grown} bytes more after 100,000 empty frames"
    last = s.receive_data(client_frame(Opcode.CONT, b"z"))
    assert last == [TextMessage("az") if opcode == Opcode.TEXT else BinaryMessage(b"az")]


def test_autobahn_9_3_shape_4_mib_in_65536_fragments_fits_a_4_mib_max_size() -> None:
    payload = b"*" * 64
    data = client_frame(Opcode.TEXT, payload, fin=False)
    data += client_frame(Opcode.CONT, payload, fin=False) * 65534 + client_frame(Opcode.CONT, payload)
    s = Protocol(Side.SERVER, max_size=4 * 2**20)
    events = feed_chunks(s, data, 65536)
    assert events == [TextMessage("*" * (4 * 2**20))]


def test_receive_large_message_in_small_chunks() -> None:
    payload = bytes(i % 256 for i in range(300_000))
    data = client_frame(Opcode.BINARY, payload)
    s = Protocol(Side.SERVER, max_size=None)
    assert feed_chunks(s, data, 1460) == [BinaryMessage(payload)]


# -- receiver rules: RFC 6455 §5 ----------------------------------------------------------


def test_rfc6455_5_1_server_fails_on_unmasked_frame() -> None:
    fail(server(), server_frame(Opcode.TEXT, b"hi"), 1002)


def test_rfc6455_5_1_client_fails_on_masked_frame() -> None:
    fail(client(), client_frame(Opcode.TEXT, b"hi"), 1002)


@pytest.mark.parametrize("bit", ["rsv1", "rsv2", "rsv3"])
def test_rfc6455_5_2_fails_on_rsv_bit_without_extension(bit: str) -> None:
    fail(server(), client_frame(Opcode.TEXT, b"hi", **{bit: True}), 1002)
    fail(client(), server_frame(Opcode.PING, b"", **{bit: True}), 1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_rfc6455_5_2_fails_on_reserved_opcode(opcode: int) -> None:
    fail(server(), client_frame(opcode, b"x"), 1002)


def test_rfc6455_5_2_fails_on_64bit_length_with_most_significant_bit_set() -> None:
    fail(server(), client_frame(Opcode.BINARY, b"", length=(1 << 63) | 5), 1002)
    fail(Protocol(Side.CLIENT, max_size=None), server_frame(Opcode.BINARY, b"", length=1 << 63), 1002)


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_rfc6455_5_5_fails_on_control_frame_over_125_bytes(opcode: int) -> None:
    fail(server(), client_frame(opcode, b"x" * 126), 1002)
    # Also with a 16-bit length field declaring a small size is not the point: 126+ is.
    fail(client(), server_frame(opcode, b"x" * 200), 1002)


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_rfc6455_5_5_fails_on_fragmented_control_frame(opcode: int) -> None:
    fail(server(), client_frame(opcode, b"", fin=False), 1002)


def test_rfc6455_5_4_fails_on_continuation_without_message() -> None:
    fail(server(), client_frame(Opcode.CONT, b"x"), 1002)
    # Also right after a complete message.
    exc = fail(server(), client_frame(Opcode.TEXT, b"done") + client_frame(Opcode.CONT, b"x"), 1002)
    assert exc.events == [TextMessage("done")]


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_rfc6455_5_4_fails_on_new_message_during_fragmented_message(opcode: int) -> None:
    data = client_frame(Opcode.BINARY, b"a", fin=False) + client_frame(opcode, b"b")
    exc = fail(server(), data, 1002)
    assert exc.events == []


def test_rfc6455_5_5_1_fails_on_close_payload_of_one_byte() -> None:
    fail(server(), client_frame(Opcode.CLOSE, b"\x03"), 1002)


@pytest.mark.parametrize("code", INVALID_CLOSE_CODES)
def test_rfc6455_7_4_fails_on_invalid_close_code(code: int) -> None:
    fail(server(), client_frame(Opcode.CLOSE, close_payload(code, b"r")), 1002)
    fail(client(), server_frame(Opcode.CLOSE, close_payload(code)), 1002)


@pytest.mark.parametrize("code", VALID_CLOSE_CODES)
def test_rfc6455_7_4_accepts_valid_close_code(code: int) -> None:
    s = server()
    assert s.receive_data(client_frame(Opcode.CLOSE, close_payload(code, "ok é".encode()))) == [Close(code, "ok é")]
    assert s.state is State.CLOSING
    assert s.close_code == code and s.close_reason == "ok é"


def test_rfc6455_5_5_1_fails_on_invalid_utf8_close_reason() -> None:
    fail(server(), client_frame(Opcode.CLOSE, close_payload(1000, b"\xc3\x28")), 1007)


# -- receiver rules: UTF-8 (RFC 6455 §8.1) ----------------------------------------------------


def test_rfc6455_8_1_fails_on_invalid_utf8_text() -> None:
    fail(server(), client_frame(Opcode.TEXT, b"ok \xff"), 1007)
    fail(client(), server_frame(Opcode.TEXT, b"\xed\xa0\x80"), 1007)  # a UTF-16 surrogate


def test_rfc6455_8_1_fails_on_utf8_truncated_at_end_of_message() -> None:
    data = client_frame(Opcode.TEXT, b"ok \xe2\x82", fin=False) + client_frame(Opcode.CONT, b"")
    fail(server(), data, 1007)
    fail(server(), client_frame(Opcode.TEXT, b"\xe2\x82"), 1007)


def test_rfc6455_8_1_fails_fast_on_first_invalid_fragment() -> None:
    s = server()
    assert s.receive_data(client_frame(Opcode.TEXT, b"good ", fin=False)) == []
    # The message is not finished: the invalid fragment alone must fail it.
    fail(s, client_frame(Opcode.CONT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", fin=False), 1007)


@pytest.mark.parametrize("side", [Side.SERVER, Side.CLIENT])
def test_rfc6455_8_1_fails_fast_inside_a_frame_arriving_in_chunks(side: Side) -> None:
    p = Protocol(side)
    payload = b"valid text then \xf4\x90\x80\x80" + b"x" * 200  # U+110000 is out of range
    data = frame_for(p, Opcode.TEXT, payload)
    hlen = 8 if side is Side.SERVER else 4  # 16-bit length (+ mask key towards a server)
    assert p.receive_data(data[:hlen + 10]) == []
    # The invalid bytes arrive long before the frame's end: fail on this chunk.
    fail(p, data[hlen + 10:hlen + 30], 1007)


def test_rfc6455_8_1_valid_text_in_chunks_is_not_failed_early() -> None:
    text = "€" * 100
    data = client_frame(Opcode.TEXT, text.encode())
    assert feed_chunks(server(), data, 1) == [TextMessage(text)]
    assert feed_chunks(server(), data, 7) == [TextMessage(text)]


# -- max_size (RFC 6455 §10.4) ----------------------------------------------------------------


def test_max_size_checked_from_frame_header_before_payload() -> None:
    s = Protocol(Side.SERVER, max_size=1000)
    header = client_frame(Opcode.BINARY, b"", length=1001)  # header + mask key, no payload
    exc = fail(s, header, 1009)
    assert isinstance(exc, PayloadTooBig)


def test_max_size_on_sum_of_fragments() -> None:
    s = Protocol(Side.SERVER, max_size=1000)
    assert s.receive_data(client_frame(Opcode.TEXT, b"a" * 600, fin=False)) == []
    exc = fail(s, client_frame(Opcode.CONT, b"", length=401)[:8], 1009)
    assert isinstance(exc, PayloadTooBig)


def test_max_size_allows_message_of_exactly_max_size() -> None:
    s = Protocol(Side.SERVER, max_size=1000)
    data = client_frame(Opcode.TEXT, b"a" * 500, fin=False) + client_frame(Opcode.CONT, b"a" * 500)
    assert s.receive_data(data) == [TextMessage("a" * 1000)]


def test_max_size_default_is_one_mebibyte() -> None:
    assert Protocol(Side.SERVER).receive_data(client_frame(Opcode.BINARY, b"", length=2**20)[:14]) == []
    fail(Protocol(Side.SERVER), client_frame(Opcode.BINARY, b"", length=2**20 + 1)[:14], 1009)


def test_max_size_none_accepts_big_message() -> None:
    payload = b"z" * (2**21 + 3)
    s = Protocol(Side.SERVER, max_size=None)
    assert s.receive_data(client_frame(Opcode.BINARY, payload)) == [BinaryMessage(payload)]


# -- failure contract ----------------------------------------------------------------------------


def test_failure_keeps_messages_completed_before_violation_autobahn_order() -> None:
    s = server()
    data = (client_frame(Opcode.TEXT, b"hello") + client_frame(Opcode.PING, b"p")
            + client_frame(Opcode.TEXT, b"x", rsv2=True) + client_frame(Opcode.TEXT, b"never"))
    with pytest.raises(ProtocolError) as info:
        s.receive_data(data)
    exc = info.value
    assert exc.events == [TextMessage("hello"), Ping(b"p")]
    # Answer the events first, then exc.to_send (Autobahn 3.2, 4.1.3, 5.15).
    echo = s.send_text("hello") + s.send_pong(b"p")
    c = client()
    events = c.receive_data(b"".join(echo + exc.to_send))
    assert events[:2] == [TextMessage("hello"), Pong(b"p")]
    assert len(events) == 3 and isinstance(events[2], Close) and events[2].code == 1002
    assert c.close_code == 1002


def test_failure_after_we_sent_close_does_not_send_a_second_close() -> None:
    s = server()
    s.send_close(1000)
    with pytest.raises(ProtocolError) as info:
        s.receive_data(client_frame(7, b""))
    assert info.value.close_code == 1002
    assert not any(parse_frames(info.value.to_send, masked=False))
    assert s.state is State.CLOSING
    with pytest.raises(InvalidState):
        s.send_text("x")
    assert s.receive_data(client_frame(Opcode.CLOSE, close_payload(1000))) == []
    s.receive_eof()
    assert state_of(s) is State.CLOSED and s.close_code == 1002


def test_failure_close_frame_is_masked_by_client() -> None:
    c = client()
    with pytest.raises(ProtocolError) as info:
        c.receive_data(server_frame(Opcode.CONT, b""))
    assert info.value.to_send[0][1] & 0x80
    assert parse_close_frame(info.value.to_send, masked=True)[0] == 1002


# -- closing handshake (RFC 6455 §5.5.1, §7) ----------------------------------------------------


@pytest.mark.parametrize("initiator", ["client", "server"])
def test_rfc6455_7_closing_handshake_in_memory(initiator: str) -> None:
    c, s = make_pair()
    first, second = (c, s) if initiator == "client" else (s, c)
    out = first.send_close(1001, "going away é")
    assert first.state is State.CLOSING and second.state is State.OPEN
    assert deliver(out, second) == [Close(1001, "going away é")]
    assert state_of(second) is State.CLOSING
    assert second.close_code == 1001 and second.close_reason == "going away é"
    # RFC 6455 §5.5.1: the peer may finish sending before it answers.
    late = second.send_text("last words") + second.send_ping(b"?")
    answer = second.send_close(1001, "going away é")
    assert state_of(second) is State.CLOSED
    assert deliver(late + answer, first) == [TextMessage("last words"), Ping(b"?"), Close(1001, "going away é")]
    assert state_of(first) is State.CLOSED
    assert first.close_code == 1001
    for p in (first, second):
        events = p.receive_eof()
        assert events == [ConnectionClosed(None)]
        assert p.state is State.CLOSED and p.close_code == 1001


def test_rfc6455_5_5_1_empty_close_gives_1005_and_echoes_empty() -> None:
    c, s = make_pair()
    assert s.receive_data(client_frame(Opcode.CLOSE)) == [Close(1005, "")]
    assert s.close_code == 1005
    answer = s.send_close(1005, "")
    assert answer == [b"\x88\x00"]
    assert s.state is State.CLOSED
    echo = c.send_close(1005, "")
    assert parse_frames(echo, masked=True)[0].data == b""


@pytest.mark.parametrize("code", [c for c in INVALID_CLOSE_CODES if c != 1005])
def test_send_close_refuses_invalid_code(code: int) -> None:
    s = server()
    with pytest.raises(ProtocolError, match=str(code)):
        s.send_close(code)
    assert s.state is State.OPEN, "a refused send_close must not change the state"
    assert parse_close_frame(s.send_close(1000), masked=False) == (1000, "")


def test_send_close_refuses_long_reason_and_1005_with_reason() -> None:
    s = server()
    with pytest.raises(ProtocolError):
        s.send_close(1000, "x" * 124)
    with pytest.raises(ProtocolError):
        s.send_close(1005, "reason")
    assert s.state is State.OPEN
    assert parse_close_frame(s.send_close(1000, "x" * 123), masked=False) == (1000, "x" * 123)


@pytest.mark.parametrize("code", VALID_CLOSE_CODES)
def test_send_close_accepts_valid_code(code: int) -> None:
    assert parse_close_frame(client().send_close(code, "r"), masked=True) == (code, "r")


def test_send_close_defaults_to_1000() -> None:
    assert parse_close_frame(server().send_close(), masked=False) == (1000, "")


def test_rfc6455_5_5_1_data_after_peer_close_is_ignored_in_later_chunk() -> None:
    s = server()
    assert s.receive_data(client_frame(Opcode.CLOSE, close_payload(1000))) == [Close(1000, "")]
    assert s.receive_data(client_frame(Opcode.TEXT, b"after")) == []
    assert s.receive_data(b"\xff\xff garbage") == []


def test_rfc6455_5_5_1_data_after_peer_close_is_ignored_in_same_chunk() -> None:
    s = server()
    data = client_frame(Opcode.CLOSE, close_payload(1000)) + client_frame(Opcode.TEXT, b"after")
    assert s.receive_data(data) == [Close(1000, "")]


def test_rfc6455_5_5_1_violation_after_peer_close_in_same_chunk_is_ignored() -> None:
    s = server()
    data = client_frame(Opcode.CLOSE, close_payload(1000)) + server_frame(3, b"not even masked")
    assert s.receive_data(data) == [Close(1000, "")]
    assert s.state is State.CLOSING and s.close_code == 1000
    assert parse_close_frame(s.send_close(1000), masked=False) == (1000, "")


def test_rfc6455_5_5_1_after_answering_close_more_data_is_ignored() -> None:
    c, s = make_pair()
    deliver(c.send_close(), s)
    answer = s.send_close()
    assert deliver(answer, c) == [Close(1000, "")]
    assert c.state is State.CLOSED
    assert c.receive_data(server_frame(Opcode.TEXT, b"zombie")) == []


def test_rfc6455_7_1_5_eof_before_closing_handshake_is_1006() -> None:
    s = server()
    events = s.receive_eof()
    assert s.state is State.CLOSED
    assert s.close_code == 1006
    assert len(events) == 1 and isinstance(events[0], ConnectionClosed)
    assert events[0].exception is not None


def test_rfc6455_7_1_5_eof_after_we_sent_close_is_1006() -> None:
    c = client()
    c.send_close(1000)
    events = c.receive_eof()
    assert c.state is State.CLOSED and c.close_code == 1006
    assert events[0].exception is not None  # type: ignore[attr-defined]


def test_eof_after_peer_close_keeps_peer_code() -> None:
    s = server()
    s.receive_data(client_frame(Opcode.CLOSE, close_payload(4000, b"app")))
    s.receive_eof()
    assert s.state is State.CLOSED
    assert (s.close_code, s.close_reason) == (4000, "app")


# -- state permissions (the table of docs/sansio.md) ------------------------------------------------


def _open() -> Protocol:
    return server()


def _closing_sent() -> Protocol:
    p = server()
    p.send_close()
    return p


def _closing_received() -> Protocol:
    p = server()
    p.receive_data(client_frame(Opcode.CLOSE, close_payload(1000)))
    return p


def _failing() -> Protocol:
    p = server()
    with pytest.raises(ProtocolError):
        p.receive_data(client_frame(Opcode.CONT, b""))
    return p


def _closed_handshake() -> Protocol:
    p = _closing_received()
    p.send_close()
    return p


def _closed_eof() -> Protocol:
    p = server()
    p.receive_eof()
    return p


def _closed_after_failure() -> Protocol:
    p = _failing()
    p.receive_eof()
    return p


SITUATIONS: dict[str, tuple[Callable[[], Protocol], State, bool, bool]] = {
    # name: (factory, public state, data + ping/pong allowed, send_close allowed)
    "connecting-client": (ClientProtocol, State.CONNECTING, False, False),
    "connecting-server": (ServerProtocol, State.CONNECTING, False, False),
    "connecting-bare": (lambda: Protocol(Side.CLIENT, state=State.CONNECTING), State.CONNECTING, False, False),
    "open": (_open, State.OPEN, True, True),
    "closing-we-sent-close": (_closing_sent, State.CLOSING, False, False),
    "closing-peer-sent-close": (_closing_received, State.CLOSING, True, True),
    "closing-failed": (_failing, State.CLOSING, True, False),
    "closed-handshake": (_closed_handshake, State.CLOSED, False, False),
    "closed-eof": (_closed_eof, State.CLOSED, False, False),
    "closed-after-failure": (_closed_after_failure, State.CLOSED, False, False),
}

DATA_OPS: dict[str, Callable[[Protocol], list[bytes]]] = {
    "send_text": lambda p: p.send_text("t"),
    "send_binary": lambda p: p.send_binary(b"b"),
    "send_ping": lambda p: p.send_ping(b"i"),
    "send_pong": lambda p: p.send_pong(b"o"),
}


@pytest.mark.parametrize("situation", list(SITUATIONS))
@pytest.mark.parametrize("op", list(DATA_OPS))
def test_state_permission_data_and_ping_pong(situation: str, op: str) -> None:
    factory, public, data_ok, _ = SITUATIONS[situation]
    p = factory()
    assert p.state is public
    if data_ok:
        out = DATA_OPS[op](p)
        assert len(parse_frames(out, masked=p.side is Side.CLIENT)) == 1
        assert p.state is public
    else:
        with pytest.raises(InvalidState) as info:
            DATA_OPS[op](p)
        assert public.name in str(info.value)
        assert p.state is public


@pytest.mark.parametrize("situation", list(SITUATIONS))
def test_state_permission_send_close(situation: str) -> None:
    factory, public, _, close_ok = SITUATIONS[situation]
    p = factory()
    if close_ok:
        out = p.send_close(1000)
        assert parse_close_frame(out, masked=p.side is Side.CLIENT) == (1000, "")
        assert p.state is (State.CLOSING if public is State.OPEN else State.CLOSED)
    else:
        with pytest.raises(InvalidState):
            p.send_close(1000)
        assert p.state is public


def test_invalid_state_is_caught_as_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        ClientProtocol().send_text("x")


@pytest.mark.parametrize("situation", ["closing-peer-sent-close", "closing-failed", "closed-handshake", "closed-eof"])
def test_receive_data_returns_nothing_when_not_reading(situation: str) -> None:
    p = SITUATIONS[situation][0]()
    assert p.receive_data(client_frame(Opcode.TEXT, b"x")) == []


def test_receive_data_still_reads_after_we_sent_close() -> None:
    p = _closing_sent()
    assert p.receive_data(client_frame(Opcode.TEXT, b"x") + client_frame(Opcode.PING)) == [TextMessage("x"), Ping()]


# -- logging -------------------------------------------------------------------------------------


def test_logger_adapter_accepted_and_state_changes_logged(caplog: pytest.LogCaptureFixture) -> None:
    base = logging.getLogger("tests.wskit.protocol")
    caplog.set_level(logging.DEBUG, logger="tests.wskit.protocol")
    adapter = logging.LoggerAdapter(base, {"conn": "abc"})
    # State changes are logged by the "logging" plugin (one line per change).
    manager = PluginManager(enable=["logging"], entry_points=False)
    c = Protocol(Side.CLIENT, logger=adapter, plugin_manager=manager)
    s = Protocol(Side.SERVER, logger=base, plugin_manager=manager)
    deliver(c.send_text("hi"), s)
    deliver(c.send_close(), s)
    deliver(s.send_close(), c)
    messages = [r.getMessage() for r in caplog.records if r.name == "tests.wskit.protocol"]
    assert any("OPEN" in m and "CLOSING" in m for m in messages), messages
    assert any("CLOSING" in m and "CLOSED" in m for m in messages), messages


def test_no_debug_logging_when_disabled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tests.wskit.quiet")
    s = Protocol(Side.SERVER, logger=logging.getLogger("tests.wskit.quiet"))
    s.send_close()
    assert [r for r in caplog.records if r.name == "tests.wskit.quiet"] == []


def test_close_frame_sizes_on_the_wire() -> None:
    # A 123-byte reason makes a 125-byte payload: still a 7-bit length.
    out = server().send_close(1000, "r" * 123)
    assert out[0][:2] == b"\x88\x7d"
    assert struct.unpack("!H", out[0][2:4])[0] == 1000
    assert build_frame(Opcode.CLOSE, close_payload(1000, b"r" * 123)) == out[0]


# -- extensions on a bare Protocol ---------------------------------------------------------------


class _Rsv1Extension(Extension):
    """Gives meaning to RSV1 and clears it on decode (like a compression extension would)."""

    name = "x-rsv1"
    rsv_mask = 0x40

    def __init__(self, clear: bool = True) -> None:
        super().__init__()
        self.clear = clear

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        return frame._replace(rsv1=False) if self.clear else frame


def test_max_size_is_exact_with_extensions() -> None:
    s = Protocol(Side.SERVER, max_size=100, extensions=[Extension()])
    assert s.receive_data(client_frame(Opcode.BINARY, b"x" * 100)) == [BinaryMessage(b"x" * 100)]
    exc = fail(s, client_frame(Opcode.BINARY, b"x" * 101), 1009)
    assert isinstance(exc, PayloadTooBig)


def test_rfc6455_5_2_rsv_bit_allowed_only_when_extension_defines_it() -> None:
    s = Protocol(Side.SERVER, extensions=[_Rsv1Extension()])
    assert s.receive_data(client_frame(Opcode.TEXT, b"hi", rsv1=True)) == [TextMessage("hi")]
    fail(s, client_frame(Opcode.TEXT, b"hi", rsv2=True), 1002)


def test_rfc6455_5_2_rsv_bit_left_set_by_extension_fails() -> None:
    fail(Protocol(Side.SERVER, extensions=[_Rsv1Extension(clear=False)]), client_frame(Opcode.TEXT, b"hi", rsv1=True),
         1002)


def test_extension_crash_fails_with_1011() -> None:
    class Broken(Extension):
        name = "x-broken"

        def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
            raise RuntimeError("boom")

    exc = fail(Protocol(Side.SERVER, extensions=[Broken()]), client_frame(Opcode.TEXT, b"hi"), 1011)
    assert "x-broken" in str(exc) and "boom" in str(exc)


def test_fragmented_send_with_send_continuation_reassembles() -> None:
    c, s = Protocol(Side.CLIENT), Protocol(Side.SERVER)
    wire = c.send_text("hel", fin=False) + c.send_ping(b"p") + c.send_continuation("lo ", fin=False)
    wire += c.send_continuation("wörld", fin=True)
    events = [e for data in wire for e in s.receive_data(data)]
    assert events == [Ping(b"p"), TextMessage("hello wörld")]
    # After the last fragment, ordinary messages go out as single frames again.
    assert s.receive_data(b"".join(c.send_binary(b"x"))) == [BinaryMessage(b"x")]


def test_fragmented_binary_send_and_rules() -> None:
    c, s = Protocol(Side.CLIENT), Protocol(Side.SERVER)
    with pytest.raises(InvalidState, match="send_continuation"):
        c.send_continuation(b"x", fin=True)
    first = c.send_binary(b"ab", fin=False)
    with pytest.raises(InvalidState, match="fragmented message"):
        c.send_text("interleaved")
    last = c.send_continuation(b"cd", fin=True)
    events = [e for data in first + last for e in s.receive_data(data)]
    assert events == [BinaryMessage(b"abcd")]


# -- review fixes ------------------------------------------------------------------


def test_memoryview_with_wide_items_is_sent_as_its_bytes() -> None:
    from array import array

    view = memoryview(array("I", range(40)))  # 160 bytes in 40 items
    s = server()
    c = client()
    events = [e for data in c.send_binary(view) for e in s.receive_data(data)]
    assert events == [BinaryMessage(view.tobytes())]
    # RFC 6455 §5.5: the 125-byte limit counts bytes, not items.
    with pytest.raises(ProtocolError, match="160 bytes"):
        c.send_ping(view)


def with_gaps(data: bytes) -> memoryview:
    """A view of ``data``'s bytes that is not contiguous (every other byte of a buffer)."""
    doubled = bytearray(2 * len(data))
    doubled[::2] = data
    return memoryview(bytes(doubled))[::2]


def in_rows(data: bytes) -> memoryview:
    """A two-dimensional view of ``data``'s bytes (its ``len()`` counts rows), or a plain one."""
    rows = next((n for n in (4, 3, 2) if len(data) % n == 0), 1)
    return memoryview(data).cast("B", (rows, len(data) // rows))


SHAPES: dict[str, Callable[[bytes], memoryview]] = {
    "format c": lambda data: memoryview(data).cast("c"),
    "gaps": with_gaps,
    "rows": in_rows,
}


@pytest.mark.parametrize("shape", SHAPES)
def test_memoryviews_of_any_shape_are_sent_as_their_bytes(shape: str) -> None:
    data = bytes(range(24))
    view = SHAPES[shape](data)
    for sender, receiver in ((client(), server()), (server(), client())):
        events = [e for out in sender.send_binary(view) + sender.send_ping(view) for e in receiver.receive_data(out)]
        assert events == [BinaryMessage(data), Ping(data)]


@given(shape=st.sampled_from(sorted(SHAPES)), first=st.binary(min_size=1, max_size=40),
       second=st.binary(min_size=1, max_size=300), cut=st.integers(0, 400))
def test_received_bytes_in_memoryviews_of_any_shape_give_the_same_events(shape: str, first: bytes, second: bytes,
                                                                            cut: int) -> None:
    c = client()
    wire = b"".join(c.send_binary(first) + c.send_binary(second))
    cut = min(cut, len(wire))
    s = server()
    events = []
    for part in (wire[:cut], wire[cut:]):
        if part:
            events += s.receive_data(SHAPES[shape](part))
    assert events == [BinaryMessage(first), BinaryMessage(second)]


def test_send_text_and_send_binary_name_the_wrong_type() -> None:
    p = server()
    with pytest.raises(TypeError, match="send_text\\(\\) takes a str, got bytes"):
        p.send_text(b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="send_binary\\(\\) takes bytes-like data, got str"):
        p.send_binary("x")  # type: ignore[arg-type]


def test_received_frames_carry_opcode_members() -> None:
    seen: list[object] = []

    class Spy(Extension):
        name = "x-spy"

        def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
            seen.append(frame.opcode)
            return frame

    s = Protocol(Side.SERVER, extensions=[Spy()])
    c = Protocol(Side.CLIENT, extensions=[Spy()])
    deliver(c.send_text("a", fin=False) + c.send_ping(b"") + c.send_continuation("b", fin=True), s)
    assert seen[0] is Opcode.TEXT and seen[1] is Opcode.PING and seen[2] is Opcode.CONT


def test_encoder_protocol_error_fails_the_connection() -> None:
    class Refuse(Extension):
        name = "x-refuse"

        def encode(self, frame: Frame) -> Frame:
            if frame.data == b"bad":
                raise ProtocolError("refused by the extension", close_code=1008)
            return frame

    p = Protocol(Side.SERVER, extensions=[Refuse()])
    with pytest.raises(ProtocolError) as info:
        p.send_binary(b"bad")
    assert p.state is State.CLOSING and p.close_code == 1008
    assert len(info.value.to_send) == 1 and info.value.to_send[0][2:4] == (1008).to_bytes(2, "big")


def test_encoder_bug_while_answering_a_close_still_sends_a_close() -> None:
    class Buggy(Extension):
        name = "x-buggy"

        def encode(self, frame: Frame) -> Frame:
            if frame.data == b"bug":
                raise ValueError("bug")
            return frame

    p = Protocol(Side.SERVER, extensions=[Buggy()])
    p.receive_data(Protocol(Side.CLIENT).send_close(1000)[0])
    with pytest.raises(ProtocolError) as info:
        p.send_binary(b"bug")
    assert info.value.close_code == p.close_code == 1011
    assert len(info.value.to_send) == 1 and info.value.to_send[0][2:4] == (1011).to_bytes(2, "big")
    assert "x-buggy" in str(info.value) and isinstance(info.value.__cause__, WSKitError)
    assert isinstance(info.value.__cause__.__cause__, ValueError)


def test_failure_close_frame_reaches_frame_sent_observers() -> None:
    from wskit.hookspecs import hookimpl

    sent: list[object] = []

    class Observer:
        @hookimpl
        def wskit_frame_sent(self, protocol: object, frame: Frame) -> None:
            sent.append(frame.opcode)

    p = Protocol(Side.SERVER, plugin_manager=PluginManager([Observer()], entry_points=False))
    with pytest.raises(ProtocolError):
        p.receive_data(b"\x83\x80\x00\x00\x00\x00")  # reserved opcode 3
    assert sent == [Opcode.CLOSE]


def test_protocol_created_closing_knows_it_sent_its_close() -> None:
    p = Protocol(Side.SERVER, state=State.CLOSING)
    p.receive_data(Protocol(Side.CLIENT).send_close(1000)[0])
    assert p.state is State.CLOSED
    assert p.receive_eof() == [ConnectionClosed(None)]


def test_plugin_managers_for_new_plugin_lists_are_bounded() -> None:
    from wskit import _protocol as protocol_module

    class Plugin:
        pass

    for _ in range(protocol_module._MAX_MANAGERS + 8):
        Protocol(Side.SERVER, plugins=[Plugin()])
    assert len(protocol_module._managers) <= protocol_module._MAX_MANAGERS


# -- 1009 names the user's max_size, with and without compression --------------------------------

_USER_LIMIT = 1_000_000


def _deflate_pair() -> tuple[Protocol, Protocol]:
    from wskit.extensions.permessage_deflate import ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory

    client_factory, server_factory = ClientPerMessageDeflateFactory(), ServerPerMessageDeflateFactory()
    response, server_ext = server_factory.process_request_params(client_factory.get_request_params(), [])
    client_ext = client_factory.process_response_params(response, [])
    return (Protocol(Side.CLIENT, extensions=[client_ext]),
            Protocol(Side.SERVER, extensions=[server_ext], max_size=_USER_LIMIT))


def _assert_names_user_limit(server: Protocol, data: bytes) -> None:
    exc = assert_failed(server, data, 1009)
    assert isinstance(exc, PayloadTooBig)
    _, reason = parse_close_frame(exc.to_send, masked=False)
    for text in (str(exc), reason, server.close_reason or ""):
        assert f"max_size={_USER_LIMIT}" in text, text
        # The reader's internal wire limit (max_size plus slack for extensions) is never shown.
        assert str(_USER_LIMIT + _USER_LIMIT // 8 + 4096) not in text, text


def test_too_big_without_compression_names_max_size() -> None:
    client = Protocol(Side.CLIENT)
    server = Protocol(Side.SERVER, max_size=_USER_LIMIT)
    _assert_names_user_limit(server, b"".join(client.send_binary(b"x" * (_USER_LIMIT + 1))))


def test_too_big_once_decompressed_names_max_size() -> None:
    client, server = _deflate_pair()
    wire = b"".join(client.send_binary(b"x" * (_USER_LIMIT + 1)))
    assert len(wire) < _USER_LIMIT // 100  # compressible: the wire size is far below the limit
    _assert_names_user_limit(server, wire)


def test_too_big_on_the_wire_with_compression_names_max_size() -> None:
    import os

    client, server = _deflate_pair()
    wire = b"".join(client.send_binary(os.urandom(_USER_LIMIT + _USER_LIMIT // 4)))  # incompressible
    assert len(wire) > _USER_LIMIT + _USER_LIMIT // 8 + 4096  # the reader's own limit is passed
    _assert_names_user_limit(server, wire)


def test_too_big_uncompressed_frame_with_compression_negotiated_names_max_size() -> None:
    _, server = _deflate_pair()
    # RSV1 clear: this message is not compressed; its size is still checked exactly.
    _assert_names_user_limit(server, client_frame(Opcode.BINARY, b"x" * (_USER_LIMIT + 1)))


def test_message_of_exactly_max_size_passes_with_compression() -> None:
    client, server = _deflate_pair()
    events = server.receive_data(b"".join(client.send_binary(b"y" * _USER_LIMIT)))
    assert events == [BinaryMessage(b"y" * _USER_LIMIT)]


# -- an extension's or plugin's bug: logged here, a generic reason to the peer --------------------


class _BuggyExtension(Extension):
    name = "x-buggy"

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        raise KeyError("session token abc123")


def test_extension_bug_sends_a_generic_reason_and_logs_the_details(caplog: pytest.LogCaptureFixture) -> None:
    s = Protocol(Side.SERVER, extensions=[_BuggyExtension()])
    with caplog.at_level(logging.ERROR, logger="wskit.protocol"):
        exc = assert_failed(s, client_frame(Opcode.TEXT, b"hi"), 1011)
    # The application's exception names the extension and what it raised...
    assert "'x-buggy'" in str(exc) and "abc123" in str(exc)
    # ...the peer only learns that something went wrong here.
    assert parse_close_frame(exc.to_send, masked=False) == (1011, "internal error")
    assert s.close_reason == "internal error"
    (record,) = [r for r in caplog.records if "x-buggy" in r.getMessage()]
    assert "decode" in record.getMessage() and "1011" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], KeyError)


def test_protocol_error_raised_on_purpose_by_an_extension_keeps_its_reason() -> None:
    class Strict(Extension):
        name = "x-strict"

        def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
            raise ProtocolError("frames must say please", close_code=1008)

    exc = assert_failed(Protocol(Side.SERVER, extensions=[Strict()]), client_frame(Opcode.TEXT, b"hi"), 1008)
    assert parse_close_frame(exc.to_send, masked=False) == (1008, "frames must say please")

"""Tests for wskit.frames: serialization, close payloads and FrameReader's RFC 6455 §5 checks."""

from __future__ import annotations

import struct

import pytest

from wskit import Protocol, Side
from wskit.exceptions import PayloadTooBig, ProtocolError
from wskit.frames import (
    CloseCode,
    Frame,
    FrameReader,
    Opcode,
    check_close_code,
    encode_frame,
    fragment_limit,
    parse_close,
    serialize_close,
    serialize_frame,
)

from helpers import MASK_KEY, build_frame, mask_bytes

# Payload sizes on each side of the 7-bit / 16-bit / 64-bit length boundaries (RFC 6455 §5.2).
BOUNDARY_SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000]
INVALID_CLOSE_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]
VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]


def header_length_field(data: bytes) -> tuple[int, int]:
    """Return ``(7-bit length field, header length without mask)`` of a serialized frame."""
    field = data[1] & 0x7F
    return field, {126: 4, 127: 10}.get(field, 2)


def read_all(reader: FrameReader, data: bytes) -> tuple[list[Frame], ProtocolError | None]:
    reader.feed(data)
    return reader.read()


# -- enums and Frame ----------------------------------------------------------


def test_opcode_values_are_rfc6455_11_8() -> None:
    assert [int(o) for o in (Opcode.CONT, Opcode.TEXT, Opcode.BINARY, Opcode.CLOSE, Opcode.PING, Opcode.PONG)] == [
        0, 1, 2, 8, 9, 10,
    ]
    assert Opcode(1) is Opcode.TEXT


def test_close_code_values_are_rfc6455_7_4_1() -> None:
    assert int(CloseCode.NORMAL_CLOSURE) == 1000
    assert int(CloseCode.PROTOCOL_ERROR) == 1002
    assert int(CloseCode.NO_STATUS_RCVD) == 1005
    assert int(CloseCode.INVALID_DATA) == 1007
    assert int(CloseCode.MESSAGE_TOO_BIG) == 1009


def test_frame_fields_defaults_and_replace() -> None:
    frame = Frame(Opcode.TEXT, b"abc")
    assert (frame.opcode, frame.data, frame.fin, frame.rsv1, frame.rsv2, frame.rsv3) == (1, b"abc", True, False,
                                                                                          False, False)
    changed = frame._replace(data=b"[x] abc")
    assert changed.data == b"[x] abc" and changed.opcode == Opcode.TEXT
    assert frame.data == b"abc"  # immutable
    assert "TEXT" in repr(frame) and "3 bytes" in repr(frame)
    assert "0x3" in repr(Frame(3, b""))


# -- serialization --------------------------------------------------------------


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_rfc6455_5_2_server_frame_uses_minimal_length_encoding(size: int) -> None:
    payload = bytes(i & 0xFF for i in range(size))
    data = serialize_frame(Frame(Opcode.BINARY, payload), mask=False)
    field, hlen = header_length_field(data)
    if size < 126:
        assert field == size
    elif size < 65536:
        assert field == 126 and struct.unpack("!H", data[2:4])[0] == size
    else:
        assert field == 127 and struct.unpack("!Q", data[2:10])[0] == size
    assert data[0] == 0x82
    assert data[1] & 0x80 == 0, "RFC 6455 §5.1: a server MUST NOT mask"
    assert data[hlen:] == payload
    assert data == build_frame(Opcode.BINARY, payload)


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_rfc6455_5_3_client_frame_is_masked(size: int) -> None:
    payload = bytes((i * 7) & 0xFF for i in range(size))
    data = serialize_frame(Frame(Opcode.BINARY, payload), mask=True)
    field, hlen = header_length_field(data)
    assert data[1] & 0x80, "RFC 6455 §5.3: a client MUST mask every frame"
    assert field == (size if size < 126 else 126 if size < 65536 else 127)
    key = data[hlen:hlen + 4]
    assert data[hlen + 4:] == mask_bytes(payload, key)


def test_rfc6455_5_3_fresh_masking_key_per_frame() -> None:
    frames = {serialize_frame(Frame(Opcode.TEXT, b"same message"), mask=True) for _ in range(20)}
    assert len(frames) == 20, "two identical frames must not be masked with the same key"
    keys = {f[2:6] for f in frames}
    assert len(keys) == 20


def test_serialize_frame_writes_fin_and_rsv_bits() -> None:
    assert serialize_frame(Frame(Opcode.TEXT, b"", fin=False), False)[0] == 0x01
    assert serialize_frame(Frame(Opcode.CONT, b"", rsv1=True), False)[0] == 0xC0
    assert serialize_frame(Frame(Opcode.BINARY, b"", rsv2=True, rsv3=True), False)[0] == 0xB2
    assert serialize_frame(Frame(Opcode.PING, b"x"), False) == b"\x89\x01x"


def test_encode_frame_accepts_bytearray_and_memoryview() -> None:
    assert encode_frame(0x82, bytearray(b"ab"), False) == b"\x82\x02ab"
    assert encode_frame(0x82, memoryview(b"ab"), False) == b"\x82\x02ab"
    masked = encode_frame(0x82, memoryview(b"abcdef"), True)
    assert mask_bytes(masked[6:], masked[2:6]) == b"abcdef"


@pytest.mark.parametrize("size", [0, 1, 2, 124, 125, 126, 127, 65535, 65536])
def test_server_messages_are_minimal_unmasked_frames(size: int) -> None:
    # Small ones take a precomputed header: the same bytes as encode_frame, whatever the payload type.
    server = Protocol(Side.SERVER)
    text = "é" * (size // 2) + "a" * (size % 2)
    assert b"".join(server.send_text(text)) == encode_frame(0x81, text.encode(), False)
    if size < 126:
        assert len(server.send_text(text)) == 1
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    for data in (payload, bytearray(payload), memoryview(payload)):
        assert b"".join(server.send_binary(data)) == encode_frame(0x82, payload, False)
    wide = memoryview(bytes(4 * (size // 4))).cast("I")  # len() counts items: the frame must count bytes
    assert b"".join(server.send_binary(wide)) == encode_frame(0x82, bytes(4 * (size // 4)), False)


# -- close payloads -------------------------------------------------------------


@pytest.mark.parametrize("code", VALID_CLOSE_CODES)
def test_rfc6455_7_4_valid_close_codes_round_trip(code: int) -> None:
    check_close_code(code)
    payload = serialize_close(code, "bye ü")
    assert payload == struct.pack("!H", code) + "bye ü".encode()
    assert parse_close(payload) == (code, "bye ü")


@pytest.mark.parametrize("code", INVALID_CLOSE_CODES)
def test_rfc6455_7_4_invalid_close_code_rejected_on_receive_with_1002(code: int) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close(struct.pack("!H", code) + b"x")
    assert info.value.close_code == 1002
    assert str(code) in str(info.value)


@pytest.mark.parametrize("code", [c for c in INVALID_CLOSE_CODES if c != 1005])
def test_rfc6455_7_4_invalid_close_code_refused_on_send(code: int) -> None:
    with pytest.raises(ProtocolError, match=str(code)):
        check_close_code(code)
    with pytest.raises(ProtocolError):
        serialize_close(code, "")


def test_rfc6455_5_5_1_empty_close_payload_means_1005() -> None:
    assert parse_close(b"") == (1005, "")
    assert serialize_close(1005, "") == b""
    with pytest.raises(ProtocolError):
        serialize_close(1005, "reason")


def test_rfc6455_5_5_1_close_payload_of_one_byte_is_1002() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close(b"\x03")
    assert info.value.close_code == 1002


def test_rfc6455_5_5_1_close_reason_must_be_utf8_1007() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close(struct.pack("!H", 1000) + b"\xff\xfe")
    assert info.value.close_code == 1007


def test_rfc6455_5_5_close_reason_at_most_123_bytes() -> None:
    assert len(serialize_close(1000, "x" * 123)) == 125
    with pytest.raises(ProtocolError, match="124"):
        serialize_close(1000, "x" * 124)
    with pytest.raises(ProtocolError):
        serialize_close(1000, "é" * 62)  # 124 bytes in UTF-8


# -- FrameReader: parsing -------------------------------------------------------


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
@pytest.mark.parametrize("masked", [True, False])
def test_reader_parses_every_length_encoding(size: int, masked: bool) -> None:
    payload = bytes((i * 13) & 0xFF for i in range(size))
    reader = FrameReader(masked, None, stream=False)
    frames, error = read_all(reader, build_frame(Opcode.BINARY, payload, mask=MASK_KEY if masked else None))
    assert error is None
    assert frames == [Frame(Opcode.BINARY, payload)]
    assert reader.buffered() == 0


def test_reader_waits_for_incomplete_header_and_payload() -> None:
    data = build_frame(Opcode.TEXT, b"x" * 300, mask=MASK_KEY)
    reader = FrameReader(True, None, stream=False)
    for i in range(len(data) - 1):
        reader.feed(data[i:i + 1])
        frames, error = reader.read()
        assert frames == [] and error is None
    frames, error = read_all(reader, data[-1:])
    assert frames == [Frame(Opcode.TEXT, b"x" * 300)] and error is None


def test_reader_stream_mode_delivers_partial_text_frames_in_pieces() -> None:
    payload = bytes(range(32, 127)) * 2
    data = build_frame(Opcode.TEXT, payload, mask=MASK_KEY)
    reader = FrameReader(True, None, stream=True)
    pieces: list[Frame] = []
    for i in range(0, len(data), 7):  # 7 is not a multiple of 4: exercises the key rotation
        frames, error = read_all(reader, data[i:i + 7])
        assert error is None
        pieces.extend(frames)
    assert len(pieces) > 2
    assert pieces[0].opcode == Opcode.TEXT and not pieces[0].fin
    assert all(p.opcode == Opcode.CONT for p in pieces[1:])
    assert [p.fin for p in pieces[1:]] == [False] * (len(pieces) - 2) + [True]
    assert b"".join(p.data for p in pieces) == payload


def test_reader_stream_mode_waits_for_whole_binary_frames() -> None:
    # Only text is streamed (for early UTF-8 checks); binary frames are
    # delivered whole, which is cheaper per chunk.
    payload = bytes(range(200))
    data = build_frame(Opcode.BINARY, payload, mask=MASK_KEY)
    reader = FrameReader(True, None, stream=True)
    pieces: list[Frame] = []
    for i in range(0, len(data), 7):
        frames, error = read_all(reader, data[i:i + 7])
        assert error is None
        pieces.extend(frames)
    assert pieces == [Frame(Opcode.BINARY, payload)]


def test_reader_stream_mode_keeps_fin_false_of_a_first_fragment() -> None:
    data = build_frame(Opcode.TEXT, b"abcdefgh", fin=False, mask=MASK_KEY)
    data += build_frame(Opcode.CONT, b"ij", mask=MASK_KEY)
    reader = FrameReader(True, None, stream=True)
    pieces: list[Frame] = []
    for i in range(0, len(data), 5):
        frames, error = read_all(reader, data[i:i + 5])
        assert error is None
        pieces.extend(frames)
    assert b"".join(p.data for p in pieces) == b"abcdefghij"
    assert [p.fin for p in pieces].count(True) == 1 and pieces[-1].fin


def test_reader_returns_frames_before_a_violation() -> None:
    data = build_frame(Opcode.TEXT, b"ok", mask=MASK_KEY) + build_frame(3, b"", mask=MASK_KEY)
    frames, error = read_all(FrameReader(True, None), data)
    assert frames == [Frame(Opcode.TEXT, b"ok")]
    assert error is not None and error.close_code == 1002


# -- FrameReader: RFC 6455 §5 receiver rules --------------------------------------


def assert_reader_rejects(data: bytes, *, masked: bool = True, code: int = 1002, max_size: int | None = None,
                          match: str | None = None) -> ProtocolError:
    frames, error = read_all(FrameReader(masked, max_size), data)
    assert frames == []
    assert error is not None, "the violation was not detected"
    assert error.close_code == code
    if match is not None:
        assert match in str(error)
    return error


def test_rfc6455_5_1_server_reader_rejects_unmasked_frame() -> None:
    assert_reader_rejects(build_frame(Opcode.TEXT, b"hi"), masked=True, match="unmasked")


def test_rfc6455_5_1_client_reader_rejects_masked_frame() -> None:
    assert_reader_rejects(build_frame(Opcode.TEXT, b"hi", mask=MASK_KEY), masked=False, match="masked")


@pytest.mark.parametrize("bits", [{"rsv1": True}, {"rsv2": True}, {"rsv3": True}])
def test_rfc6455_5_2_reader_rejects_rsv_bits_without_extension(bits: dict[str, bool]) -> None:
    assert_reader_rejects(build_frame(Opcode.TEXT, b"hi", mask=MASK_KEY, **bits), match="RSV")


def test_rfc6455_5_2_reader_accepts_rsv_bits_an_extension_defines() -> None:
    reader = FrameReader(True, None, rsv_mask=0x40)
    frames, error = read_all(reader, build_frame(Opcode.TEXT, b"hi", rsv1=True, mask=MASK_KEY))
    assert error is None and frames[0].rsv1
    frames, error = read_all(reader, build_frame(Opcode.TEXT, b"hi", rsv2=True, mask=MASK_KEY))
    assert error is not None and error.close_code == 1002


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_rfc6455_5_2_reader_rejects_reserved_opcode(opcode: int) -> None:
    assert_reader_rejects(build_frame(opcode, b"", mask=MASK_KEY), match=f"0x{opcode:x}")


def test_rfc6455_5_2_reader_rejects_64bit_length_with_msb_set() -> None:
    data = build_frame(Opcode.BINARY, b"", length=1 << 63, mask=MASK_KEY)
    assert_reader_rejects(data, match="most significant bit")


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_rfc6455_5_5_reader_rejects_control_frame_over_125_bytes(opcode: int) -> None:
    assert_reader_rejects(build_frame(opcode, b"x" * 126, mask=MASK_KEY), match="126")


def test_rfc6455_5_5_reader_rejects_control_frame_length_from_header_alone() -> None:
    # The declared length is enough: the payload never arrives.
    assert_reader_rejects(build_frame(Opcode.PING, b"", length=126, mask=MASK_KEY)[:8])


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_rfc6455_5_5_reader_rejects_fragmented_control_frame(opcode: int) -> None:
    assert_reader_rejects(build_frame(opcode, b"x", fin=False, mask=MASK_KEY), match="fragmented")


def test_rfc6455_5_4_reader_rejects_continuation_without_message() -> None:
    assert_reader_rejects(build_frame(Opcode.CONT, b"x", mask=MASK_KEY), match="continuation")


@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_rfc6455_5_4_reader_rejects_new_message_inside_fragmented_message(opcode: int) -> None:
    first = build_frame(Opcode.TEXT, b"a", fin=False, mask=MASK_KEY)
    reader = FrameReader(True, None)
    frames, error = read_all(reader, first + build_frame(opcode, b"b", mask=MASK_KEY))
    assert frames == [Frame(Opcode.TEXT, b"a", fin=False)]
    assert error is not None and error.close_code == 1002


def test_reader_max_size_checked_from_header_before_payload() -> None:
    header = build_frame(Opcode.BINARY, b"", length=1000, mask=MASK_KEY)  # header only, no payload
    error = assert_reader_rejects(header, code=1009, max_size=999)
    assert isinstance(error, PayloadTooBig)


def test_reader_max_size_on_sum_of_fragments() -> None:
    reader = FrameReader(True, 10)
    frames, error = read_all(reader, build_frame(Opcode.BINARY, b"x" * 6, fin=False, mask=MASK_KEY))
    assert error is None and len(frames) == 1
    frames, error = read_all(reader, build_frame(Opcode.CONT, b"x" * 5, length=5, mask=MASK_KEY)[:6])
    assert isinstance(error, PayloadTooBig) and error.close_code == 1009


def test_reader_max_size_allows_exact_limit_and_control_frames() -> None:
    reader = FrameReader(True, 10)
    frames, error = read_all(reader, build_frame(Opcode.BINARY, b"x" * 10, mask=MASK_KEY)
                             + build_frame(Opcode.PING, b"p" * 50, mask=MASK_KEY))
    assert error is None and [f.opcode for f in frames] == [Opcode.BINARY, Opcode.PING]


# -- the limit on frames per message ----------------------------------------------------


def test_fragment_limit_is_one_frame_per_16_bytes_of_max_size_and_at_least_1024() -> None:
    assert fragment_limit(2**20) == 65536
    assert fragment_limit(4 * 2**20) == 262144  # Autobahn 9.3/9.4: 65,536 fragments of a 4 MiB message fit
    assert fragment_limit(1000) == 1024
    assert fragment_limit(0) == 1024
    assert fragment_limit(None) is None
    assert FrameReader(True, 2**20).max_frames == 65536
    assert FrameReader(True, None).max_frames is None
    assert FrameReader(True, 2**20, max_frames=3).max_frames == 3


def _fragments(count: int, payload: bytes = b"", opcode: int = Opcode.BINARY) -> bytes:
    """A message in ``count`` frames: the first, then continuations, the last with FIN."""
    frames = [build_frame(opcode, payload, fin=count == 1, mask=MASK_KEY)]
    frames += [build_frame(Opcode.CONT, payload, fin=i == count - 1, mask=MASK_KEY) for i in range(1, count)]
    return b"".join(frames)


@pytest.mark.parametrize("stream", [True, False])
def test_reader_accepts_a_message_in_exactly_max_frames_frames_twice(stream: bool) -> None:
    reader = FrameReader(True, 2**20, stream=stream, max_frames=5)
    frames, error = read_all(reader, _fragments(5) + _fragments(5, b"x", Opcode.TEXT))
    assert error is None
    assert len(frames) == 10 and frames[4].fin and frames[9].fin
    assert reader.in_message == 0


def test_reader_ends_a_message_of_too_many_frames_with_1009() -> None:
    reader = FrameReader(True, 2**20, max_frames=5)
    frames, error = read_all(reader, _fragments(6))
    assert len(frames) == 5  # the frames before the one over the limit are kept
    assert isinstance(error, PayloadTooBig) and error.close_code == 1009
    assert "more than 5 frames" in str(error)


def test_reader_counts_a_streamed_text_frame_once_whatever_its_pieces() -> None:
    # A text frame delivered in pieces as its bytes arrive is one frame of the message.
    reader = FrameReader(True, 2**20, stream=True, max_frames=2)
    data = build_frame(Opcode.TEXT, b"abcdef", fin=False, mask=MASK_KEY) + build_frame(Opcode.CONT, b"ghij",
                                                                                        mask=MASK_KEY)
    pieces = []
    for byte in data:
        frames, error = read_all(reader, bytes([byte]))
        assert error is None
        pieces += frames
    assert b"".join(p.data for p in pieces) == b"abcdefghij" and pieces[-1].fin


def test_reader_without_max_size_has_no_frame_limit() -> None:
    frames, error = read_all(FrameReader(True, None), _fragments(3000))
    assert error is None and len(frames) == 3000


def test_reader_take_buffer_returns_unparsed_bytes() -> None:
    reader = FrameReader(True, None, stream=False)
    frames, error = read_all(reader, build_frame(Opcode.TEXT, b"ab", mask=MASK_KEY) + b"\x81")
    assert len(frames) == 1 and error is None
    assert reader.buffered() == 1
    assert reader.take_buffer() == b"\x81"
    assert reader.buffered() == 0


def test_fail_fast_utf8_survives_a_control_frame_in_pieces() -> None:
    # A Ping arriving in two reads inside a fragmented text message must not
    # stop the rest of that message from being checked as it arrives.
    reader = FrameReader(True, None, stream=True)
    frames, error = read_all(reader, build_frame(Opcode.TEXT, b"ab", fin=False, mask=MASK_KEY))
    ping = build_frame(Opcode.PING, b"xyz", mask=MASK_KEY)
    read_all(reader, ping[:3])
    frames, error = read_all(reader, ping[3:])
    assert error is None and [f.opcode for f in frames] == [Opcode.PING]
    cont = build_frame(Opcode.CONT, b"\xff" + b"a" * 1000, mask=MASK_KEY)
    frames, _error = read_all(reader, cont[:20])
    assert frames and frames[0].opcode is Opcode.CONT and not frames[0].fin  # streamed at once


def test_encode_frame_takes_any_bytes_like_payload() -> None:
    from array import array

    from wskit.frames import encode_frame

    view = memoryview(array("H", [1, 2, 3]))
    assert encode_frame(0x82, view, False) == b"\x82\x06" + view.tobytes()
    assert encode_frame(0x82, bytearray(b"ab"), False) == b"\x82\x02ab"

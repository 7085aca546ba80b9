"""Property-based tests (hypothesis) of the frame codec and the Protocol's receive path.

- any chunking of a valid byte stream gives the same events as one chunk;
- serialize_frame -> FrameReader round-trips every opcode and size class;
- arbitrary bytes never raise anything but ProtocolError;
- the C masking accelerator and the pure-Python fallback give identical events.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wskit._protocol
import wskit.frames
import wskit.mask
from wskit import BinaryMessage, Close, Ping, Pong, Protocol, Side, TextMessage
from wskit.events import Event
from wskit.exceptions import ProtocolError
from wskit.frames import Frame, FrameReader, Opcode, serialize_frame
from wskit.mask import py_apply_mask

from helpers import build_frame, close_payload

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]


@dataclass(frozen=True)
class Item:
    """One thing on the wire: a (possibly fragmented) message or a control frame."""

    kind: str  # "text", "binary", "ping", "pong"
    payload: bytes
    cuts: tuple[int, ...] = ()  # fragment boundaries inside the payload (data only)
    control_inside: bytes | None = None  # a Ping interleaved after the first fragment


def payload_for(kind: str) -> st.SearchStrategy[bytes]:
    if kind == "text":
        return st.text(max_size=60).map(lambda s: s.encode("utf-8"))
    if kind == "binary":
        return st.one_of(st.binary(max_size=60),
                         st.tuples(st.sampled_from([125, 126, 65535, 65536]), st.integers(0, 255)).map(
                             lambda t: random.Random(t[1]).randbytes(t[0])))
    return st.binary(max_size=125)


@st.composite
def items(draw: st.DrawFn) -> Item:
    kind = draw(st.sampled_from(["text", "binary", "ping", "pong"]))
    payload = draw(payload_for(kind))
    if kind in ("ping", "pong"):
        return Item(kind, payload)
    cuts = tuple(sorted(set(draw(st.lists(st.integers(0, len(payload)), max_size=4)))))
    control = draw(st.one_of(st.none(), st.binary(max_size=10))) if cuts else None
    return Item(kind, payload, cuts, control)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Item], int, str]:
    return (draw(st.lists(items(), max_size=8)), draw(st.sampled_from(VALID_CODES)),
            draw(st.text(max_size=20).filter(lambda r: len(r.encode()) <= 123)))


def encode_stream(stream: tuple[list[Item], int, str], *, to_server: bool) -> tuple[bytes, list[Event]]:
    """Wire bytes for a stream (as the peer writes them) and the events a receiver must produce."""
    its, code, reason = stream
    rng = random.Random(len(its))

    def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
        key = rng.randbytes(4) if to_server else None
        return build_frame(opcode, payload, fin=fin, mask=key)

    out = bytearray()
    events: list[Event] = []
    for item in its:
        if item.kind == "ping":
            out += frame(Opcode.PING, item.payload)
            events.append(Ping(item.payload))
            continue
        if item.kind == "pong":
            out += frame(Opcode.PONG, item.payload)
            events.append(Pong(item.payload))
            continue
        opcode = Opcode.TEXT if item.kind == "text" else Opcode.BINARY
        bounds = [0, *item.cuts, len(item.payload)]
        pieces = [item.payload[a:b] for a, b in itertools.pairwise(bounds)]
        for i, piece in enumerate(pieces):
            out += frame(opcode if i == 0 else Opcode.CONT, piece, fin=i == len(pieces) - 1)
            if i == 0 and item.control_inside is not None and len(pieces) > 1:
                out += frame(Opcode.PING, item.control_inside)
                events.append(Ping(item.control_inside))
        events.append(TextMessage(item.payload.decode()) if item.kind == "text" else BinaryMessage(item.payload))
    out += frame(Opcode.CLOSE, close_payload(code, reason.encode()))
    events.append(Close(code, reason))
    return bytes(out), events


def feed(receiver: Protocol, data: bytes, sizes: list[int]) -> list[Event]:
    events: list[Event] = []
    pos = 0
    i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)] if sizes else len(data)
        events.extend(receiver.receive_data(data[pos:pos + size]))
        pos += size
        i += 1
    return events


# -- chunking ------------------------------------------------------------------------------------


@FAST
@given(stream=streams(), sizes=st.lists(st.integers(1, 300), min_size=1, max_size=10), to_server=st.booleans())
def test_any_chunking_gives_same_events_as_one_chunk(stream: tuple[list[Item], int, str], sizes: list[int],
                                                     to_server: bool) -> None:
    data, expected = encode_stream(stream, to_server=to_server)
    side = Side.SERVER if to_server else Side.CLIENT
    assert Protocol(side, max_size=None).receive_data(data) == expected
    assert feed(Protocol(side, max_size=None), data, sizes) == expected


@settings(max_examples=25, deadline=None)
@given(stream=streams().filter(lambda s: sum(len(i.payload) for i in s[0]) < 2000), to_server=st.booleans())
def test_byte_by_byte_gives_same_events(stream: tuple[list[Item], int, str], to_server: bool) -> None:
    data, expected = encode_stream(stream, to_server=to_server)
    side = Side.SERVER if to_server else Side.CLIENT
    assert feed(Protocol(side, max_size=None), data, [1]) == expected


# -- serialize -> parse ------------------------------------------------------------------------------


SIZE_CLASSES = st.one_of(st.integers(0, 125), st.integers(126, 65535), st.integers(65536, 70000))


@FAST
@given(opcode=st.sampled_from(list(Opcode)), size=SIZE_CLASSES, seed=st.integers(0, 2**16),
       fin=st.booleans(), rsv=st.tuples(st.booleans(), st.booleans(), st.booleans()), mask=st.booleans())
def test_serialize_then_parse_round_trip(opcode: Opcode, size: int, seed: int, fin: bool,
                                         rsv: tuple[bool, bool, bool], mask: bool) -> None:
    if opcode >= 8:  # RFC 6455 §5.5: control frames are short and never fragmented
        size %= 126
        fin = True
    frame = Frame(opcode, random.Random(seed).randbytes(size), fin, *rsv)
    reader = FrameReader(mask, None, 0x70, stream=False)
    if opcode == Opcode.CONT:
        reader.feed(serialize_frame(Frame(Opcode.BINARY, b"", fin=False), mask))
    data = serialize_frame(frame, mask)
    assert bool(data[1] & 0x80) == mask
    reader.feed(data)
    frames, error = reader.read()
    assert error is None
    assert frames[-1] == frame
    assert reader.buffered() == 0


@FAST
@given(opcode=st.sampled_from([Opcode.TEXT, Opcode.BINARY]), size=SIZE_CLASSES, chunk=st.integers(1, 5000),
       mask=st.booleans())
def test_stream_mode_pieces_reassemble_to_the_frame(opcode: Opcode, size: int, chunk: int, mask: bool) -> None:
    payload = random.Random(size).randbytes(size)
    data = serialize_frame(Frame(opcode, payload), mask)
    reader = FrameReader(mask, None, stream=True)
    pieces: list[Frame] = []
    for i in range(0, len(data), chunk):
        reader.feed(data[i:i + chunk])
        frames, error = reader.read()
        assert error is None
        pieces.extend(frames)
    assert pieces[0].opcode == opcode
    assert b"".join(p.data for p in pieces) == payload
    assert pieces[-1].fin and not any(p.fin for p in pieces[:-1])


# -- robustness ------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), side=st.sampled_from(list(Side)), max_size=st.sampled_from([None, 0, 10, 2**20]))
def test_random_bytes_raise_only_protocol_error(data: bytes, side: Side, max_size: int | None) -> None:
    p = Protocol(side, max_size=max_size)
    try:
        p.receive_data(data)
    except ProtocolError as exc:
        assert exc.close_code is not None
        assert p.receive_data(b"\x81\x00") == []
    p.receive_eof()


@FAST
@given(stream=streams(), junk=st.binary(min_size=1, max_size=100),
       cut=st.one_of(st.just(-1), st.integers(0, 10_000)),
       sizes=st.lists(st.integers(1, 64), min_size=1, max_size=5), to_server=st.booleans())
def test_random_bytes_after_valid_prefix_raise_only_protocol_error(
        stream: tuple[list[Item], int, str], junk: bytes, cut: int, sizes: list[int], to_server: bool) -> None:
    valid, _ = encode_stream(stream, to_server=to_server)
    cut = len(valid) if cut < 0 else cut % (len(valid) + 1)  # -1: the whole stream, Close included
    p = Protocol(Side.SERVER if to_server else Side.CLIENT, max_size=None)
    try:
        feed(p, valid[:cut] + junk, sizes)
    except ProtocolError as exc:
        # RFC 6455 §5.5.1: once the peer's Close is read, what follows is ignored, never a violation.
        assert cut < len(valid), f"junk after the peer's Close failed the connection: {exc}"
        assert exc.close_code in (1002, 1007, 1009)
        assert exc.to_send


# -- C accelerator vs pure Python --------------------------------------------------------------------------


@FAST
@given(sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=6), chunk=st.integers(1, 997),
       seed=st.integers(0, 1000))
def test_c_and_python_masking_give_identical_events(sizes: list[int], chunk: int, seed: int) -> None:
    rng = random.Random(seed)
    client = Protocol(Side.CLIENT)
    payloads = [rng.randbytes(n) for n in sizes]
    data = b"".join(b for p in payloads for b in client.send_binary(p))
    expected = [BinaryMessage(p) for p in payloads]
    with_c = feed(Protocol(Side.SERVER), data, [chunk])
    calls = []

    def python_mask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
        calls.append(len(data))
        return py_apply_mask(data, key)

    # Without the accelerator's parser of whole frames, so that frames.py's masking runs.
    with mock.patch.object(wskit.frames, "apply_mask", python_mask), \
            mock.patch.object(wskit._protocol, "read_messages", None):
        with_python = feed(Protocol(Side.SERVER), data, [chunk])
        python_sent = Protocol(Side.CLIENT).send_binary(payloads[0])
    assert calls, "the pure-Python mask was not used: wskit.frames no longer reads its module-level apply_mask"
    assert with_c == with_python == expected
    assert feed(Protocol(Side.SERVER), b"".join(python_sent), [chunk]) == expected[:1]


ROUND_TRIP_SCRIPT = textwrap.dedent(
    """
    import hashlib, random
    import wskit.frames, wskit.mask
    from wskit import Protocol, Side
    rng = random.Random(1234)
    client, server = Protocol(Side.CLIENT, max_size=None), Protocol(Side.SERVER, max_size=None)
    data = b""
    for n in (0, 1, 3, 125, 126, 1000, 65535, 65536, 100003):
        data += b"".join(client.send_binary(rng.randbytes(n)) + client.send_text("é" * (n // 2)))
    events = []
    for i in range(0, len(data), 1021):
        events.extend(server.receive_data(data[i:i + 1021]))
    print(wskit.mask.USING_SPEEDUPS, wskit.frames.apply_mask is wskit.mask.py_apply_mask)
    print(len(events), hashlib.sha256(repr(events).encode()).hexdigest())
    """
)


def run_round_trip(no_speedups: bool) -> list[str]:
    env = dict(os.environ)
    env.pop("WSKIT_NO_SPEEDUPS", None)
    if no_speedups:
        env["WSKIT_NO_SPEEDUPS"] = "1"
    result = subprocess.run([sys.executable, "-c", ROUND_TRIP_SCRIPT], env=env, capture_output=True, text=True,
                            timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\n")


def test_no_speedups_environment_switch_gives_identical_events() -> None:
    fallback = run_round_trip(no_speedups=True)
    assert fallback[0] == "False True", "WSKIT_NO_SPEEDUPS=1 must select the pure-Python apply_mask"
    default = run_round_trip(no_speedups=False)
    if wskit.mask.USING_SPEEDUPS:
        assert default[0] == "True False"
    assert fallback[1] == default[1]
    assert fallback[1].startswith("18 ")

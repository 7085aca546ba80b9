"""The C accelerator's parser of simple frames (``read_messages``) against the pure-Python parser.

``wskit._speedups.read_messages`` parses runs of complete, unfragmented text
and binary frames and stops at anything else; ``FrameReader.read`` takes over
there. Whatever the bytes and however they are cut, a protocol using it must
give exactly what the pure-Python path gives: the same events, the same
failure (exception, close code, message, Close frame to send) and the same
state afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import ssl
import struct
import subprocess
import sys
import textwrap
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wskit._protocol
import wskit.mask
from wskit import BinaryMessage, Protocol, Side, TextMessage
from wskit.events import Event
from wskit.exceptions import ProtocolError
from wskit.frames import SPLIT_SIZE, encode_frame, encode_message

needs_c = pytest.mark.skipif(wskit.mask.read_messages is None,
                             reason="the C accelerator is not built, or WSKIT_NO_SPEEDUPS turns it off")
NO_SPEEDUPS = bool(os.environ.get("WSKIT_NO_SPEEDUPS"))

CASES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TEXTS = st.one_of(
    st.text(max_size=40).map(lambda t: t.encode("utf-8")),
    st.binary(max_size=40),  # mostly invalid UTF-8
    st.sampled_from([b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", "é€😀".encode() * 30]),
    st.integers(120, 700).map(lambda n: ("é" * n).encode("utf-8")),  # beyond the C parser's stack buffer
)


@st.composite
def raw_frames(draw: st.DrawFn, masked: bool) -> bytes:
    """One frame, valid or not: any opcode, FIN, RSV bits, masking, length encoding."""
    opcode = draw(st.sampled_from([1, 1, 1, 2, 2, 2, 0, 0, 8, 9, 10, 3, 11]))
    payload = draw(TEXTS) if opcode in (0, 1, 8) else draw(st.binary(max_size=300))
    if opcode == 8 and payload:
        payload = struct.pack("!H", draw(st.sampled_from([1000, 1001, 999, 4000]))) + payload[:100]
    fin = draw(st.sampled_from([True, True, True, False]))
    rsv = draw(st.sampled_from([0, 0, 0, 0, 0x40, 0x20, 0x10]))
    b0 = (0x80 if fin else 0) | rsv | opcode
    mask = masked if draw(st.integers(0, 19)) else not masked  # now and then the wrong masking
    length = len(payload)
    encoding = draw(st.sampled_from(["min", "min", "min", "16", "64", "64-msb"]))
    mbit = 0x80 if mask else 0
    if encoding == "min" or (encoding == "16" and length > 65535):
        if length < 126:
            header = bytes([b0, mbit | length])
        elif length < 65536:
            header = struct.pack("!BBH", b0, mbit | 126, length)
        else:
            header = struct.pack("!BBQ", b0, mbit | 127, length)
    elif encoding == "16":
        header = struct.pack("!BBH", b0, mbit | 126, length)  # not minimal: allowed
    elif encoding == "64":
        header = struct.pack("!BBQ", b0, mbit | 127, length)
    else:
        header = struct.pack("!BBQ", b0, mbit | 127, length | 1 << 63)  # RFC 6455 §5.2: MSB must be 0
    if mask:
        key = draw(st.binary(min_size=4, max_size=4))
        return header + key + wskit.mask.py_apply_mask(payload, key)
    return header + payload


@st.composite
def wire(draw: st.DrawFn) -> tuple[Side, bytes]:
    side = draw(st.sampled_from([Side.SERVER, Side.CLIENT]))
    frames = draw(st.lists(raw_frames(side is Side.SERVER), min_size=1, max_size=8))
    return side, b"".join(frames)


def run(side: Side, data: bytes, cuts: list[int], max_size: int | None, fast: bool) -> list[object]:
    """Feed ``data`` in pieces; return what an application could observe, in order."""
    with mock.patch.object(wskit._protocol, "read_messages", wskit.mask.read_messages if fast else None):
        p = Protocol(side, max_size=max_size)
    assert (p._fast is not None) is fast
    seen: list[object] = []
    pos = 0
    pieces = []
    for cut in cuts:
        pieces.append(data[pos:pos + cut])
        pos += cut
    pieces.append(data[pos:])
    for i, piece in enumerate(pieces):
        # bytes and views of a reused read buffer (parsed in place when nothing is
        # buffered), bytearray (always copied)
        chunk: bytes | bytearray | memoryview = bytearray(piece) if i % 3 == 2 else piece
        if i % 3 == 1:
            scratch = bytearray(piece)
            chunk = memoryview(scratch)
        try:
            events = p.receive_data(chunk)
            if i % 3 == 1:
                chunk.release()  # type: ignore[union-attr]
                scratch[:] = b"\xee" * len(scratch)  # the read buffer is reused: nothing may refer to it
            seen.append(events)
        except ProtocolError as exc:
            seen.append(("failed", type(exc).__name__, exc.close_code, str(exc), exc.events,
                         [unmasked(frame) for frame in exc.to_send]))
            break
    seen.append((p.state, p.close_code, p.close_reason, p._reader.buffered(), p._reader.in_message))
    return seen


def unmasked(frame: bytes) -> tuple[int, bytes]:
    """A Close frame (under 126 bytes) as (first byte, payload): a client's masking key is random."""
    if frame[1] & 0x80:
        return frame[0], wskit.mask.py_apply_mask(frame[6:], frame[2:6])
    return frame[0], frame[2:]


@needs_c
@CASES
@given(case=wire(), cuts=st.lists(st.integers(0, 400), max_size=6),
       max_size=st.sampled_from([None, 2**20, 64, 0]))
def test_c_parser_and_python_parser_agree(case: tuple[Side, bytes], cuts: list[int], max_size: int | None) -> None:
    side, data = case
    assert run(side, data, cuts, max_size, fast=True) == run(side, data, cuts, max_size, fast=False)


@needs_c
@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.sampled_from([0, 1, 125, 126, 65535, 65536, 70001]), min_size=1, max_size=4),
       text=st.booleans(), chunk=st.sampled_from([1460, 65536, 10**7]), side=st.sampled_from(list(Side)))
def test_large_frames_agree(sizes: list[int], text: bool, chunk: int, side: Side) -> None:
    # Large frames: 16- and 64-bit lengths, unmasking with the GIL released, text beyond the stack buffer.
    sender = Protocol(Side.CLIENT if side is Side.SERVER else Side.SERVER)
    data = b"".join(b for n in sizes
                    for b in (sender.send_text("é" * (n // 2)) if text else sender.send_binary(os.urandom(n))))
    cuts = [chunk] * (len(data) // chunk)
    fast = run(side, data, cuts, None, fast=True)
    assert fast == run(side, data, cuts, None, fast=False)
    assert sum(len(events) for events in fast[:-1]) == len(sizes)  # type: ignore[arg-type,misc]


@needs_c
def test_fast_path_results() -> None:
    client = Protocol(Side.CLIENT)
    data = b"".join(client.send_text("héllo") + client.send_binary(b"\x00\xff") + client.send_ping(b"p")
                    + client.send_text("after"))
    server = Protocol(Side.SERVER)
    assert server._fast is not None
    events: list[Event] = server.receive_data(data)
    assert [type(e).__name__ for e in events] == ["TextMessage", "BinaryMessage", "Ping", "TextMessage"]
    assert events[0] == TextMessage("héllo") and events[1] == BinaryMessage(b"\x00\xff")


@needs_c
def test_invalid_utf8_is_left_to_the_python_parser() -> None:
    client = Protocol(Side.CLIENT)
    good = client.send_text("ok")[0]
    bad = encode_frame(0x81, b"\xff\xfe", True)
    server = Protocol(Side.SERVER)
    with pytest.raises(ProtocolError) as info:
        server.receive_data(good + bad)
    assert info.value.close_code == 1007
    assert info.value.events == [TextMessage("ok")]


@needs_c
def test_read_messages_arguments() -> None:
    read = wskit.mask.read_messages
    assert read is not None
    frame = encode_frame(0x82, b"abc", False)
    assert read(frame, 0, False, -1, TextMessage, BinaryMessage) == ([BinaryMessage(b"abc")], 5)
    assert read(bytearray(frame), 5, False, -1, TextMessage, BinaryMessage) == ([], 5)
    assert read(frame, 0, False, 2, TextMessage, BinaryMessage) == ([], 0)  # over max_size: left alone
    with pytest.raises(ValueError, match="outside the buffer"):
        read(frame, 6, False, -1, TextMessage, BinaryMessage)
    with pytest.raises(ValueError, match="outside the buffer"):
        read(frame, -1, False, -1, TextMessage, BinaryMessage)
    with pytest.raises(TypeError):
        read("not bytes", 0, False, -1, TextMessage, BinaryMessage)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="6 positional arguments"):
        read(frame, 0, False, -1, TextMessage)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        read(frame, "0", False, -1, TextMessage, BinaryMessage)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        read(frame, 0, False, None, TextMessage, BinaryMessage)  # type: ignore[arg-type]
    # A limit beyond what a buffer can hold is no limit; a negative one other than -1 is refused.
    assert read(frame, 0, False, 2**80, TextMessage, BinaryMessage) == ([BinaryMessage(b"abc")], 5)
    for bad in (-2, -2**80):
        with pytest.raises(ValueError, match="max_size"):
            read(frame, 0, False, bad, TextMessage, BinaryMessage)
    with pytest.raises(TypeError):
        read(frame, 0, False, 2.0**80, TextMessage, BinaryMessage)  # type: ignore[arg-type]
    huge = Protocol(Side.SERVER, max_size=2**80)
    assert huge.receive_data(encode_frame(0x81, b"hi", True)) == [TextMessage("hi")]

    def broken(data: object) -> object:
        raise RuntimeError("from the event class")

    with pytest.raises(RuntimeError, match="from the event class"):
        read(frame, 0, False, -1, TextMessage, broken)


@needs_c
def test_event_classes_are_filled_in_not_called() -> None:
    """Event classes (a ``data`` slot) are made without a call; any other callable is called."""
    read = wskit.mask.read_messages
    assert read is not None
    frames = encode_frame(0x81, "héllo".encode(), True) + encode_frame(0x82, b"\x00\xff", True)
    calls: list[object] = []

    @dataclasses.dataclass(frozen=True, slots=True)
    class Other:
        data: object

        def __post_init__(self) -> None:  # skipped for a slot class: read_messages documents it
            calls.append(self)

    class Called:
        def __init__(self, data: object) -> None:
            calls.append(data)
            self.data = data  # an instance attribute, not a slot: the class is called

    events, pos = read(frames, 0, True, -1, TextMessage, BinaryMessage)
    assert pos == len(frames) and events == [TextMessage("héllo"), BinaryMessage(b"\x00\xff")]
    assert [type(e) for e in events] == [TextMessage, BinaryMessage]
    assert hash(events[0]) == hash(TextMessage("héllo")) and repr(events[1]) == "BinaryMessage(data=b'\\x00\\xff')"
    with pytest.raises(dataclasses.FrozenInstanceError):
        events[0].data = "changed"  # type: ignore[misc]
    # The class remembered for each role changes with the classes passed, and back.
    for text_class, binary_class in [(Other, Called), (Called, Other), (TextMessage, BinaryMessage), (str, bytes)]:
        calls.clear()
        made, _ = read(frames, 0, True, -1, text_class, binary_class)
        assert [type(e) for e in made] == [text_class, binary_class]
        assert [getattr(e, "data", e) for e in made] == ["héllo", b"\x00\xff"]
        assert calls == [getattr(e, "data", e) for e in made if type(e) is Called]
    assert read(frames, 0, True, -1, TextMessage, BinaryMessage)[0] == events


def test_large_unmasked_payloads_are_not_copied() -> None:
    big = os.urandom(SPLIT_SIZE)
    server = Protocol(Side.SERVER)
    out = server.send_binary(big)
    assert len(out) == 2 and out[1] is big and b"".join(out) == encode_frame(0x82, big, False)
    assert server.send_text("x" * SPLIT_SIZE)[1] == b"x" * SPLIT_SIZE
    # Mutable payloads are copied; small ones and masked ones come in one piece.
    assert len(server.send_binary(bytearray(big))) == 1
    assert len(server.send_binary(big[:-1])) == 1
    assert len(Protocol(Side.CLIENT).send_binary(big)) == 1
    wide = memoryview(bytes(8)).cast("I")
    assert encode_message(0x82, wide, False) == [encode_frame(0x82, bytes(8), False)]
    client = Protocol(Side.CLIENT, max_size=None)
    assert client.receive_data(b"".join(out)) == [BinaryMessage(big)]


def test_pure_python_fallback_without_the_accelerator() -> None:
    # With wskit._speedups blocked, the pure-Python parser does everything.
    script = textwrap.dedent("""
        import sys
        sys.modules["wskit._speedups"] = None
        import wskit.mask
        from wskit import Protocol, Side, TextMessage
        assert wskit.mask.read_messages is None and not wskit.mask.USING_SPEEDUPS
        client, server = Protocol(Side.CLIENT), Protocol(Side.SERVER)
        assert server._fast is None
        data = b"".join(client.send_text("a") + client.send_text("b"))
        assert server.receive_data(data) == [TextMessage("a"), TextMessage("b")]
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "ok"


# -- aiofastnet's compiled transports, picked up when installed ----------------------------------------------


def test_server_runs_on_aiofastnet_transports_when_installed() -> None:
    if NO_SPEEDUPS:
        pytest.skip("WSKIT_NO_SPEEDUPS is set in this test run: aiofastnet is turned off")
    aiofastnet = pytest.importorskip("aiofastnet")
    from wskit.asyncio import connect, serve

    async def main() -> tuple[type, str]:
        transports: list[object] = []

        async def echo(ws: Any) -> None:
            transports.append(ws.transport)
            async for message in ws:
                await ws.send(message)

        async with serve(echo, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
                await ws.send("x" * 70_000)
                answer = await ws.recv()
        assert isinstance(answer, str) and answer == "x" * 70_000
        return type(transports[0]), answer[:1]

    kind, _ = asyncio.run(main())
    assert issubclass(kind, aiofastnet.Transport)


def test_aiofastnet_is_not_used_for_tls_or_keywords_it_does_not_take() -> None:
    if NO_SPEEDUPS:
        pytest.skip("WSKIT_NO_SPEEDUPS is set in this test run: aiofastnet is turned off")
    pytest.importorskip("aiofastnet")
    from wskit.asyncio.connection import create_server_function

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert create_server_function(loop, {"ssl": ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)}) \
            == loop.create_server
        assert create_server_function(loop, {"not_an_aiofastnet_keyword": 1}) == loop.create_server
        fast = create_server_function(loop, {"reuse_port": True})
        assert fast != loop.create_server and fast.args == (loop,)  # type: ignore[attr-defined]

    asyncio.run(main())


@pytest.mark.parametrize("how", ["missing", "turned off"])
def test_stock_asyncio_transports_without_aiofastnet(how: str) -> None:
    script = textwrap.dedent("""
        import asyncio, sys
        if sys.argv[1] == "missing":
            sys.modules["aiofastnet"] = None
        from wskit.asyncio.connection import create_server_function

        async def main():
            loop = asyncio.get_running_loop()
            assert create_server_function(loop, {}) == loop.create_server
            print("ok")

        asyncio.run(main())
    """)
    env = dict(os.environ)
    if how == "turned off":
        env["WSKIT_NO_SPEEDUPS"] = "1"
    out = subprocess.run([sys.executable, "-c", script, how], capture_output=True, text=True, timeout=60,
                         check=True, env=env)
    assert out.stdout.strip() == "ok"

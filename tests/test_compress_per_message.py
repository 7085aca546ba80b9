"""Per-message compression control: ``send(message, compress=False)``.

On a connection that negotiated permessage-deflate, one message is sent
uncompressed (RSV1 clear, RFC 7692 §6) while the compressor's context stays
where the previous compressed message left it, so the next compressed message
still inflates on the peer with context takeover. Checked in the sans-I/O core
against wskit and python-websockets as peers, and over real sockets in both
I/O layers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.extensions.permessage_deflate import PerMessageDeflate as TheirDeflate
from websockets.frames import Opcode as TheirOpcode
from websockets.protocol import Protocol as TheirProtocol
from websockets.protocol import Side as TheirSide

import wskit.asyncio as wa
import wskit.sync as ws_sync
from wskit import BinaryMessage, Protocol, Side, TextMessage
from wskit.broadcast import Broadcast
from wskit.extensions.base import Extension
from wskit.extensions.permessage_deflate import PerMessageDeflate
from wskit.frames import Frame, Opcode
from wskit.hookspecs import hookimpl

from helpers import parse_frames

HOST = "127.0.0.1"
TIMEOUT = 10
PLUGIN_SRC = Path(__file__).resolve().parent.parent / "plugins" / "wskit-prefix" / "src"

# Compressible messages; B repeats A so that a compressor that had seen B
# would emit back-references the peer cannot resolve.
A = "the quick brown fox jumps over the lazy dog; " * 40
B = "pack my box with five dozen liquor jugs! " * 40


def pair(**deflate: Any) -> tuple[Protocol, Protocol]:
    """A client and a server protocol, OPEN, with permessage-deflate on both."""
    return (Protocol(Side.CLIENT, extensions=[PerMessageDeflate(**deflate)]),
            Protocol(Side.SERVER, extensions=[PerMessageDeflate(**deflate)]))


def data_frames(writes: list[bytes], masked: bool) -> list[Frame]:
    return [f for f in parse_frames(writes, masked=masked) if f.opcode < 8]


@pytest.mark.parametrize("sender_side", [Side.CLIENT, Side.SERVER])
@pytest.mark.parametrize("no_takeover", [False, True], ids=["takeover", "no-takeover"])
def test_an_uncompressed_message_leaves_the_compression_context_alone(sender_side: Side, no_takeover: bool) -> None:
    client, server = pair(local_no_context_takeover=no_takeover, remote_no_context_takeover=no_takeover)
    sender, receiver = (client, server) if sender_side is Side.CLIENT else (server, client)
    masked = sender_side is Side.CLIENT
    writes = sender.send_text(A) + sender.send_text(B, compress=False) + sender.send_text(B)
    writes += sender.send_binary(A.encode(), compress=False) + sender.send_binary(A.encode())
    frames = data_frames(writes, masked)
    assert [f.rsv1 for f in frames] == [True, False, True, False, True]
    assert frames[1].data == B.encode()  # on the wire as is
    assert frames[3].data == A.encode()
    # The last message repeats the first one: with the context kept (and not
    # spoiled by A sent uncompressed in between), it is a few back-references.
    if no_takeover:
        assert frames[4].data == frames[0].data
    else:
        assert len(frames[4].data) < len(frames[0].data) // 2
    assert receiver.receive_data(b"".join(writes)) == [
        TextMessage(A), TextMessage(B), TextMessage(B), BinaryMessage(A.encode()), BinaryMessage(A.encode())]


def test_compress_true_is_the_default() -> None:
    default, _ = pair()
    explicit, _ = pair()
    by_default = data_frames(default.send_text(A) + default.send_binary(B.encode()), True)
    asked = data_frames(explicit.send_text(A, compress=True) + explicit.send_binary(B.encode(), compress=True), True)
    assert by_default == asked
    assert [f.rsv1 for f in asked] == [True, True]


def test_a_fragmented_message_sent_uncompressed_stays_uncompressed_to_its_end() -> None:
    client, server = pair()
    writes = client.send_text(A)
    writes += client.send_text(B[:100], fin=False, compress=False)
    writes += client.send_continuation(B[100:200], fin=False)
    writes += client.send_continuation(B[200:], fin=True)
    writes += client.send_text(B)
    frames = data_frames(writes, True)
    assert [(f.opcode, f.rsv1, f.fin) for f in frames] == [
        (Opcode.TEXT, True, True), (Opcode.TEXT, False, False), (Opcode.CONT, False, False),
        (Opcode.CONT, False, True), (Opcode.TEXT, True, True)]
    assert b"".join(f.data for f in frames[1:4]) == B.encode()
    assert server.receive_data(b"".join(writes)) == [TextMessage(A), TextMessage(B), TextMessage(B)]


def test_a_compressed_fragmented_message_stays_compressed_and_max_fragment_size_applies() -> None:
    client = Protocol(Side.CLIENT, extensions=[PerMessageDeflate()], max_fragment_size=300)
    server = Protocol(Side.SERVER, extensions=[PerMessageDeflate()])
    writes = client.send_binary(B.encode(), compress=False)
    frames = data_frames(writes, True)
    assert len(frames) > 1 and not any(f.rsv1 for f in frames)
    writes += client.send_text(A[:500], fin=False) + client.send_continuation(A[500:], fin=True)
    rest = data_frames(writes, True)[len(frames):]
    assert len(rest) > 2 and [f.rsv1 for f in rest] == [True] + [False] * (len(rest) - 1)
    assert server.receive_data(b"".join(writes)) == [BinaryMessage(B.encode()), TextMessage(A)]


def test_without_a_compressing_extension_the_keyword_changes_nothing() -> None:
    plain = Protocol(Side.SERVER)
    assert plain.send_text(A, compress=False) == plain.send_text(A)
    assert plain.send_binary(b"xyz", compress=False) == plain.send_binary(b"xyz")
    fragmented = Protocol(Side.SERVER, max_fragment_size=100)
    assert fragmented.send_text(A, compress=False) == fragmented.send_text(A)


class Tagger(Extension):
    """A non-compressing extension: appends one byte to the first frame of each message."""

    name = "x-tag"

    def encode(self, frame: Frame) -> Frame:
        return frame._replace(data=frame.data + b"!") if frame.opcode in (1, 2) else frame

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        return frame._replace(data=frame.data[:-1]) if frame.opcode in (1, 2) else frame


def test_other_extensions_still_encode_an_uncompressed_message() -> None:
    client = Protocol(Side.CLIENT, extensions=[PerMessageDeflate(), Tagger()])
    server = Protocol(Side.SERVER, extensions=[PerMessageDeflate(), Tagger()])
    writes = client.send_text(B, compress=False) + client.send_text(B)
    frames = data_frames(writes, True)
    assert frames[0] == Frame(Opcode.TEXT, B.encode() + b"!")
    assert frames[1].rsv1 and frames[1].data.endswith(b"!")
    assert server.receive_data(b"".join(writes)) == [TextMessage(B), TextMessage(B)]


def test_the_example_plugin_extension_still_applies() -> None:
    sys.path.insert(0, str(PLUGIN_SRC))
    try:
        from wskit_prefix import PrefixExtension
    finally:
        sys.path.remove(str(PLUGIN_SRC))
    client = Protocol(Side.CLIENT, extensions=[PerMessageDeflate(), PrefixExtension("p")])
    server = Protocol(Side.SERVER, extensions=[PerMessageDeflate(), PrefixExtension("p")])
    writes = client.send_text(A) + client.send_text(B, compress=False) + client.send_text(A)
    frames = data_frames(writes, True)
    assert [f.rsv1 for f in frames] == [True, False, True]
    assert frames[1].data == b"[p] " + B.encode()
    assert server.receive_data(b"".join(writes)) == [TextMessage(A), TextMessage(B), TextMessage(A)]


@pytest.mark.parametrize("our_side", [Side.CLIENT, Side.SERVER])
@pytest.mark.parametrize("no_takeover", [False, True], ids=["takeover", "no-takeover"])
def test_python_websockets_decodes_uncompressed_and_following_compressed_messages(
        our_side: Side, no_takeover: bool) -> None:
    ours = Protocol(our_side, max_size=None, extensions=[PerMessageDeflate(
        local_no_context_takeover=no_takeover, remote_no_context_takeover=no_takeover)])
    theirs = TheirProtocol(TheirSide.SERVER if our_side is Side.CLIENT else TheirSide.CLIENT, max_size=None)
    theirs.extensions = [TheirDeflate(remote_no_context_takeover=no_takeover, local_no_context_takeover=no_takeover,
                                      remote_max_window_bits=15, local_max_window_bits=15)]
    writes = ours.send_text(A) + ours.send_binary(B.encode(), compress=False) + ours.send_text(B)
    writes += ours.send_text(A[:700], fin=False, compress=False) + ours.send_continuation(A[700:], fin=True)
    writes += ours.send_binary(A.encode())
    theirs.receive_data(b"".join(writes))
    assert theirs.parser_exc is None, f"python-websockets rejected our frames: {theirs.parser_exc!r}"
    got = [(f.opcode, bytes(f.data)) for f in theirs.events_received()]
    assert got == [(TheirOpcode.TEXT, A.encode()), (TheirOpcode.BINARY, B.encode()), (TheirOpcode.TEXT, B.encode()),
                   (TheirOpcode.TEXT, A[:700].encode()), (TheirOpcode.CONT, A[700:].encode()),
                   (TheirOpcode.BINARY, A.encode())]


def test_broadcast_frames_uncompressed_when_asked() -> None:
    _, server = pair()
    client, _ = pair()
    out = Broadcast(B, compress=False).frames_for(server)
    assert [f.rsv1 for f in data_frames(out, False)] == [False]
    out += Broadcast(B).frames_for(server)
    assert [f.rsv1 for f in data_frames(out, False)] == [False, True]
    assert client.receive_data(b"".join(out)) == [TextMessage(B), TextMessage(B)]


# -- over real sockets ---------------------------------------------------------------


class Recorder:
    """A plugin keeping the RSV1 bit of every data frame its connections receive."""

    def __init__(self) -> None:
        self.rsv1: list[bool] = []

    @hookimpl
    def wskit_frame_received(self, protocol: Any, frame: Frame) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            self.rsv1.append(frame.rsv1)


SENT = [(A, True), (B.encode(), False), (B, True), ([A[:300], A[300:]], False), (B.encode(), True)]
EXPECTED = [A, B.encode(), B, A, B.encode()]
RSV1 = [True, False, True, False, True]


def test_asyncio_send_compress_false_both_ways() -> None:
    server_rec, client_rec = Recorder(), Recorder()

    async def handler(ws: Any) -> None:
        assert [await ws.recv() for _ in SENT] == EXPECTED
        for message, compress in SENT:
            await ws.send(message, compress=compress)

    async def main() -> None:
        async with wa.serve(handler, HOST, 0, plugins=[server_rec]) as server:
            port = server.sockets[0].getsockname()[1]
            async with wa.connect(f"ws://{HOST}:{port}/", plugins=[client_rec]) as ws:
                assert ws.protocol.extensions
                for message, compress in SENT:
                    await ws.send(message, compress=compress)
                assert [await ws.recv() for _ in SENT] == EXPECTED

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert server_rec.rsv1 == RSV1
    assert client_rec.rsv1 == RSV1


def test_asyncio_broadcast_compress_false() -> None:
    rec = Recorder()

    async def stay(ws: Any) -> None:
        await ws.wait_closed()

    async def main() -> None:
        async with wa.serve(stay, HOST, 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with wa.connect(f"ws://{HOST}:{port}/", plugins=[rec]) as ws:
                while not server.connections:
                    await asyncio.sleep(0.001)
                assert wa.broadcast(server.connections, B, compress=False) == []
                assert wa.broadcast(server.connections, B) == []
                assert [await ws.recv(), await ws.recv()] == [B, B]

    asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert rec.rsv1 == [False, True]


@contextlib.contextmanager
def sync_server(handler: Any, **options: Any) -> Iterator[Any]:
    server = ws_sync.serve(handler, HOST, 0, **options)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()


def test_sync_send_compress_false_both_ways() -> None:
    server_rec, client_rec = Recorder(), Recorder()
    received: list[Any] = []

    def handler(ws: Any) -> None:
        received.extend(ws.recv(TIMEOUT) for _ in SENT)
        for message, compress in SENT:
            ws.send(message, compress=compress)

    with sync_server(handler, plugins=[server_rec]) as server:
        port = server.socket.getsockname()[1]
        with ws_sync.connect(f"ws://{HOST}:{port}/", plugins=[client_rec]) as ws:
            assert ws.protocol.extensions
            for message, compress in SENT:
                ws.send(message, compress=compress)
            assert [ws.recv(TIMEOUT) for _ in SENT] == EXPECTED
    assert received == EXPECTED
    assert server_rec.rsv1 == RSV1
    assert client_rec.rsv1 == RSV1


def test_sync_broadcast_compress_false() -> None:
    rec = Recorder()
    opened = threading.Event()

    def stay(ws: Any) -> None:
        opened.set()
        ws.wait_closed()

    with sync_server(stay) as server:
        port = server.socket.getsockname()[1]
        with ws_sync.connect(f"ws://{HOST}:{port}/", plugins=[rec]) as ws:
            assert opened.wait(TIMEOUT)
            assert ws_sync.broadcast(server.connections, B, compress=False) == []
            assert ws_sync.broadcast(server.connections, B) == []
            assert [ws.recv(TIMEOUT), ws.recv(TIMEOUT)] == [B, B]
    assert rec.rsv1 == [False, True]

"""In-memory interoperability with python-websockets' sans-I/O ``websockets.protocol.Protocol``.

Frames python-websockets writes must parse here and frames written here must
parse there, in every direction (their client -> our server and our client ->
their server are masked; server frames are not), for every length encoding,
fragmented messages, ping/pong and the closing handshake started by either side.
"""

from __future__ import annotations

from typing import Any

import pytest
from websockets.frames import Frame as TheirFrame
from websockets.frames import Opcode as TheirOpcode
from websockets.protocol import Protocol as TheirProtocol
from websockets.protocol import Side as TheirSide
from websockets.protocol import State as TheirState

from wskit import BinaryMessage, Close, ConnectionClosed, Ping, Pong, Protocol, Side, State, TextMessage
from wskit.exceptions import ProtocolError

from helpers import state_of

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000]
OUR_SIDES = [Side.SERVER, Side.CLIENT]


def peers(our_side: Side, **ours: Any) -> tuple[Protocol, TheirProtocol]:
    """Return our protocol and a python-websockets protocol playing the other side, both OPEN."""
    their_side = TheirSide.CLIENT if our_side is Side.SERVER else TheirSide.SERVER
    ours.setdefault("max_size", None)
    return Protocol(our_side, **ours), TheirProtocol(their_side, max_size=None)


def their_bytes(theirs: TheirProtocol) -> bytes:
    """What python-websockets wants written (its ``b""`` end-of-stream marker is dropped)."""
    return b"".join(theirs.data_to_send())


def to_theirs(writes: list[bytes], theirs: TheirProtocol) -> list[TheirFrame]:
    theirs.receive_data(b"".join(writes))
    assert theirs.parser_exc is None, f"python-websockets rejected our frames: {theirs.parser_exc!r}"
    frames = theirs.events_received()
    assert all(isinstance(f, TheirFrame) for f in frames)
    return [f for f in frames if isinstance(f, TheirFrame)]


def their_messages(frames: list[TheirFrame]) -> list[tuple[str, bytes]]:
    """Reassemble python-websockets' received frames into (kind, payload) messages and controls."""
    out: list[tuple[str, bytes]] = []
    parts: list[bytes] = []
    kind = ""
    for frame in frames:
        if frame.opcode in (TheirOpcode.TEXT, TheirOpcode.BINARY):
            kind = frame.opcode.name
            parts = [bytes(frame.data)]
        elif frame.opcode is TheirOpcode.CONT:
            parts.append(bytes(frame.data))
        else:
            out.append((frame.opcode.name, bytes(frame.data)))
            continue
        if frame.fin:
            out.append((kind, b"".join(parts)))
    return out


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("our_side", OUR_SIDES, ids=["our-server", "our-client"])
def test_their_messages_parse_here(our_side: Side, size: int) -> None:
    ours, theirs = peers(our_side)
    text = ("añ€😀" * size)[:size]
    payload = bytes(i % 256 for i in range(size))
    theirs.send_text(text.encode())
    theirs.send_binary(payload)
    assert ours.receive_data(their_bytes(theirs)) == [TextMessage(text), BinaryMessage(payload)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("our_side", OUR_SIDES, ids=["our-server", "our-client"])
def test_our_messages_parse_there(our_side: Side, size: int) -> None:
    ours, theirs = peers(our_side)
    text = ("añ€😀" * size)[:size]
    payload = bytes(i % 256 for i in range(size))
    writes = ours.send_text(text) + ours.send_binary(payload)
    frames = to_theirs(writes, theirs)
    assert their_messages(frames) == [("TEXT", text.encode()), ("BINARY", payload)]


@pytest.mark.parametrize("our_side", OUR_SIDES, ids=["our-server", "our-client"])
def test_their_fragmented_message_with_interleaved_controls(our_side: Side) -> None:
    ours, theirs = peers(our_side)
    euro = "€".encode()
    theirs.send_text(b"ab" + euro[:1], fin=False)
    theirs.send_ping(b"p1")
    theirs.send_continuation(euro[1:], fin=False)
    theirs.send_pong(b"p2")
    theirs.send_continuation(b"cd", fin=True)
    theirs.send_binary(b"x" * 70000, fin=False)
    theirs.send_continuation(b"y" * 10, fin=True)
    data = their_bytes(theirs)
    expected = [Ping(b"p1"), Pong(b"p2"), TextMessage("ab€cd"), BinaryMessage(b"x" * 70000 + b"y" * 10)]
    assert ours.receive_data(data) == expected
    # Any chunking gives the same events.
    again, _ = peers(our_side)
    events = []
    for i in range(0, len(data), 1000):
        events.extend(again.receive_data(data[i:i + 1000]))
    assert events == expected


@pytest.mark.parametrize("our_side", OUR_SIDES, ids=["our-server", "our-client"])
def test_our_fragmented_message_parses_there(our_side: Side) -> None:
    ours, theirs = peers(our_side, max_fragment_size=100)
    text = "€" * 1000  # fragments split UTF-8 sequences
    frames = to_theirs(ours.send_text(text) + ours.send_binary(b"z" * 250), theirs)
    assert len(frames) == 30 + 3
    assert all(len(f.data) <= 100 for f in frames)
    assert their_messages(frames) == [("TEXT", text.encode()), ("BINARY", b"z" * 250)]


@pytest.mark.parametrize("our_side", OUR_SIDES, ids=["our-server", "our-client"])
def test_ping_pong_both_ways(our_side: Side) -> None:
    ours, theirs = peers(our_side)
    # Our Ping: python-websockets answers it by itself.
    frames = to_theirs(ours.send_ping(b"hello?"), theirs)
    assert their_messages(frames) == [("PING", b"hello?")]
    assert ours.receive_data(their_bytes(theirs)) == [Pong(b"hello?")]
    # Their Ping: the application answers with send_pong (docs/sansio.md).
    theirs.send_ping(b"\x00\xff" * 62)
    events = ours.receive_data(their_bytes(theirs))
    assert events == [Ping(b"\x00\xff" * 62)]
    assert isinstance(events[0], Ping)
    frames = to_theirs(ours.send_pong(events[0].data), theirs)
    assert their_messages(frames) == [("PONG", b"\x00\xff" * 62)]


@pytest.mark.parametrize("our_side", OUR_SIDES, ids=["our-server", "our-client"])
def test_closing_handshake_started_here(our_side: Side) -> None:
    ours, theirs = peers(our_side)
    frames = to_theirs(ours.send_close(1001, "going away é"), theirs)
    assert their_messages(frames) == [("CLOSE", b"\x03\xe9going away \xc3\xa9")]
    assert theirs.close_rcvd is not None
    assert (theirs.close_rcvd.code, theirs.close_rcvd.reason) == (1001, "going away é")
    assert ours.state is State.CLOSING
    assert ours.receive_data(their_bytes(theirs)) == [Close(1001, "going away é")]
    assert state_of(ours) is State.CLOSED
    assert ours.receive_eof() == [ConnectionClosed(None)]
    assert ours.close_code == 1001


@pytest.mark.parametrize("our_side", OUR_SIDES, ids=["our-server", "our-client"])
def test_closing_handshake_started_there(our_side: Side) -> None:
    ours, theirs = peers(our_side)
    theirs.send_text(b"last")
    theirs.send_close(4000, "app done")
    assert ours.receive_data(their_bytes(theirs)) == [TextMessage("last"), Close(4000, "app done")]
    assert ours.state is State.CLOSING
    # Finish sending, then answer (RFC 6455 §5.5.1).
    writes = ours.send_binary(b"tail") + ours.send_close(4000, "app done")
    assert state_of(ours) is State.CLOSED
    frames = to_theirs(writes, theirs)
    assert their_messages(frames) == [("BINARY", b"tail"), ("CLOSE", b"\x0f\xa0app done")]
    theirs.receive_eof()  # python-websockets reports CLOSED once the transport is closed
    assert theirs.state is TheirState.CLOSED and theirs.close_code == 4000
    assert theirs.close_rcvd is not None and theirs.close_rcvd.code == 4000


@pytest.mark.parametrize("our_side", OUR_SIDES, ids=["our-server", "our-client"])
def test_empty_close_echoed(our_side: Side) -> None:
    ours, theirs = peers(our_side)
    theirs.send_close()  # no payload: code 1005
    assert ours.receive_data(their_bytes(theirs)) == [Close(1005, "")]
    frames = to_theirs(ours.send_close(1005, ""), theirs)
    assert their_messages(frames) == [("CLOSE", b"")]
    assert theirs.close_rcvd is not None and theirs.close_rcvd.code == 1005


@pytest.mark.parametrize("our_side", OUR_SIDES, ids=["our-server", "our-client"])
def test_our_failure_close_parses_there(our_side: Side) -> None:
    ours, theirs = peers(our_side)
    # A reserved opcode, framed as their side would frame it.
    bad = (b"\x83\x80abcd" if our_side is Side.SERVER else b"\x83\x00")
    theirs.send_text(b"before")
    with pytest.raises(ProtocolError) as info:
        ours.receive_data(their_bytes(theirs) + bad)
    assert info.value.events == [TextMessage("before")]
    frames = to_theirs(ours.send_text("before") + info.value.to_send, theirs)
    messages = their_messages(frames)
    assert messages[0] == ("TEXT", b"before")
    assert messages[1][0] == "CLOSE" and messages[1][1][:2] == b"\x03\xea"  # 1002
    assert theirs.close_rcvd is not None and theirs.close_rcvd.code == 1002

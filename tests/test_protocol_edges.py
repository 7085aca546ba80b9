"""Tests for wskit.protocol.Protocol at its edges: arguments given as strings, calls made in the wrong
state, a failing extension or plugin on the uncompressed path, and specs that leave a trigger out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from test_statemachine import spec_data, write_spec

from wskit import BinaryMessage, Protocol, Side, State, TextMessage
from wskit.exceptions import InvalidState, PluginError, ProtocolError
from wskit.extensions.base import Extension
from wskit.frames import Frame, Opcode
from wskit.hookspecs import hookimpl
from wskit.plugin import PluginManager
from wskit.statemachine import load_spec

from helpers import assert_failed, client_frame, close_payload, parse_close_frame, parse_frames


def test_side_may_be_given_as_its_value() -> None:
    p = Protocol("server")  # type: ignore[arg-type]
    assert p.side is Side.SERVER
    assert p.receive_data(client_frame(Opcode.TEXT, b"hi")) == [TextMessage("hi")]


def test_repr_names_the_class_side_and_state() -> None:
    p = Protocol(Side.CLIENT)
    assert repr(p) == "<Protocol client open (open)>"
    p.send_close(1000)
    assert repr(p) == "<Protocol client closing (closing_sent)>"


def test_send_continuation_after_our_close_is_refused() -> None:
    p = Protocol(Side.CLIENT)
    p.send_text("par", fin=False)
    p.send_close(1000)
    with pytest.raises(InvalidState, match=r"cannot send a continuation frame in state CLOSING \(we sent Close"):
        p.send_continuation("t", fin=True)


def test_bare_protocol_in_connecting_state_has_no_handshake() -> None:
    p = Protocol(Side.SERVER, state=State.CONNECTING)
    with pytest.raises(InvalidState, match="a bare Protocol has no opening handshake: use ClientProtocol"):
        p.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    assert p.state is State.CONNECTING


def test_invalid_utf8_in_the_first_fragment_fails_with_1007() -> None:
    p = Protocol(Side.SERVER)
    exc = assert_failed(p, client_frame(Opcode.TEXT, b"ok \xff", fin=False), 1007)
    assert "invalid UTF-8" in str(exc) and "0xff" in str(exc)


def test_a_failure_is_logged_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.protocol.edges")
    logger.setLevel(logging.DEBUG)
    p = Protocol(Side.SERVER, logger=logger)
    with caplog.at_level(logging.DEBUG, logger="test.protocol.edges"):
        assert_failed(p, b"\x83\x80\x00\x00\x00\x00", 1002)  # reserved opcode 3
    assert any(r.getMessage().startswith("! failing the connection with 1002: ") for r in caplog.records)


# -- compress=False: the extensions that do not compress still apply ----------------------------


class _Identity(Extension):
    """Stands for a compressing extension: it marks what it encoded."""

    name = "x-squash"
    compresses = True
    rsv_mask = 0x40

    def encode(self, frame: Frame) -> Frame:
        return frame._replace(rsv1=frame.opcode < 8)

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        return frame._replace(rsv1=False)


class _Broken(Extension):
    name = "x-broken"

    def encode(self, frame: Frame) -> Frame:
        raise RuntimeError("encoder bug")


def test_uncompressed_message_through_a_failing_extension_fails_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    p = Protocol(Side.SERVER, extensions=[_Identity(), _Broken()])
    with caplog.at_level(logging.ERROR, logger="wskit"), pytest.raises(ProtocolError) as info:
        p.send_text("plain", compress=False)
    exc = info.value
    assert exc.close_code == 1011
    assert "extension 'x-broken' (_Broken.encode) raised RuntimeError: encoder bug" in str(exc)
    assert isinstance(exc.__cause__, PluginError)
    # The peer gets a generic reason; the details stay in this side's log.
    assert parse_close_frame(exc.to_send, masked=False) == (1011, "internal error")
    assert p.state is State.CLOSING
    assert any("encoder bug" in r.getMessage() for r in caplog.records)


def test_frame_sent_observers_see_uncompressed_messages() -> None:
    seen: list[tuple[int, bool]] = []

    class Observer:
        @hookimpl
        def wskit_frame_sent(self, protocol: object, frame: Frame) -> None:
            seen.append((frame.opcode, frame.rsv1))

    p = Protocol(Side.SERVER, extensions=[_Identity()],
                 plugin_manager=PluginManager([Observer()], entry_points=False))
    wire = p.send_binary(b"raw", compress=False) + p.send_binary(b"packed")
    assert seen == [(Opcode.BINARY, False), (Opcode.BINARY, True)]
    assert [f.rsv1 for f in parse_frames(wire, masked=False)] == [False, True]


def test_observer_failing_while_a_failure_is_answered_keeps_the_first_failure() -> None:
    class Observer:
        @hookimpl
        def wskit_frame_sent(self, protocol: object, frame: Frame) -> None:
            if frame.opcode == Opcode.PONG:
                raise ValueError("observer bug")

    p = Protocol(Side.SERVER, plugin_manager=PluginManager([Observer()], entry_points=False))
    first = assert_failed(p, b"\x83\x80\x00\x00\x00\x00", 1002)
    # While failing, the replies to exc.events may still go out; an observer raising then
    # is reported, and the connection's failure stays the first one.
    with pytest.raises(ProtocolError) as info:
        p.send_pong(b"late")
    assert info.value.close_code == 1011 and "observer bug" in str(info.value)
    assert info.value.to_send == []
    assert p.state is State.CLOSING
    assert p.send_binary(b"still answering")
    assert p.close_code == 1002
    [closed] = p.receive_eof()
    assert closed.exception is first  # type: ignore[attr-defined]


# -- a spec that leaves a trigger out ------------------------------------------------------------


def test_spec_without_receive_close_fails_the_connection_on_the_peers_close(tmp_path: Path) -> None:
    data = spec_data()
    # A (valid) spec in which the peer's Close has nowhere to go.
    drop = {"closing_received", "failing_received", "failed_received_closed", "lost_received"}
    for name in drop:
        del data["states"][name]
    data["transitions"] = [t for t in data["transitions"] if str(t["source"]) not in drop and t["dest"] not in drop]
    p = Protocol(Side.SERVER, spec=load_spec(write_spec(tmp_path, data)))
    with pytest.raises(InvalidState, match=r"cannot receive close in state OPEN \(data flows both ways\)") as info:
        p.receive_data(client_frame(Opcode.CLOSE, close_payload(1000)))
    assert isinstance(info.value, ProtocolError) and info.value.close_code == 1002
    assert parse_close_frame(info.value.to_send, masked=False)[0] == 1002
    assert p.state is State.CLOSING


# -- an extension's decode whose signature cannot be read ----------------------------------------


class _CompiledDecode:
    """Stands for a decode written in C: its signature cannot be introspected."""

    __signature__: Any = "not introspectable"

    def __init__(self) -> None:
        self.limits: list[int | None] = []

    def __call__(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        self.limits.append(max_size)
        return frame


def test_decode_without_a_readable_signature_is_given_max_size() -> None:
    decode = _CompiledDecode()

    class Compiled(Extension):
        name = "x-compiled"

    ext = Compiled()
    ext.decode = decode  # type: ignore[method-assign]
    p = Protocol(Side.SERVER, max_size=1000, extensions=[ext])
    assert p.receive_data(client_frame(Opcode.BINARY, b"data")) == [BinaryMessage(b"data")]
    assert decode.limits == [1000]


def test_decode_that_takes_the_frame_alone_still_has_the_size_limit_enforced() -> None:
    class Doubling(Extension):
        """Its decode takes no max_size: the protocol checks the decoded size itself."""

        name = "x-doubling"

        def decode(self, frame: Frame) -> Frame:  # type: ignore[override]
            return frame._replace(data=frame.data * 2)

    p = Protocol(Side.SERVER, max_size=10, extensions=[Doubling()])
    assert p.receive_data(client_frame(Opcode.BINARY, b"abcde")) == [BinaryMessage(b"abcdeabcde")]
    exc = assert_failed(p, client_frame(Opcode.BINARY, b"abcdef"), 1009)
    assert "max_size=10" in str(exc)

"""The optional ``logging`` built-in plugin (wskit/plugins/framelog.py)."""

from __future__ import annotations

import logging
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wskit import ClientProtocol, Protocol, ServerProtocol, Side, State
from wskit.frames import Frame, Opcode, serialize_close
from wskit.plugin import PluginManager
from wskit.plugins import framelog
from wskit.plugins.framelog import describe_frame

LOGGER = "wskit.test.framelog"


@pytest.fixture
def logging_manager() -> PluginManager:
    """Only the logging plugin: deterministic whatever is installed."""
    return PluginManager(builtins=False, entry_points=False, enable=["logging"])


@pytest.fixture
def debug_logger(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return logging.getLogger(LOGGER)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The lines the plugin logged (the core may log handshake lines of its own)."""
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.module == "framelog"]


# -- one line per frame ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (Frame(Opcode.TEXT, b"hello"), "TEXT 'hello' [5 bytes]"),
        (Frame(Opcode.TEXT, b""), "TEXT '' [0 bytes]"),
        (Frame(Opcode.TEXT, "héllo".encode()), "TEXT 'héllo' [6 bytes]"),
        (Frame(Opcode.CLOSE, serialize_close(1000, "bye")), "CLOSE 1000 (OK) 'bye' [5 bytes]"),
        (Frame(Opcode.CLOSE, serialize_close(1001, "")), "CLOSE 1001 (going away) [2 bytes]"),
        (Frame(Opcode.CLOSE, b""), "CLOSE (no status code) [0 bytes]"),
        (Frame(Opcode.CLOSE, b"\x03"), "CLOSE 03 (invalid) [1 byte]"),
        (Frame(Opcode.PING, b"\x01\x02"), r"PING b'\x01\x02' [2 bytes]"),
        (Frame(Opcode.PONG, b""), "PONG b'' [0 bytes]"),
        (Frame(Opcode.BINARY, b"\x00\x01\x02"), "BINARY 00 01 02 [3 bytes]"),
        (Frame(Opcode.BINARY, b""), "BINARY [0 bytes]"),
        (Frame(Opcode.TEXT, b"hel", fin=False), "TEXT 'hel' (fragment) [3 bytes]"),
        (Frame(Opcode.CONT, b"lo"), "CONT 'lo' [2 bytes]"),
        (Frame(Opcode.CONT, b"\xff\x00", fin=False), "CONT ff 00 (fragment) [2 bytes]"),
        (Frame(Opcode.TEXT, b"\xf2\x48\xcd", rsv1=True), "TEXT f2 48 cd (compressed) [3 bytes]"),
        (Frame(Opcode.TEXT, b"abc", rsv2=True, rsv3=True), "TEXT 'abc' (rsv2) (rsv3) [3 bytes]"),
    ],
)
def test_describe_frame(frame: Frame, expected: str) -> None:
    assert describe_frame(frame) == expected


def test_long_binary_is_hex_and_elided() -> None:
    text = describe_frame(Frame(Opcode.BINARY, bytes(range(256)) * 273 + b"\x00" * 112))
    assert text.startswith("BINARY 00 01 02 ")
    assert text.endswith(" ... [70000 bytes]")
    assert len(text) < 100


def test_long_text_is_elided_to_about_60_characters() -> None:
    text = describe_frame(Frame(Opcode.TEXT, b"x" * 100_000))
    assert text == "TEXT '" + "x" * framelog.ELIDE + "'... [100000 bytes]"


def test_a_character_cut_by_a_fragment_boundary_is_not_an_error() -> None:
    data = "aé".encode()  # b"a\xc3\xa9"
    assert describe_frame(Frame(Opcode.TEXT, data[:2], fin=False)) == "TEXT 'a' (fragment) [2 bytes]"
    # A final frame that ends inside a character is not UTF-8: hex.
    assert describe_frame(Frame(Opcode.TEXT, data[:2])) == "TEXT 61 c3 [2 bytes]"


def test_long_text_cut_inside_a_character_still_shows_text() -> None:
    text = describe_frame(Frame(Opcode.TEXT, "é".encode() * 1000))
    assert text.startswith("TEXT 'ééé") and text.endswith("'... [2000 bytes]")


@given(opcode=st.sampled_from([0, 1, 2, 3, 8, 9, 10, 15]), data=st.binary(max_size=300),
       fin=st.booleans(), rsv1=st.booleans(), rsv2=st.booleans(), rsv3=st.booleans())
def test_describe_frame_never_raises_and_is_one_short_line(opcode: int, data: bytes, fin: bool, rsv1: bool,
                                                           rsv2: bool, rsv3: bool) -> None:
    text = describe_frame(Frame(opcode, data, fin, rsv1, rsv2, rsv3))  # type: ignore[arg-type]
    assert "\n" not in text
    assert text.endswith(f"[{len(data)} byte{'' if len(data) == 1 else 's'}]")
    assert len(text) < 340  # ~60 shown characters, each at most a 4-character escape, plus flags


# -- wired to protocols ------------------------------------------------------------------------------------


def test_sent_received_and_state_lines(logging_manager: PluginManager, debug_logger: logging.Logger,
                                       caplog: pytest.LogCaptureFixture) -> None:
    server = Protocol(Side.SERVER, plugin_manager=logging_manager, logger=debug_logger)
    client = Protocol(Side.CLIENT, plugin_manager=PluginManager(builtins=False, entry_points=False))
    server.send_text("hello")
    server.receive_data(b"".join(client.send_ping(b"\x01\x02")))
    server.receive_data(b"".join(client.send_binary(bytes(70000))))
    server.receive_data(b"".join(client.send_close(1000, "bye")))
    server.send_close(1000, "bye")
    assert lines(caplog) == [
        "> TEXT 'hello' [5 bytes]",
        r"< PING b'\x01\x02' [2 bytes]",
        "< BINARY " + " ".join(["00"] * 20) + " ... [70000 bytes]",
        "< CLOSE 1000 (OK) 'bye' [5 bytes]",
        "= OPEN -> CLOSING (receive_close)",
        "> CLOSE 1000 (OK) 'bye' [5 bytes]",
        "= CLOSING -> CLOSED (send_close)",
    ]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if r.name == LOGGER)


def test_fragments_and_continuations(logging_manager: PluginManager, debug_logger: logging.Logger,
                                     caplog: pytest.LogCaptureFixture) -> None:
    p = Protocol(Side.SERVER, plugin_manager=logging_manager, logger=debug_logger, max_fragment_size=4)
    p.send_text("hello world")
    assert lines(caplog) == ["> TEXT 'hell' (fragment) [4 bytes]", "> CONT 'o wo' (fragment) [4 bytes]",
                             "> CONT 'rld' [3 bytes]"]


def test_compressed_frames_are_marked(debug_logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    pm = PluginManager(entry_points=False, enable=["logging"])  # permessage-deflate + logging
    client = ClientProtocol(plugin_manager=pm, logger=debug_logger)
    server = ServerProtocol(plugin_manager=pm)
    (request,) = server.receive_data(b"".join(client.connect()))
    client.receive_data(b"".join(server.accept(request)))
    assert [e.name for e in client.extensions] == ["permessage-deflate"]
    caplog.clear()
    client.send_text("hello " * 20)
    (line,) = lines(caplog)
    assert re.fullmatch(r"> TEXT ([0-9a-f]{2} )+\(compressed\) \[\d+ bytes\]", line), line


def test_handshake_state_change_is_logged(logging_manager: PluginManager, debug_logger: logging.Logger,
                                          caplog: pytest.LogCaptureFixture) -> None:
    client = ClientProtocol(plugin_manager=logging_manager, logger=debug_logger)
    server = ServerProtocol(plugin_manager=logging_manager, logger=debug_logger)
    (request,) = server.receive_data(b"".join(client.connect()))
    client.receive_data(b"".join(server.accept(request)))
    assert lines(caplog).count("= CONNECTING -> OPEN (accept)") == 2


def test_nothing_is_logged_above_debug(logging_manager: PluginManager, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    p = Protocol(Side.SERVER, plugin_manager=logging_manager, logger=logging.getLogger(LOGGER))
    p.send_text("hello")
    p.send_close()
    assert lines(caplog) == []


def test_level_changes_during_a_connection_are_followed(logging_manager: PluginManager,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    p = Protocol(Side.SERVER, plugin_manager=logging_manager, logger=logging.getLogger(LOGGER))
    p.send_text("quiet")
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    p.send_text("loud")
    assert lines(caplog) == ["> TEXT 'loud' [4 bytes]"]


def test_logger_adapter(logging_manager: PluginManager, debug_logger: logging.Logger,
                        caplog: pytest.LogCaptureFixture) -> None:
    adapter = logging.LoggerAdapter(debug_logger, {"conn": 7})
    p = Protocol(Side.SERVER, plugin_manager=logging_manager, logger=adapter)
    p.send_pong(b"x")
    assert lines(caplog) == ["> PONG b'x' [1 byte]"]
    assert caplog.records[-1].conn == 7  # type: ignore[attr-defined]


class _BrokenLogger:
    def isEnabledFor(self, level: int) -> bool:
        return True

    def debug(self, *args: object) -> None:
        raise RuntimeError("handler exploded")


class _FakeProtocol:
    logger = _BrokenLogger()


def test_the_plugin_never_raises() -> None:
    frame = Frame(Opcode.TEXT, b"x")
    for protocol in (_FakeProtocol(), object()):  # a logger that raises; no logger at all
        framelog.wskit_frame_sent(protocol=protocol, frame=frame)
        framelog.wskit_frame_received(protocol=protocol, frame=frame)
        framelog.wskit_state_changed(protocol=protocol, old=State.OPEN, new=State.CLOSED, trigger="x")
    framelog.wskit_frame_sent(protocol=_FakeProtocol(), frame=None)  # type: ignore[arg-type]


# -- off by default ----------------------------------------------------------------------------------------


def test_logging_is_off_by_default() -> None:
    pm = PluginManager(entry_points=False)
    assert "logging" not in pm.names()
    assert pm.frame_sent is None and pm.frame_received is None and pm.state_changed is None


def test_enabling_registers_the_plugin_under_its_name(logging_manager: PluginManager) -> None:
    assert logging_manager.names() == ["logging"]
    assert logging_manager.frame_sent is not None
    assert logging_manager.frame_received is not None
    assert logging_manager.state_changed is not None
    assert PluginManager(entry_points=False, enable=["logging"], disable=["logging"]).names() == [
        "permessage-deflate"]

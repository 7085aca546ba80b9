"""The examples of the document wskit grew from (its seed), with ``websockets`` replaced by ``wskit``.

Each example runs as written where RFC 6455 allows it; where it does not
(sending in CONNECTING, frames instead of an HTTP request), the test asserts
the clear ``ProtocolError`` the API promises. The custom server runs its
``handle_client`` / ``process_event`` over a real ``socket.socketpair()``
against a ``ClientProtocol``, with the one ``Request`` -> ``accept()``
branch (and the ``State`` import) the seed forgets.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any

import pytest

from wskit.events import Event
from wskit.exceptions import InvalidHandshake, InvalidState
from wskit.extensions.base import Extension
from wskit.frames import Frame, Opcode
from wskit.protocol import (
    BinaryMessage,
    ClientProtocol,
    Close,
    ConnectionClosed,
    Ping,
    Pong,
    Protocol,
    Request,
    Response,
    ServerProtocol,
    Side,
    State,
    TextMessage,
)

from helpers import MASK_KEY, build_frame, parse_frames, state_of

# -- example 1: basic protocol usage ------------------------------------------------------------


def basic_protocol_example(protocol: Any = None) -> None:
    """The seed's ``basic_protocol_example`` (optionally on a given protocol)."""
    if protocol is None:
        # Create client protocol
        protocol = ClientProtocol(max_size=1024 * 1024)  # 1MB max message
    print(f"Initial state: {protocol.state}")
    print(f"Protocol side: {protocol.side}")
    frames_to_send = protocol.send_text("Hello, WebSocket!")
    print(f"Frames to send: {len(frames_to_send)}")
    ping_frames = protocol.send_ping(b"ping-data")
    print(f"Ping frames: {len(ping_frames)}")
    close_frames = protocol.send_close(1000, "Normal closure")
    print(f"Close frames: {len(close_frames)}")
    print(f"Final state: {protocol.state}")


def test_seed_basic_example_stops_with_invalid_state_in_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InvalidState) as info:
        basic_protocol_example()
    assert "CONNECTING" in str(info.value)
    out = capsys.readouterr().out
    assert "Initial state: State.CONNECTING" in out
    assert "Protocol side: Side.CLIENT" in out
    assert "Frames to send" not in out


def open_client_server(**client_kwargs: Any) -> tuple[ClientProtocol, ServerProtocol]:
    """Run the opening handshake in memory; return an OPEN client and server."""
    client = ClientProtocol("ws://example.com/chat", **client_kwargs)
    server = ServerProtocol()
    (request,) = server.receive_data(b"".join(client.connect()))
    assert isinstance(request, Request)
    events = client.receive_data(b"".join(server.accept(request)))
    assert len(events) == 1 and isinstance(events[0], Response) and events[0].status_code == 101
    assert client.state is State.OPEN and server.state is State.OPEN
    return client, server


def test_seed_basic_example_runs_once_the_handshake_is_done(capsys: pytest.CaptureFixture[str]) -> None:
    client, _server = open_client_server()
    basic_protocol_example(client)
    out = capsys.readouterr().out
    assert "Initial state: State.OPEN" in out
    assert "Frames to send: 1" in out and "Ping frames: 1" in out and "Close frames: 1" in out
    assert "Final state: State.CLOSING" in out


# -- example 2: the state machine ----------------------------------------------------------------


def protocol_state_machine_example() -> ClientProtocol:
    """The seed's ``protocol_state_machine_example`` (returns the protocol for inspection)."""
    from wskit.exceptions import ProtocolError

    protocol = ClientProtocol()

    def print_state() -> None:
        print(f"Current state: {protocol.state}")

    print("=== Protocol State Machine Example ===")
    print_state()
    try:
        frames = protocol.send_text("Hello")
        print(f"Sent text message: {len(frames)} frames")
        print_state()
        ping_frames = protocol.send_ping(b"test")
        print(f"Sent ping: {len(ping_frames)} frames")
        print_state()
        close_frames = protocol.send_close(1000, "Normal closure")
        print(f"Sent close frame: {len(close_frames)} frames")
        print_state()
        try:
            protocol.send_text("This should fail")
        except ProtocolError as e:
            print(f"Expected error: {e}")
        print_state()
    except ProtocolError as e:
        print(f"Protocol error: {e}")
    return protocol


def test_seed_state_machine_example_stops_with_invalid_state(capsys: pytest.CaptureFixture[str]) -> None:
    protocol = protocol_state_machine_example()
    out = capsys.readouterr().out
    assert "Current state: State.CONNECTING" in out
    assert "Protocol error: cannot send" in out and "CONNECTING" in out
    assert "Sent text message" not in out
    assert protocol.state is State.CONNECTING
    with pytest.raises(InvalidState):
        protocol.send_text("Hello")


def test_seed_state_machine_example_states_after_handshake() -> None:
    # What the example's comments describe, once the connection is OPEN.
    client, server = open_client_server()
    client.send_text("Hello")
    client.send_ping(b"test")
    assert client.state is State.OPEN
    close = client.send_close(1000, "Normal closure")
    assert state_of(client) is State.CLOSING
    with pytest.raises(InvalidState):
        client.send_text("This should fail")
    assert server.receive_data(b"".join(close)) == [Close(1000, "Normal closure")]
    assert client.receive_data(b"".join(server.send_close(1000, "Normal closure"))) == [Close(1000, "Normal closure")]
    assert state_of(client) is State.CLOSED


# -- example 3: frame processing ---------------------------------------------------------------------


def seed_frame(masked: bool = False) -> bytes:
    """The frame the seed builds by hand (optionally masked, as a client must)."""
    message_bytes = "Hello, WebSocket!".encode("utf-8")  # noqa: UP012 - the seed's code
    frame_data = bytearray()
    frame_data.append(0x81)
    if len(message_bytes) < 126:
        frame_data.append(len(message_bytes) | (0x80 if masked else 0))
    else:  # pragma: no cover - the seed's other branches; its message is short
        frame_data.append(126)
        frame_data.extend(struct.pack("!H", len(message_bytes)))
    if masked:
        frame_data.extend(MASK_KEY)
        message_bytes = bytes(b ^ MASK_KEY[i % 4] for i, b in enumerate(message_bytes))
    frame_data.extend(message_bytes)
    return bytes(frame_data)


def frame_processing_example(protocol: Any, frame_data: bytes) -> None:
    """The seed's ``frame_processing_example`` body."""
    print(f"Created frame: {len(frame_data)} bytes")
    print(f"Frame hex: {frame_data.hex()}")
    try:
        events = protocol.receive_data(bytes(frame_data))
        print(f"Generated {len(events)} events")
        for event in events:
            if hasattr(event, "data"):
                print(f"Event data: {event.data}")
    except Exception as e:
        print(f"Frame processing error: {e}")


def test_seed_frame_processing_example_is_not_a_handshake(capsys: pytest.CaptureFixture[str]) -> None:
    frame_processing_example(ServerProtocol(), seed_frame())
    out = capsys.readouterr().out
    assert "Frame processing error:" in out, out
    server = ServerProtocol()
    with pytest.raises(InvalidHandshake) as info:
        server.receive_data(seed_frame())
    assert server.state is State.CLOSED
    assert info.value.to_send and info.value.to_send[0].startswith(b"HTTP/1.1 400")


def test_seed_frame_processing_example_with_bare_server(capsys: pytest.CaptureFixture[str]) -> None:
    frame_processing_example(Protocol(Side.SERVER), seed_frame(masked=True))
    out = capsys.readouterr().out
    assert "Generated 1 events" in out and "Event data: Hello, WebSocket!" in out
    assert Protocol(Side.SERVER).receive_data(seed_frame(masked=True)) == [TextMessage("Hello, WebSocket!")]


def test_seed_frame_processing_example_unmasked_to_bare_server(capsys: pytest.CaptureFixture[str]) -> None:
    frame_processing_example(Protocol(Side.SERVER), seed_frame(masked=False))
    out = capsys.readouterr().out
    assert "Frame processing error: unmasked frame" in out


# -- example 4: the custom server ------------------------------------------------------------------------


class CustomWebSocketServer:
    """The seed's server, with the ``Request`` branch and the ``State`` import it needs."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.errors: list[BaseException] = []

    def handle_client(self, client_socket: socket.socket, address: Any) -> None:
        """Handle individual client connection (the seed's loop)."""
        from wskit.exceptions import ProtocolError
        from wskit.protocol import ServerProtocol, State

        protocol = ServerProtocol(max_size=64 * 1024)  # 64KB max message
        try:
            while True:
                data = client_socket.recv(4096)
                if not data:
                    events = protocol.receive_eof()
                    break
                try:
                    events = protocol.receive_data(data)
                except ProtocolError as e:
                    print(f"Protocol error: {e}")
                    break
                for event in events:
                    response_frames = self.process_event(event, protocol)
                    for frame_bytes in response_frames:
                        client_socket.send(frame_bytes)
                if protocol.state == State.CLOSED:
                    break
        except Exception as e:
            self.errors.append(e)
            print(f"Client error: {e}")
        finally:
            client_socket.close()
            print(f"Client disconnected: {address}")

    def process_event(self, event: Event, protocol: Any) -> list[bytes]:
        """Process protocol events and return response frames."""
        from wskit.protocol import BinaryMessage, Close, Ping, Request, TextMessage

        if isinstance(event, Request):
            # The branch the seed forgets: answer the upgrade request.
            return protocol.accept(event)  # type: ignore[no-any-return]
        if isinstance(event, TextMessage):
            return protocol.send_text(f"Echo: {event.data}")  # type: ignore[no-any-return]
        elif isinstance(event, BinaryMessage):
            return protocol.send_binary(b"Echo: " + event.data)  # type: ignore[no-any-return]
        elif isinstance(event, Ping):
            return protocol.send_pong(event.data)  # type: ignore[no-any-return]
        elif isinstance(event, Close):
            return protocol.send_close(event.code, event.reason)  # type: ignore[no-any-return]
        return []


def recv_events(sock: socket.socket, client: ClientProtocol, until: type) -> list[Event]:
    """Read from ``sock`` into ``client`` until an event of type ``until`` arrives."""
    events: list[Event] = []
    while not any(isinstance(e, until) for e in events):
        data = sock.recv(65536)
        if not data:
            events.extend(client.receive_eof())
            break
        events.extend(client.receive_data(data))
    return events


def test_seed_custom_server_over_socketpair(capsys: pytest.CaptureFixture[str]) -> None:
    server_sock, client_sock = socket.socketpair()
    client_sock.settimeout(5)
    server_sock.settimeout(5)
    app = CustomWebSocketServer("127.0.0.1", 0)
    thread = threading.Thread(target=app.handle_client, args=(server_sock, "socketpair"), daemon=True)
    thread.start()
    try:
        client = ClientProtocol("ws://localhost:8765/")
        client_sock.sendall(b"".join(client.connect()))
        events = recv_events(client_sock, client, Response)
        assert isinstance(events[0], Response) and events[0].status_code == 101
        assert client.state is State.OPEN

        client_sock.sendall(b"".join(client.send_text("hello é")))
        assert recv_events(client_sock, client, TextMessage) == [TextMessage("Echo: hello é")]
        client_sock.sendall(b"".join(client.send_binary(b"\x00\x01")))
        assert recv_events(client_sock, client, BinaryMessage) == [BinaryMessage(b"Echo: \x00\x01")]
        client_sock.sendall(b"".join(client.send_ping(b"are you there")))
        assert recv_events(client_sock, client, Pong) == [Pong(b"are you there")]
        # A message bigger than one recv(4096).
        big = "x" * 20000
        client_sock.sendall(b"".join(client.send_text(big)))
        assert recv_events(client_sock, client, TextMessage) == [TextMessage("Echo: " + big)]

        client_sock.sendall(b"".join(client.send_close(1000, "bye")))
        assert state_of(client) is State.CLOSING
        assert recv_events(client_sock, client, Close) == [Close(1000, "bye")]
        assert state_of(client) is State.CLOSED
        # The server closes the socket once CLOSED.
        assert recv_events(client_sock, client, ConnectionClosed) == [ConnectionClosed(None)]
        assert client.close_code == 1000
    finally:
        thread.join(5)
        client_sock.close()
    assert not thread.is_alive()
    assert app.errors == []
    out = capsys.readouterr().out
    assert "Protocol error" not in out and "Client error" not in out
    assert "Client disconnected: socketpair" in out


def test_seed_custom_server_reports_protocol_error(capsys: pytest.CaptureFixture[str]) -> None:
    server_sock, client_sock = socket.socketpair()
    client_sock.settimeout(5)
    app = CustomWebSocketServer("127.0.0.1", 0)
    thread = threading.Thread(target=app.handle_client, args=(server_sock, "bad peer"), daemon=True)
    thread.start()
    try:
        client = ClientProtocol("ws://localhost/")
        client_sock.sendall(b"".join(client.connect()))
        recv_events(client_sock, client, Response)
        client_sock.sendall(build_frame(Opcode.TEXT, b"unmasked"))  # RFC 6455 §5.1 violation
        thread.join(5)
    finally:
        client_sock.close()
    assert not thread.is_alive()
    assert "Protocol error: unmasked frame" in capsys.readouterr().out


# -- example 5: a custom extension ---------------------------------------------------------------------------


class SimpleExtension(Extension):
    """Example custom extension (the seed's code, unchanged but for type hints)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def encode(self, frame: Frame) -> Frame:
        """Process outgoing frames."""
        if frame.opcode == 1:  # TEXT frame
            modified_data = f"[{self.name}] ".encode() + frame.data
            return frame._replace(data=modified_data)
        return frame

    def decode(self, frame):  # type: ignore[no-untyped-def,override]  # the seed's signature: no max_size
        """Process incoming frames."""
        if frame.opcode == 1:  # TEXT frame
            prefix = f"[{self.name}] ".encode()
            if frame.data.startswith(prefix):
                modified_data = frame.data[len(prefix):]
                return frame._replace(data=modified_data)
        return frame


def test_seed_extension_example_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    extension = SimpleExtension("MyExt")
    protocol = ClientProtocol()
    print("Extension integration example")
    print(f"Extension name: {extension.name}")
    assert protocol.state is State.CONNECTING
    assert "Extension name: MyExt" in capsys.readouterr().out


def test_seed_extension_example_round_trips_with_bare_protocols() -> None:
    client = Protocol(Side.CLIENT, extensions=[SimpleExtension("MyExt")])
    server = Protocol(Side.SERVER, extensions=[SimpleExtension("MyExt")])
    assert [e.name for e in client.extensions] == ["MyExt"]
    out = server.send_text("hello")
    assert b"[MyExt] hello" in b"".join(out)  # server frames are not masked
    assert client.receive_data(b"".join(out)) == [TextMessage("hello")]
    out = client.send_text("héllo")
    assert parse_frames(out, masked=True)[0].data == "[MyExt] héllo".encode()
    assert server.receive_data(b"".join(out)) == [TextMessage("héllo")]
    # Binary and control frames pass through unchanged.
    assert server.receive_data(b"".join(client.send_binary(b"bin") + client.send_ping(b"p"))) == [
        BinaryMessage(b"bin"), Ping(b"p")]
    assert client.receive_data(b"".join(server.send_close(1000, "done"))) == [Close(1000, "done")]

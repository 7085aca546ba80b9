"""wskit.sync at its edges: failed openings, proxies that misbehave, Unix sockets, closing races.

Real sockets on 127.0.0.1 (or a Unix socket), with hand-driven peers where a
real server would not misbehave.
"""

from __future__ import annotations

import http.client
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_sync import RawPeer, echo, no_leaks, raw_accept, running

from wskit import ClientProtocol, ServerProtocol
from wskit.config import loads
from wskit.events import Request
from wskit.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidHandshake, ProxyError
from wskit.sync import ServerConnection, connect, serve, unix_connect, unix_serve

MiB = 2**20

__all__ = ["no_leaks"]  # the autouse fixture of test_sync: no thread or socket left behind


def answer(raw: bytes, *, reset: bool = False) -> Callable[[socket.socket, RawPeer], None]:
    """A peer that reads the request, writes ``raw``, then closes (with a RST if ``reset``)."""
    def behaviour(sock: socket.socket, peer: RawPeer) -> None:
        sock.recv(65536)
        sock.sendall(raw)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    return behaviour


# -- the opening handshake fails --------------------------------------------------------------------------


def test_a_refusal_whose_body_ends_with_the_connection_is_reported_with_its_status() -> None:
    with RawPeer(answer(b"HTTP/1.1 403 Forbidden\r\n\r\nnot you")) as peer:
        with pytest.raises(InvalidHandshake, match=r"server rejected the WebSocket connection: HTTP 403 Forbidden"
                           ) as info:
            connect(peer.uri, open_timeout=5).open()
    assert info.value.response is not None and info.value.response.body == b"not you"


def test_a_refusal_cut_short_keeps_the_response() -> None:
    with RawPeer(answer(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nnot")) as peer:
        with pytest.raises(InvalidHandshake, match="before the response body was complete") as info:
            connect(peer.uri, open_timeout=5).open()
    assert info.value.response is not None and info.value.response.status_code == 403


def test_a_reset_during_the_handshake_is_1006() -> None:
    with RawPeer(answer(b"", reset=True)) as peer:
        with pytest.raises(ConnectionClosedError, match="connection lost during the opening handshake") as info:
            connect(peer.uri, open_timeout=5).open()
    assert info.value.code == 1006


def test_a_redirect_is_not_followed_on_a_socket_given() -> None:
    with RawPeer(answer(b"HTTP/1.1 302 Found\r\nLocation: ws://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n")
                 ) as peer:
        sock = socket.create_connection(("127.0.0.1", peer.port), timeout=5)
        with pytest.raises(InvalidHandshake, match="HTTP 302 Found"):
            connect(peer.uri, sock=sock, open_timeout=5).open()
        assert sock.fileno() == -1  # closed: it was spent on the refused handshake


def test_an_open_timeout_too_short_for_anything_names_the_step() -> None:
    with pytest.raises(TimeoutError, match=r"timed out after 1e-09 s opening ws://127\.0\.0\.1:1/ \(connecting\)"):
        connect("ws://127.0.0.1:1/", open_timeout=1e-9).open()


def test_no_open_timeout_at_all() -> None:
    with running(echo) as (_, uri), connect(uri, open_timeout=None) as ws:
        ws.send("untimed")
        assert ws.recv(timeout=5) == "untimed"


# -- an HTTP proxy that misbehaves ------------------------------------------------------------------------


def test_a_proxy_closing_before_it_answers_is_a_proxy_error() -> None:
    with RawPeer(answer(b"")) as proxy:
        with pytest.raises(ProxyError, match=rf"127\.0\.0\.1:{proxy.port}"):
            connect("ws://127.0.0.1:9/", proxy=f"http://127.0.0.1:{proxy.port}", open_timeout=5).open()


def test_a_proxy_answer_in_pieces_then_the_tunnel() -> None:
    def tunnel(sock: socket.socket, peer: RawPeer) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += sock.recv(65536)
        assert request.startswith(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\n")
        sock.sendall(b"HTTP/1.1 200 Connection established\r\n")
        sock.sendall(b"\r\n")  # the client reads until the blank line, whatever the pieces
        protocol = raw_accept(sock)  # then the WebSocket server, through the "tunnel"
        sock.sendall(b"".join(protocol.send_text("through")))
        peer.release.wait(5)

    with RawPeer(tunnel) as proxy:
        with connect("ws://127.0.0.1:9/", proxy=f"http://127.0.0.1:{proxy.port}", open_timeout=5) as ws:
            assert ws.recv(timeout=5) == "through"
            proxy.release.set()


# -- unix_connect ----------------------------------------------------------------------------------------


def test_unix_connect_takes_the_uri_and_timeout_from_its_arguments_or_the_configuration(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")

    def where(ws: object) -> None:
        ws.send(ws.request.path)  # type: ignore[attr-defined]

    with unix_serve(where, path) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            config = loads("client: {uri: 'ws://localhost/from-config'}\ntimeouts: {open: 5}\n")
            with unix_connect(path, config=config) as ws:
                assert ws.recv(timeout=5) == "/from-config"
            with unix_connect(path, "ws://localhost/given", open_timeout=5) as ws:
                assert ws.recv(timeout=5) == "/given"
        finally:
            server.shutdown()
            thread.join()


def test_unix_connect_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        unix_connect(str(tmp_path / "nobody-listens.sock")).open()
    with socket.socket() as sock, pytest.raises(TypeError, match=r"use connect\(sock=\.\.\.\)"):
        unix_connect(str(tmp_path / "x.sock"), sock=sock)


# -- the server: arguments, odd answers from the application, shutdown ----------------------------------


def port_of(uri: str) -> int:
    return int(uri.rsplit(":", 1)[1].strip("/"))


def http_get(uri: str) -> tuple[int, str, bytes]:
    client = http.client.HTTPConnection("127.0.0.1", port_of(uri), timeout=5)
    try:
        client.request("GET", "/", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                            "Sec-WebSocket-Version": "13"})
        reply = client.getresponse()
        return reply.status, reply.reason, reply.read()
    finally:
        client.close()


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"host": "127.0.0.1", "port": 0, "sock": "listener"}, "give host and port, unix=, or sock=, not several"),
    ({"port": 0, "unix": "x.sock"}, "give host and port, or unix=, not both"),
    ({"sock": "listener", "reuse_port": True}, r"reuse_port applies to the TCP socket serve\(\) creates"),
    ({}, r"serve\(\) needs a port \(or unix=, or sock=\)"),
])
def test_serve_argument_errors(kwargs: dict[str, Any], error: str) -> None:
    kwargs = dict(kwargs)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        if kwargs.get("sock") == "listener":
            kwargs["sock"] = listener
        with pytest.raises((TypeError, ValueError), match=error):
            serve(echo, **kwargs)


def test_unix_serve_on_a_path_in_use_fails_and_leaks_nothing(tmp_path: Path) -> None:
    path = tmp_path / "taken"
    path.write_text("not a socket")
    with pytest.raises(OSError, match="Address already in use"):
        unix_serve(echo, str(path))
    assert path.read_text() == "not a socket"  # left alone


def test_a_unix_socket_removed_under_the_server_is_not_an_error(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ws.sock"
    server = unix_serve(echo, str(path))
    assert server.fileno() == server.socket.fileno()
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="wskit.sync"):
        server.shutdown()
    assert "could not remove" not in caplog.text


def test_a_file_put_in_place_of_the_unix_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "ws.sock"
    server = unix_serve(echo, str(path))
    path.unlink()
    path.write_text("someone else's")
    server.shutdown()
    assert path.read_text() == "someone else's"


def test_serve_forever_runs_once_and_not_after_shutdown() -> None:
    with running(echo) as (server, uri):
        with connect(uri) as ws:  # answered: serve_forever() is running
            ws.send("up")
            assert ws.recv(timeout=5) == "up"
        with pytest.raises(RuntimeError, match="already running"):
            server.serve_forever()
    server.serve_forever()  # after shutdown(): returns at once


def test_odd_answers_of_process_request_and_process_response(caplog: pytest.LogCaptureFixture) -> None:
    def process_request(ws: ServerConnection, request: Request) -> Any:
        if request.path == "/teapot":
            return ws.respond(599, "custom status\n")  # not a registered status: no reason phrase
        if request.path == "/wrong-type":
            return "OK"
        return None

    def process_response(ws: ServerConnection, request: Request, response: Any) -> Any:
        return 101 if request.path == "/wrong-response" else None

    with running(echo, process_request=process_request, process_response=process_response) as (_, uri), \
            caplog.at_level(logging.ERROR, logger="wskit.sync"):
        with pytest.raises(InvalidHandshake, match=r"HTTP 599 $"):
            connect(uri + "teapot").open()
        for path, hook in [("wrong-type", "process_request"), ("wrong-response", "process_response")]:
            with pytest.raises(InvalidHandshake, match="HTTP 500 Internal Server Error"):
                connect(uri + path).open()
            assert f"{hook} must return a wskit.Response or None, not " in caplog.text
        with connect(uri) as ws:  # the others are accepted
            ws.send("fine")
            assert ws.recv(timeout=5) == "fine"


def test_select_subprotocol_failures_close_the_handshake(caplog: pytest.LogCaptureFixture) -> None:
    def select(protocol: Any, offered: Any) -> str | None:
        if "bug" in offered:
            raise RuntimeError("selector bug")
        return "never-offered"

    with running(echo, subprotocols=["chat"], select_subprotocol=select) as (_, uri), \
            caplog.at_level(logging.ERROR, logger="wskit.sync"):
        with pytest.raises(InvalidHandshake, match="HTTP 500"):
            connect(uri, subprotocols=["chat"]).open()
        assert "cannot accept the request" in caplog.text
        with pytest.raises(ConnectionClosedError, match="opening handshake") as info:
            connect(uri, subprotocols=["bug"]).open()
        assert info.value.code == 1006
    assert "opening handshake failed with an unexpected error" in caplog.text and "selector bug" in caplog.text


@pytest.mark.parametrize("open_timeout", [None, 1e-9])
def test_server_open_timeout_none_or_already_over(open_timeout: float | None) -> None:
    with running(echo, open_timeout=open_timeout) as (_, uri):
        if open_timeout is None:
            with connect(uri) as ws:
                ws.send("no deadline")
                assert ws.recv(timeout=5) == "no deadline"
        else:
            with pytest.raises(ConnectionClosedError) as info:
                connect(uri, open_timeout=5).open()  # the server gave up before reading the request
            assert info.value.code == 1006


def test_a_bad_frame_right_behind_the_request_fails_with_1002() -> None:
    client = ClientProtocol("ws://127.0.0.1/", extensions=[])
    request = b"".join(client.connect())
    with running(echo) as (_, uri), socket.create_connection(("127.0.0.1", port_of(uri)), timeout=5) as sock:
        sock.sendall(request + b"\x8f\x80\x00\x00\x00\x00")  # opcode 0xF: reserved, in the same packet
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, frames = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert frames[:2] == b"\x88\x02" or frames[0] == 0x88  # a Close...
        assert struct.unpack("!H", frames[2:4])[0] == 1002  # ...with 1002 (protocol error)


def test_a_handler_can_use_its_connection_as_a_context_manager_and_stop_the_server() -> None:
    def handler(ws: ServerConnection) -> None:
        with ws as same:
            assert same is ws
            ws.send(ws.recv())
            if ws.request is not None and ws.request.path == "/stop":
                server.shutdown()  # from a handler thread: it does not wait for itself

    with running(handler) as (server, uri):
        with connect(uri + "stop") as ws:
            ws.send("bye")
            assert ws.recv(timeout=5) == "bye"
            with pytest.raises(ConnectionClosedOK):
                ws.recv(timeout=5)


def test_shutdown_is_bounded_by_close_timeout(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    def stubborn(ws: ServerConnection) -> None:
        release.wait(10)  # neither reads nor returns

    with running(stubborn, close_timeout=0.3) as (server, uri):
        raw = socket.create_connection(("127.0.0.1", port_of(uri)), timeout=5)
        raw.sendall(b"".join(ClientProtocol("ws://127.0.0.1/", extensions=[]).connect()))
        assert raw.recv(65536).startswith(b"HTTP/1.1 101 ")
        while not server.connections:  # open on the server side
            time.sleep(0.01)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="wskit.sync"):
            server.shutdown()  # this client never answers the Close, that handler never returns
        assert time.monotonic() - started < 3
        assert "a connection handler did not return after shutdown" in caplog.text
        release.set()
        raw.close()


def test_route_with_basic_auth_and_a_handler_ended_by_the_close() -> None:
    from wskit.sync import basic_auth, route

    def room(ws: ServerConnection, name: str) -> None:
        while True:
            ws.send(f"{name}: {ws.recv()}")  # raises ConnectionClosedOK when the client leaves

    server = route({"/rooms/<name>": room}, "127.0.0.1", 0, process_request=basic_auth(credentials=("u", "p")))
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        uri = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/rooms/blue"
        with pytest.raises(InvalidHandshake, match="HTTP 401"):
            connect(uri).open()
        with connect(uri.replace("ws://", "ws://u:p@")) as ws:
            ws.send("hi")
            assert ws.recv(timeout=5) == "blue: hi"
    finally:
        server.shutdown()
        thread.join()


# -- the connection: closing when the peer does not play along ---------------------------------------------


def test_repr_shows_the_id_and_state() -> None:
    with running(echo) as (_, uri), connect(uri) as ws:
        assert repr(ws) == f"<ClientConnection {ws.id} open>"
    assert repr(ws) == f"<ClientConnection {ws.id} closed>"


def silent_after_handshake(sock: socket.socket, peer: RawPeer) -> None:
    """Accept, then read everything and answer nothing (not even a Close)."""
    raw_accept(sock)
    sock.settimeout(5)
    while not peer.release.is_set() and sock.recv(65536):
        pass


def test_sending_while_a_close_waits_for_the_peer_raises_once_it_is_over(caplog: pytest.LogCaptureFixture) -> None:
    with RawPeer(silent_after_handshake) as peer, caplog.at_level(logging.DEBUG, logger="wskit.sync"):
        ws = connect(peer.uri, close_timeout=0.5)
        closers = [threading.Thread(target=ws.close) for _ in range(2)]  # the second sends no second Close
        for closer in closers:
            closer.start()
        deadline = time.monotonic() + 5
        while ws.protocol.state.name != "CLOSING" and time.monotonic() < deadline:  # our Close is sent
            time.sleep(0.005)
        attempts: list[Callable[[], object]] = [lambda: ws.send("late"), lambda: ws.send(["la", "te"]), ws.ping]
        outcomes: list[BaseException | None] = [None] * len(attempts)

        def attempt(index: int) -> None:
            try:
                attempts[index]()  # waits for the end of the closing, then says how it ended
            except BaseException as exc:
                outcomes[index] = exc

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(attempts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        for outcome in outcomes:  # no answer from the peer: the socket was closed under them
            assert isinstance(outcome, ConnectionClosedError) and outcome.code == 1006, outcome
        for closer in closers:
            closer.join(5)
        peer.release.set()
    assert "! close timeout: closing the socket" in caplog.text


def test_sending_fragments_after_the_close_raises_connection_closed() -> None:
    with running(echo) as (_, uri):
        ws = connect(uri)
        ws.close()
        with pytest.raises(ConnectionClosedOK):
            ws.send(["a", "b"])


@pytest.mark.parametrize("debug", [True, False], ids=["debug-log", "no-debug-log"])
@pytest.mark.parametrize("fragmented", [False, True])
def test_a_reset_under_a_blocked_send_is_1006(fragmented: bool, debug: bool, caplog: pytest.LogCaptureFixture) -> None:
    big = b"x" * (32 * MiB)  # more than the socket buffers hold: the send blocks until the reset

    def read_a_little_then_reset(sock: socket.socket, peer: RawPeer) -> None:
        raw_accept(sock)
        sock.recv(65536)  # the message started
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    level = logging.DEBUG if debug else logging.INFO
    with RawPeer(read_a_little_then_reset) as peer, caplog.at_level(level, logger="wskit.sync"):
        ws = connect(peer.uri, compression=None)
        with pytest.raises(ConnectionClosedError) as info:
            ws.send([big, b"end"] if fragmented else big)
        assert info.value.code == 1006
        with pytest.raises(ConnectionClosedError):
            ws.send("and after")
        ws.close()
    assert ("! write failed" in caplog.text) == debug


def test_a_reset_in_the_middle_of_a_fragmented_message() -> None:
    reset = threading.Event()

    def reset_after_the_first_fragment(sock: socket.socket, peer: RawPeer) -> None:
        raw_accept(sock)
        sock.recv(65536)  # the first fragment
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        reset.set()

    with RawPeer(reset_after_the_first_fragment) as peer:
        ws = connect(peer.uri)

        def parts() -> Iterator[str]:
            yield "one"
            yield "two"  # "one" goes out now (items are read one ahead)
            assert reset.wait(5)
            deadline = time.monotonic() + 5
            while ws.close_code is None and time.monotonic() < deadline:  # the reader saw the reset
                time.sleep(0.005)
            yield "three"

        with pytest.raises(ConnectionClosedError) as info:
            ws.send(parts())
        assert info.value.code == 1006
        ws.close()


@pytest.mark.parametrize("debug", [True, False], ids=["debug-log", "no-debug-log"])
def test_a_peer_that_closes_but_keeps_tcp_open(debug: bool, caplog: pytest.LogCaptureFixture) -> None:
    def close_but_keep_tcp(sock: socket.socket, peer: RawPeer) -> None:
        protocol = raw_accept(sock)
        sock.sendall(b"".join(protocol.send_close(1000, "done")))  # the server closes TCP first... not this one
        peer.release.wait(5)

    level = logging.DEBUG if debug else logging.INFO
    with RawPeer(close_but_keep_tcp) as peer, caplog.at_level(level, logger="wskit.sync"):
        ws = connect(peer.uri, close_timeout=0.3)
        started = time.monotonic()
        assert ws.wait_closed(5)  # the client answered, waited close_timeout for the FIN, then closed
        assert time.monotonic() - started < 3
        assert (ws.close_code, ws.close_reason) == (1000, "done")
        with pytest.raises(ConnectionClosedOK):
            ws.recv()
    assert ("! timed out waiting for the peer to close TCP" in caplog.text) == debug


def test_a_protocol_error_from_the_peer_is_logged_and_closes_with_1002(caplog: pytest.LogCaptureFixture) -> None:
    def reserved_opcode(sock: socket.socket, peer: RawPeer) -> None:
        raw_accept(sock, b"\x83\x00")  # opcode 3: reserved
        peer.release.wait(5)

    with RawPeer(reserved_opcode) as peer, caplog.at_level(logging.DEBUG, logger="wskit.sync"):
        with connect(peer.uri, close_timeout=0.3) as ws, pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert info.value.code == 1002
    assert "! protocol error" in caplog.text


def test_keepalive_without_a_ping_timeout_still_measures_latency() -> None:
    with running(echo) as (_, uri), connect(uri, ping_interval=0.02, ping_timeout=None) as ws:
        deadline = time.monotonic() + 5
        while ws.latency == 0.0 and time.monotonic() < deadline:  # a keepalive Ping was answered
            time.sleep(0.01)
        assert ws.latency > 0.0


def test_a_keepalive_timeout_ends_a_send_blocked_on_a_peer_that_stopped_reading() -> None:
    def stop_reading(sock: socket.socket, peer: RawPeer) -> None:
        raw_accept(sock)
        peer.release.wait(10)

    with RawPeer(stop_reading) as peer:
        ws = connect(peer.uri, compression=None, ping_interval=0.1, ping_timeout=0.3, close_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(ConnectionClosedError) as info:
            ws.send(b"x" * (32 * MiB))  # blocks: the Ping waits behind it, unanswered
        assert time.monotonic() - started < 5
        assert info.value.code == 1011 and "keepalive" in info.value.reason
        ws.close()


def test_a_broadcast_waiting_behind_a_blocked_send_is_dropped_once_the_connection_closes() -> None:
    from wskit.events import BinaryMessage, Close, TextMessage
    from wskit.sync import broadcast

    big = b"x" * (32 * MiB)
    started, closing = threading.Event(), threading.Event()
    received: list[object] = []

    def read_after_the_close(sock: socket.socket, peer: RawPeer) -> None:
        protocol = ServerProtocol(extensions=[], max_size=None)
        while not (events := protocol.receive_data(sock.recv(65536))):
            pass
        sock.sendall(b"".join(protocol.accept(events[0])))  # type: ignore[arg-type]
        received.extend(protocol.receive_data(sock.recv(65536)))
        started.set()  # the big message is on its way; read nothing more for now
        assert closing.wait(10)
        while not any(isinstance(event, Close) for event in received):
            data = sock.recv(1 << 20)
            assert data, "closed before the Close frame"
            received.extend(protocol.receive_data(data))
        sock.sendall(b"".join(protocol.send_close(1000)))

    with RawPeer(read_after_the_close) as peer:
        ws = connect(peer.uri, compression=None, max_size=None, close_timeout=5)
        sender = threading.Thread(target=ws.send, args=(big,))  # holds the writer until the peer reads
        sender.start()
        assert started.wait(10)
        assert broadcast([ws], "after") == []  # handed over: waits behind the big message
        closer = threading.Thread(target=ws.close)
        closer.start()
        deadline = time.monotonic() + 5
        while ws.protocol.state.name != "CLOSING" and time.monotonic() < deadline:  # our Close waits too
            time.sleep(0.005)
        closing.set()
        sender.join(10)
        closer.join(10)
    assert [type(event) for event in received] == [BinaryMessage, Close]  # nothing after our Close
    assert not any(isinstance(event, TextMessage) for event in received)


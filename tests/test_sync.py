"""Tests for wskit.sync: the threaded client and server, over real sockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wskit import ServerProtocol
from wskit import frames as frames_module
from wskit.events import Close, Request
from wskit.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
)
from wskit.sync import Data, ServerConnection, connect, serve, unix_connect, unix_serve

MiB = 2**20


def _fd_count() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # pragma: no cover - not Linux
        return None


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Every test must leave no thread running and no socket open."""
    before = set(threading.enumerate())  # a thread of an earlier test may still be ending: not ours
    fds = _fd_count()
    yield
    deadline = time.monotonic() + 3
    while any(t not in before for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [t for t in threading.enumerate() if t not in before] == []
    if fds is not None:
        while (_fd_count() or 0) > fds and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (_fd_count() or 0) <= fds  # no socket left open


@contextlib.contextmanager
def running(handler: Callable[[ServerConnection], Any], **options: Any) -> Iterator[tuple[Any, str]]:
    """Run a wskit.sync server on 127.0.0.1 in a thread; yield (server, ws URI)."""
    server = serve(handler, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield server, f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
    finally:
        server.shutdown()
        thread.join()


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


class RawPeer:
    """A hand-driven TCP server for one connection: ``behaviour(sock, peer)`` runs in a thread."""

    def __init__(self, behaviour: Callable[[socket.socket, RawPeer], object]) -> None:
        self.behaviour = behaviour
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)
        self.port = self.listener.getsockname()[1]
        self.uri = f"ws://127.0.0.1:{self.port}/"
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        with sock:
            try:
                self.behaviour(sock, self)
            except OSError:
                pass

    def __enter__(self) -> RawPeer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(5)
        assert not self.thread.is_alive()


def raw_accept(sock: socket.socket, extra: bytes = b"") -> ServerProtocol:
    """Answer a client's opening handshake on a raw socket (no extension)."""
    protocol = ServerProtocol(extensions=[])
    while True:
        data = sock.recv(65536)
        assert data, "client closed during the handshake"
        events = protocol.receive_data(data)
        if events:
            break
    assert isinstance(events[0], Request)
    sock.sendall(b"".join(protocol.accept(events[0])) + extra)
    return protocol


# -- data transfer ------------------------------------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
def test_echo_text_binary_and_16_mib(compression: str | None, gathers: list[Any]) -> None:
    big = os.urandom(16 * MiB) if compression is None else bytes(range(256)) * (16 * MiB // 256)
    with running(echo, compression=compression, max_size=None) as (_, uri):
        with connect(uri, compression=compression, max_size=None) as ws:
            assert ws.response is not None
            assert (ws.response.headers.get("Sec-WebSocket-Extensions") is not None) == (compression is not None)
            ws.send("héllo")
            assert ws.recv() == "héllo"
            ws.send(b"\x00\xff")
            assert ws.recv() == b"\x00\xff"
            ws.send(bytearray(b"ba"))
            assert ws.recv() == b"ba"
            ws.send(["frag", "ments"])
            assert ws.recv() == "fragments"
            parts: list[bytes | memoryview] = [b"a", memoryview(b"b")]
            ws.send(iter(parts))
            assert ws.recv() == b"ab"
            ws.send(big)
            assert ws.recv() == big
    if compression is None and frames_module.Gather is not None:
        # Read with recv_into straight into the bytes each side's 16 MiB frame became: no copy.
        assert len(gathers) == 2 and not any(g.copied for g in gathers)


def test_roundtrip_property() -> None:
    with running(echo) as (_, uri), connect(uri) as ws:

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.one_of(st.text(max_size=3000), st.binary(max_size=3000)))
        def check(message: str | bytes) -> None:
            ws.send(message)
            assert ws.recv() == message

        check()


def test_iteration_ends_cleanly_when_the_handler_returns() -> None:
    def handler(ws: ServerConnection) -> None:
        ws.send("one")
        ws.send("two")

    with running(handler) as (_, uri), connect(uri) as ws:
        assert list(ws) == ["one", "two"]  # messages before the close are not lost
        assert ws.close_code == 1000
        with pytest.raises(ConnectionClosedOK):
            ws.recv()
        with pytest.raises(ConnectionClosedOK):
            ws.send("too late")


def test_concurrent_senders_keep_messages_intact() -> None:
    received: list[str | bytes] = []
    done = threading.Event()

    def collect(ws: ServerConnection) -> None:
        try:
            received.extend(ws)
        finally:
            done.set()

    with running(collect, max_queue=4) as (_, uri), connect(uri) as ws:

        def sender(n: int) -> None:
            for i in range(500):
                ws.send(f"{n}:{i}:" + "x" * (i % 97))

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ws.close()
        assert done.wait(5)
    assert len(received) == 2000
    last = {n: -1 for n in range(4)}
    for message in received:
        assert isinstance(message, str)
        n, i, pad = message.split(":")
        assert int(i) == last[int(n)] + 1  # per thread, in order
        assert pad == "x" * (int(i) % 97)
        last[int(n)] = int(i)


# -- handshake options ---------------------------------------------------------


def test_subprotocol_negotiation() -> None:
    seen: list[str | None] = []

    def handler(ws: ServerConnection) -> None:
        seen.append(ws.subprotocol)

    with running(handler, subprotocols=["b", "c"]) as (_, uri):
        with connect(uri, subprotocols=["a", "b"]) as ws:
            assert ws.subprotocol == "b"
            assert list(ws) == []
        with connect(uri, subprotocols=["a"]) as ws:
            assert ws.subprotocol is None
            assert list(ws) == []
    assert seen == ["b", None]

    with running(handler, select_subprotocol=lambda proto, offered: offered[-1]) as (_, uri):
        with connect(uri, subprotocols=["x", "y"]) as ws:
            assert ws.subprotocol == "y"


def test_process_request_health_check_and_401() -> None:
    def process_request(conn: ServerConnection, request: Any) -> Any:
        if request.path == "/healthz":
            return conn.respond(200, "OK\n")
        if request.headers.get("Authorization") != "Bearer s3cret":
            return conn.respond(401, "missing token\n")
        return None

    with running(echo, process_request=process_request) as (_, uri):
        port = int(uri.rsplit(":", 1)[1].strip("/"))
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            client.request("GET", "/healthz")
            reply = client.getresponse()
            assert (reply.status, reply.read()) == (200, b"OK\n")
        finally:
            client.close()
        with pytest.raises(InvalidHandshake) as info:
            connect(uri)
        assert info.value.response is not None
        assert info.value.response.status_code == 401
        assert info.value.response.body == b"missing token\n"
        with connect(uri, extra_headers={"Authorization": "Bearer s3cret"}) as ws:
            ws.send("in")
            assert ws.recv() == "in"


def test_process_request_failure_gives_500(caplog: pytest.LogCaptureFixture) -> None:
    def process_request(conn: ServerConnection, request: Any) -> Any:
        raise RuntimeError("boom")

    with running(echo, process_request=process_request) as (_, uri):
        handle = connect(uri)  # a 500 may pass: kept for a reconnecting iteration, raised by the first use
        with caplog.at_level(logging.ERROR, logger="wskit.sync"), pytest.raises(InvalidHandshake) as info:
            handle.open()
    assert info.value.response is not None and info.value.response.status_code == 500
    assert "process_request failed" in caplog.text


def test_plain_http_request_gets_426() -> None:
    with running(echo) as (_, uri):
        port = int(uri.rsplit(":", 1)[1].strip("/"))
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            client.request("GET", "/")
            reply = client.getresponse()
            reply.read()
            assert reply.status == 426
        finally:
            client.close()


def test_origins_403() -> None:
    with running(echo, origins=["https://good.example"]) as (_, uri):
        with pytest.raises(InvalidHandshake) as info:
            connect(uri, origin="https://evil.example")
        assert info.value.response is not None and info.value.response.status_code == 403
        with connect(uri, origin="https://good.example") as ws:
            ws.send("ok")
            assert ws.recv() == "ok"


def test_leftover_frame_after_101_is_not_lost() -> None:
    with RawPeer(lambda sock, peer: (raw_accept(sock, b"\x81\x05hello"), peer.release.wait(5))) as peer:
        with connect(peer.uri, close_timeout=0.2) as ws:
            assert ws.recv(timeout=5) == "hello"


def test_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")
    server = unix_serve(echo, path)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        with unix_connect(path) as ws:
            ws.send("over unix")
            assert ws.recv() == "over unix"
    finally:
        server.shutdown()
        thread.join()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def test_tls(certificate: tuple[str, str]) -> None:
    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=cert)
    with running(echo, ssl=server_ctx) as (_, uri):
        with connect(uri.replace("ws://", "wss://"), ssl=client_ctx) as ws:
            ws.send("secret")
            assert ws.recv() == "secret"
            ws.send(os.urandom(MiB))
            assert len(ws.recv()) == MiB
        assert ws.close_code == 1000
        with pytest.raises(ValueError, match="wss://"):
            connect(uri, ssl=client_ctx)


# -- ping / pong -------------------------------------------------------------------


def test_pong_queued_behind_a_blocked_send_follows_it() -> None:
    # The client stops reading (max_queue=1) so the server's second big send
    # blocks holding the writer token; the Pong answering our Ping waits in
    # the pending list and goes out right after that message.
    big = [os.urandom(64) * (16 * MiB // 64) for _ in range(2)]

    def send_two(ws: ServerConnection) -> None:
        for message in big:
            ws.send(message)
        ws.recv()  # until the client closes

    with running(send_two, compression=None, max_size=None) as (_, uri):
        with connect(uri, compression=None, max_size=None, max_queue=1) as ws:
            time.sleep(0.2)  # let the server block in its second send (not needed to pass)
            pong = ws.ping()
            assert ws.recv(timeout=10) == big[0]
            assert ws.recv(timeout=10) == big[1]
            assert pong.wait(10)
            ws.send("bye")


# -- closing -----------------------------------------------------------------------


def test_handler_exception_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    def broken(ws: ServerConnection) -> None:
        raise RuntimeError("handler bug")

    with caplog.at_level(logging.ERROR, logger="wskit.sync"), running(broken) as (_, uri), connect(uri) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv()
        assert info.value.code == 1011
    assert "connection handler failed" in caplog.text
    assert "handler bug" in caplog.text


def test_shutdown_closes_connections_with_1001() -> None:
    server = serve(echo, "127.0.0.1", 0, close_timeout=2)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        ws = connect(f"ws://127.0.0.1:{server.socket.getsockname()[1]}/")
        ws.send("x")
        assert ws.recv() == "x"
        assert len(server.connections) == 1
        started = time.monotonic()
        server.shutdown()
        assert time.monotonic() - started < 2
        with pytest.raises(ConnectionClosedOK) as info:
            ws.recv()
        assert info.value.code == 1001
        ws.close()
    finally:
        server.shutdown()
        thread.join()


# -- faults ----------------------------------------------------------------------


def test_open_timeout_against_a_silent_peer() -> None:
    with RawPeer(lambda sock, peer: peer.release.wait(5)) as peer:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            connect(peer.uri, open_timeout=0.3).open()
        assert time.monotonic() - started < 2


def test_server_open_timeout_drops_a_silent_client() -> None:
    with running(echo, open_timeout=0.2) as (_, uri):
        port = int(uri.rsplit(":", 1)[1].strip("/"))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            assert sock.recv(10) == b""  # closed by the server, without an answer


def test_eof_mid_handshake() -> None:
    def half_response(sock: socket.socket, peer: RawPeer) -> None:
        sock.recv(65536)
        sock.sendall(b"HTTP/1.1 101 Switching")

    with RawPeer(half_response) as peer:
        with pytest.raises(ConnectionClosedError) as info:
            connect(peer.uri).open()
        assert info.value.code == 1006

    # The server survives a client that leaves mid-request, and keeps serving.
    with running(echo) as (_, uri):
        port = int(uri.rsplit(":", 1)[1].strip("/"))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        with connect(uri) as ws:
            ws.send("fine")
            assert ws.recv() == "fine"


def test_eof_mid_frame() -> None:
    def truncated(sock: socket.socket, peer: RawPeer) -> None:
        raw_accept(sock, b"\x82\x7e\x01\x00" + b"x" * 10)  # 256-byte frame, 10 bytes sent

    with RawPeer(truncated) as peer, connect(peer.uri) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert info.value.code == 1006
        with pytest.raises(ConnectionClosedError):
            ws.send("nobody listens")


def test_connection_reset() -> None:
    def reset(sock: socket.socket, peer: RawPeer) -> None:
        raw_accept(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # sends RST

    with RawPeer(reset) as peer, connect(peer.uri) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert info.value.code == 1006


def test_configuration_file_options() -> None:
    config_module = pytest.importorskip("wskit.config")
    server_config = config_module.loads("compression: false\nsubprotocols: [chat]\n")
    client_config = config_module.loads("compression: false\n")
    with running(echo, config=server_config) as (_, uri):
        with connect(uri, subprotocols=["chat"], config=client_config) as ws:
            assert ws.subprotocol == "chat"
            assert ws.response is not None
            assert "permessage-deflate" not in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
            ws.send("configured")
            assert ws.recv() == "configured"
        # explicit arguments win over the file
        with connect(uri, compression="deflate", config=client_config) as ws:
            assert ws.response is not None
            # the server declines
            assert "permessage-deflate" not in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")


def test_sync_connect_sends_the_user_agent_given() -> None:
    def handler(ws: ServerConnection) -> None:
        # Each connection hears its own User-Agent back: no order between handler threads to rely on.
        ws.send(ws.request.headers.get("User-Agent", "(none)") if ws.request else "(no request)")

    with running(handler) as (_, uri):
        with connect(uri, user_agent="probe/1.0") as ws:
            assert ws.recv() == "probe/1.0"
        with connect(uri, user_agent=None) as ws:
            assert ws.recv() == "(none)"


# -- the receive queue: hand-over between the reader and recv() ----------------


def test_recv_from_several_threads_hands_every_message_over_once() -> None:
    count = 3000

    def burst(ws: ServerConnection) -> None:
        for i in range(count):
            ws.send(str(i))
            if i % 250 == 0:
                time.sleep(0.005)  # let the receivers block on an empty queue now and then

    with running(burst, compression=None) as (_, uri), connect(uri, compression=None, max_queue=4) as ws:
        got: list[list[Data]] = [[] for _ in range(4)]

        def receive(index: int) -> None:
            with contextlib.suppress(ConnectionClosedOK):
                while True:
                    # Some threads poll with short timeouts, others wait forever.
                    try:
                        got[index].append(ws.recv(timeout=0.001 if index % 2 else None))
                    except TimeoutError:
                        pass

        threads = [threading.Thread(target=receive, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
            assert not t.is_alive()
    everything = [m for part in got for m in part]
    assert sorted(everything, key=int) == [str(i) for i in range(count)]  # each exactly once
    for part in got:
        assert part == sorted(part, key=int)  # one thread sees them in order


def test_messages_and_close_in_one_read_arrive_in_order() -> None:
    def peer(sock: socket.socket, _: RawPeer) -> None:
        protocol = raw_accept(sock)
        frames = [protocol.send_text(f"m{i}") for i in range(3)] + [protocol.send_close(1000, "bye")]
        sock.sendall(b"".join(b"".join(f) for f in frames))
        while not any(isinstance(e, Close) for e in protocol.receive_data(sock.recv(65536))):
            pass  # then close TCP first, as a server does

    with RawPeer(peer) as peer_, connect(peer_.uri, compression=None) as ws:
        assert [ws.recv(timeout=5) for _ in range(3)] == ["m0", "m1", "m2"]
        with pytest.raises(ConnectionClosedOK) as info:
            ws.recv(timeout=5)
        assert (info.value.code, info.value.reason) == (1000, "bye")


def test_close_releases_a_reader_waiting_for_queue_room() -> None:
    # The handler never reads: the reader stops at max_queue. close() must
    # let it read on to the client's answering Close, which makes the close
    # clean on the server's side too, and at once: with our Close sent, the
    # unread messages are no reason to hold the end of TCP (close_timeout is
    # long here, and the test would time out waiting for it).
    sent = threading.Event()
    codes: list[int | None] = []

    def lazy(ws: ServerConnection) -> None:
        sent.wait(10)
        ws.close(1000, "done")
        codes.append(ws.close_code)

    with running(lazy, max_queue=1, compression=None, close_timeout=30) as (_, uri):
        with connect(uri, compression=None) as ws:
            for i in range(50):
                ws.send(f"unread {i}")
            sent.set()
            with pytest.raises(ConnectionClosedOK):
                ws.recv(timeout=10)
            assert ws.close_code == 1000
    assert codes == [1000]


def test_recv_returns_queued_messages_after_a_full_queue() -> None:
    release = threading.Event()
    received: list[Data] = []

    def slow(ws: ServerConnection) -> None:
        release.wait(10)
        received.extend(ws)

    with running(slow, max_queue=2, compression=None) as (_, uri):
        with connect(uri, compression=None) as ws:
            for i in range(200):
                ws.send(f"{i}")
            release.set()
    assert received == [f"{i}" for i in range(200)]

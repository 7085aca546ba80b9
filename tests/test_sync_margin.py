"""wskit.sync where the operating system or an extension fails: out of file
descriptors, an extension that raises during a broadcast, writes to a peer
that reset the connection while the reader was held back.

Real sockets on 127.0.0.1, hand-driven peers where a real one would not
misbehave, and a subprocess where the file limit is lowered.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_sync import RawPeer, certificate, no_leaks, raw_accept, running

from wskit.exceptions import ConnectionClosedError, ConnectionClosedOK, ProtocolError
from wskit.extensions.base import ClientExtensionFactory, Extension, ExtensionParameter, ServerExtensionFactory
from wskit.frames import Frame
from wskit.sync import ServerConnection, broadcast, connect, serve, unix_serve

# no_leaks: the autouse fixture of test_sync (no thread or socket left behind); certificate: a TLS one.
__all__ = ["certificate", "no_leaks"]

# The server runs in a subprocess whose file limit is then used up: every
# accept() fails with EMFILE until the script frees descriptors.
OUT_OF_FDS = textwrap.dedent("""
    import logging, os, resource, sys, threading
    from wskit.sync import serve

    errors = []
    listening = threading.Event()
    failed = threading.Event()

    class Errors(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("server listening"):
                listening.set()
            if record.getMessage().startswith("accept() failed"):
                errors.append(record.getMessage())
                failed.set()

    logging.getLogger("wskit").addHandler(Errors())
    logging.getLogger("wskit").setLevel(logging.INFO)

    def echo(ws):
        for message in ws:
            ws.send(message)

    server = serve(echo, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    assert listening.wait(30)  # (its selectors are made)
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    fillers = []
    try:
        while True:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    print(server.socket.getsockname()[1], flush=True)
    assert failed.wait(30), "accept() did not fail"
    for fd in fillers:
        os.close(fd)
    sys.stdin.readline()  # the client is done
    server.shutdown()
    thread.join()
    print(len(errors), errors[0], flush=True)
""")


def test_out_of_file_descriptors_pauses_accepting_then_serves_the_waiting_client() -> None:
    proc = subprocess.Popen([sys.executable, "-c", OUT_OF_FDS], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        # Accepted by the kernel (backlog), then by the server once it has descriptors again.
        with connect(f"ws://127.0.0.1:{port}/", open_timeout=30) as ws:
            ws.send("still served")
            assert ws.recv(timeout=30) == "still served"
        proc.stdin.write("done\n")
        proc.stdin.flush()
        count, message = proc.stdout.readline().split(" ", 1)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Too many open files" in message and "accepting again in" in message
    # A spinning accept loop logs thousands of errors before the descriptors
    # come back; a paused one logs one per pause.
    assert 1 <= int(count) <= 5


# -- an extension that raises while a message is built ---------------------------


class Boom(Extension):
    """Raises on the message b"boom" (a bug in an extension)."""

    name = "x-boom"

    def encode(self, frame: Frame) -> Frame:
        if frame.data == b"boom":
            raise RuntimeError("secret detail of the bug")
        return frame


class BoomClient(ClientExtensionFactory):
    name = "x-boom"

    def process_response_params(self, params: Any, accepted_extensions: Any) -> Extension:
        return Extension()  # the client side does nothing


class BoomServer(ServerExtensionFactory):
    name = "x-boom"

    def process_request_params(self, params: Any, accepted_extensions: Any) -> tuple[list[ExtensionParameter],
                                                                                   Extension]:
        return [], Boom()


def assert_failed_with_1011(ws: Any) -> None:
    with pytest.raises(ConnectionClosedError) as info:
        ws.recv(timeout=10)
    assert (info.value.code, info.value.reason) == (1011, "internal error")  # the bug's text stays on the server


def test_send_through_an_extension_that_raises_fails_the_connection_with_1011(
        caplog: pytest.LogCaptureFixture) -> None:
    raised: list[BaseException] = []

    def handler(ws: ServerConnection) -> None:
        try:
            ws.send(b"boom")
        except ProtocolError as exc:
            raised.append(exc)
        for _ in ws:
            pass

    with caplog.at_level(logging.ERROR), running(handler, extensions=[BoomServer()]) as (_, uri):
        with connect(uri, extensions=[BoomClient()]) as ws:
            assert_failed_with_1011(ws)
    assert len(raised) == 1 and "x-boom" in str(raised[0])
    assert any("x-boom" in r.getMessage() and "1011" in r.getMessage() for r in caplog.records)  # logged, named


@pytest.mark.parametrize("parts", [[b"boom", b"never sent"], [b"sent ", b"boom", b"never sent"]],
                         ids=["first-fragment", "a-continuation"])
def test_a_fragmented_send_an_extension_fails_closes_with_1011(parts: list[bytes]) -> None:
    raised: list[BaseException] = []

    def handler(ws: ServerConnection) -> None:
        try:
            ws.send(iter(parts))
        except ProtocolError as exc:
            raised.append(exc)
        for _ in ws:
            pass

    with running(handler, extensions=[BoomServer()]) as (_, uri):
        with connect(uri, extensions=[BoomClient()]) as ws:
            assert_failed_with_1011(ws)
    assert len(raised) == 1 and "x-boom" in str(raised[0])


def test_a_broadcast_an_extension_fails_closes_that_connection_with_1011_and_reaches_the_others() -> None:
    opened = threading.Semaphore(0)

    def handler(ws: ServerConnection) -> None:
        opened.release()
        for _ in ws:
            pass

    with running(handler, extensions=[BoomServer()]) as (server, uri):
        with connect(uri, extensions=[BoomClient()]) as failing, connect(uri) as plain:
            assert opened.acquire(timeout=10) and opened.acquire(timeout=10)
            assert broadcast(server.connections, b"boom") == []  # the failed one is not open any more
            assert plain.recv(timeout=10) == b"boom"
            assert_failed_with_1011(failing)


def test_a_broadcast_waiting_behind_a_fragmented_send_an_extension_fails_closes_with_1011() -> None:
    holding = threading.Event()
    go = threading.Event()

    def parts() -> Iterator[bytes]:
        yield b"first "
        holding.set()  # (the next part is read with the writer token held)
        go.wait(10)
        yield b"second"

    def handler(ws: ServerConnection) -> None:
        ws.send(parts())
        for _ in ws:
            pass

    with running(handler, extensions=[BoomServer()]) as (server, uri):
        with connect(uri, extensions=[BoomClient()]) as ws:
            assert holding.wait(10)
            assert broadcast(server.connections, b"fine") == []  # both wait behind the fragmented message
            assert broadcast(server.connections, b"boom") == []
            go.set()
            assert ws.recv(timeout=10) == b"first second"
            assert ws.recv(timeout=10) == b"fine"
            assert_failed_with_1011(ws)


# -- writes that fail on the reader thread -----------------------------------------

TCP_CLOSE = 7  # tcpi_state of a connection reset by the peer (Linux)


def wait_reset(sock: socket.socket) -> None:
    """Wait until the kernel has taken the peer's RST on ``sock`` (its TCP state is CLOSE)."""
    deadline = time.monotonic() + 10
    while sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] != TCP_CLOSE:
        assert time.monotonic() < deadline, "the reset did not arrive"
        time.sleep(0.001)


def reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="needs TCP_INFO (Linux) to see the reset arrive")
@pytest.mark.parametrize("last", ["ping", "close"])
def test_the_reader_answering_a_peer_that_reset_delivers_the_messages_then_reports_the_end(last: str) -> None:
    go = threading.Event()

    def behaviour(sock: socket.socket, peer: RawPeer) -> None:
        protocol = raw_accept(sock)
        sock.sendall(b"".join(protocol.send_text("a") + protocol.send_text("b")))  # one read for the reader
        go.wait(10)
        sock.sendall(b"".join(protocol.send_ping(b"p") if last == "ping" else protocol.send_close(1000)))
        reset(sock)

    with RawPeer(behaviour) as peer:
        # max_queue=1: with "b" queued, the reader does not read the socket.
        with connect(peer.uri, max_queue=1, close_timeout=10) as ws:
            assert ws.recv(timeout=10) == "a"
            go.set()
            wait_reset(ws.socket)
            assert ws.recv(timeout=10) == "b"  # the reader reads the last frame, its answer fails
            # Lost (1006) after a Ping; after a Close, the peer's code (it did close).
            with pytest.raises(ConnectionClosedError if last == "ping" else ConnectionClosedOK) as info:
                ws.recv(timeout=10)
            assert info.value.code == (1006 if last == "ping" else 1000)


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="needs TCP_INFO (Linux) to see the reset arrive")
def test_a_fragmented_send_to_a_peer_that_reset_raises_1006_and_keeps_the_messages() -> None:
    def behaviour(sock: socket.socket, peer: RawPeer) -> None:
        protocol = raw_accept(sock)
        sock.sendall(b"".join(protocol.send_text("a") + protocol.send_text("b")))  # one read for the reader
        peer.release.wait(10)
        reset(sock)

    # max_queue=1: with "b" queued, the reader does not read the socket, so
    # the reset is met by the write of the fragment.
    with RawPeer(behaviour) as peer, connect(peer.uri, max_queue=1, close_timeout=1) as ws:
        assert ws.recv(timeout=10) == "a"

        def parts() -> Iterator[str]:
            yield "first"
            peer.release.set()  # (read with the writer token held, before "first" is written)
            wait_reset(ws.socket)
            yield "second"

        with pytest.raises(ConnectionClosedError) as info:
            ws.send(parts())
        assert info.value.code == 1006
        assert isinstance(info.value.__cause__, OSError), repr(info.value.__cause__)  # the write met the reset
        assert ws.recv(timeout=10) == "b"
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=10)


def test_a_handler_leaving_its_with_block_by_an_exception_closes_with_1011() -> None:
    def handler(ws: ServerConnection) -> None:
        with ws:
            raise RuntimeError("the application's bug")

    with running(handler) as (_, uri), connect(uri) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=10)
        assert (info.value.code, info.value.reason) == (1011, "internal error")


def test_a_broadcast_reaches_tls_connections(certificate: tuple[str, str]) -> None:
    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    opened = threading.Semaphore(0)

    def handler(ws: ServerConnection) -> None:
        opened.release()
        for _ in ws:
            pass

    with running(handler, ssl=server_ctx) as (server, uri):
        client_ctx = ssl.create_default_context(cafile=cert)
        with connect(uri.replace("ws://", "wss://"), ssl=client_ctx) as ws:
            assert opened.acquire(timeout=10)
            assert broadcast(server.connections, "to everyone, encrypted") == []
            assert ws.recv(timeout=10) == "to everyone, encrypted"


# -- the listening socket ------------------------------------------------------------


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


def test_serve_on_a_socket_the_application_made() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    server = serve(echo, sock=listener)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        assert server.socket is listener
        with connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/") as ws:
            ws.send("on my socket")
            assert ws.recv(timeout=10) == "on my socket"
    finally:
        server.shutdown()
        thread.join()
    assert listener.fileno() == -1  # the server closed it


def test_a_unix_socket_that_cannot_be_removed_is_logged_not_raised(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    server = unix_serve(echo, str(folder / "ws.sock"))
    folder.rename(tmp_path / "moved")
    folder.write_text("not a directory any more")  # the path now fails with ENOTDIR
    with caplog.at_level(logging.WARNING, logger="wskit.sync"):
        server.shutdown()
    assert f"could not remove the Unix socket {folder / 'ws.sock'}" in caplog.text
    assert (tmp_path / "moved" / "ws.sock").is_socket()  # left where it went


# serve() creates the listening socket, then the server fails for want of
# descriptors: the listening socket is closed again.
NO_FD_FOR_THE_SERVER = textwrap.dedent("""
    import os, resource
    from wskit.sync import serve

    resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    fillers = []
    try:
        while True:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    os.close(fillers.pop())  # one descriptor free: the listening socket's
    try:
        serve(print, "127.0.0.1", 0)
    except OSError as exc:
        print("raised", exc.errno)
    fillers.append(os.open(os.devnull, os.O_RDONLY))  # free again: nothing leaked
    try:
        os.open(os.devnull, os.O_RDONLY)
    except OSError:
        print("exactly one free")
    for fd in fillers:
        os.close(fd)
""")


def test_serve_out_of_descriptors_raises_and_closes_its_listening_socket() -> None:
    result = subprocess.run([sys.executable, "-c", NO_FD_FOR_THE_SERVER], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == [f"raised {errno.EMFILE}", "exactly one free"]

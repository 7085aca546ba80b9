"""Tests for wskit.asyncio: real sockets on 127.0.0.1, wskit client <-> wskit server,
and raw peers (built on the sans-I/O core) that misbehave on purpose."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from wskit import ClientProtocol, Response, ServerProtocol
from wskit.asyncio import (
    ConcurrencyError,
    ConnectionClosedError,
    ConnectionClosedOK,
    ServerConnection,
    connect,
    serve,
    unix_connect,
    unix_serve,
)
from wskit.exceptions import InvalidHandshake, InvalidURI
from wskit.frames import Opcode, parse_close
from wskit.headers import Headers

from helpers import client_frame, close_payload, parse_frames, server_frame

HOST = "127.0.0.1"


# -- helpers -------------------------------------------------------------------


def arun(coro: Coroutine[Any, Any, Any], timeout: float = 15) -> Any:
    """Run ``coro`` in a fresh loop; fail on a hang or on tasks left behind."""

    async def main() -> Any:
        result = await asyncio.wait_for(coro, timeout)
        for _ in range(5):  # let close callbacks run
            await asyncio.sleep(0)
        others = asyncio.all_tasks() - {asyncio.current_task()}
        assert not others, f"leaked tasks: {others}"
        return result

    return asyncio.run(main())


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def until(condition: Callable[[], bool], timeout: float = 5) -> None:
    """Wait, one loop iteration at a time, until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0)


def port_of(server: Any) -> int:
    return int(server.sockets[0].getsockname()[1])


def url(server: Any, path: str = "/") -> str:
    return f"ws://{HOST}:{port_of(server)}{path}"


class RawServer:
    """A TCP server on 127.0.0.1 running ``handler(reader, writer)`` per connection."""

    def __init__(self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> None:
        self.handler = handler
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> RawServer:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)
            task = asyncio.current_task()
            assert task is not None
            self.tasks.add(task)
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                self.tasks.discard(task)

        self.server = await asyncio.start_server(run, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=1)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self.server.wait_closed()


async def idle(writer: asyncio.StreamWriter) -> None:
    """Do nothing (read nothing) until the test tears the connection down."""
    while not writer.transport.is_closing():
        await asyncio.sleep(0.01)


async def raw_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> ServerProtocol:
    """Answer a WebSocket upgrade with the sans-I/O core (no extensions)."""
    server = ServerProtocol(extensions=[])
    head = await reader.readuntil(b"\r\n\r\n")
    events = server.receive_data(head)
    writer.write(b"".join(server.accept(events[0])))
    await writer.drain()
    return server


async def raw_connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, ClientProtocol]:
    """Open a WebSocket connection with the sans-I/O core over raw streams (no extensions)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    client = ClientProtocol(f"ws://{HOST}:{port}/", extensions=[])
    writer.write(b"".join(client.connect()))
    head = await reader.readuntil(b"\r\n\r\n")
    events = client.receive_data(head)
    assert isinstance(events[0], Response)
    return reader, writer, client


async def read_close(reader: asyncio.StreamReader, *, masked: bool) -> tuple[int, str]:
    """Read frames until a Close frame; return its code and reason."""
    data = b""
    while True:
        chunk = await reader.read(65536)
        assert chunk, f"EOF before a Close frame; got {data!r}"
        data += chunk
        try:
            frames = parse_frames(data, masked=masked)
        except BaseException:  # incomplete: read more
            continue
        for frame in frames:
            if frame.opcode == Opcode.CLOSE:
                return parse_close(frame.data)


# -- messages ------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
def test_echo_text_and_binary_up_to_16_mib(compression: str | None) -> None:
    big = bytes(range(256)) * (16 * 4096)  # 16 MiB
    text = "héllo wörld ✓ " * 1000

    async def main() -> None:
        async with serve(echo, HOST, 0, compression=compression, max_size=None) as server:
            async with connect(url(server), compression=compression, max_size=None) as ws:
                assert bool(ws.protocol.extensions) is (compression is not None)
                for message in ("", "hello", text, b"", b"\x00\xff" * 10, big):
                    await ws.send(message)
                    answer = await ws.recv()
                    assert type(answer) is type(message)
                    assert answer == message
                await ws.send(bytearray(b"ba"))
                assert await ws.recv() == b"ba"
                await ws.send(memoryview(b"mv"))
                assert await ws.recv() == b"mv"

    arun(main(), timeout=30)


def test_subprotocols_and_select_subprotocol() -> None:
    async def main() -> None:
        async with serve(echo, HOST, 0, subprotocols=["chat", "superchat"]) as server:
            async with connect(url(server), subprotocols=["superchat", "chat"]) as ws:
                assert ws.subprotocol == "chat"  # the server's preference order
            async with connect(url(server), subprotocols=["other"]) as ws:
                assert ws.subprotocol is None

        seen: list[Any] = []

        def select(conn: ServerConnection, offered: Any) -> str | None:
            seen.append((type(conn).__name__, list(offered)))
            return offered[-1] if offered else None

        async with serve(echo, HOST, 0, select_subprotocol=select) as server:
            async with connect(url(server), subprotocols=["a", "b"]) as ws:
                assert ws.subprotocol == "b"
        assert seen == [("ServerConnection", ["a", "b"])]

    arun(main())


def test_pending_ping_fails_when_connection_closes() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_accept(reader, writer)
        await reader.read(1000)  # the ping
        writer.transport.abort()

    async def main() -> None:
        async with RawServer(handler) as raw:
            ws = await connect(f"ws://{HOST}:{raw.port}/", compression=None)
            waiter = await ws.ping()
            with pytest.raises(ConnectionClosedError) as info:
                await waiter
            assert info.value.code == 1006

    arun(main())


# -- closing -------------------------------------------------------------------


def test_handler_error_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(ws: ServerConnection) -> None:
        raise RuntimeError("boom in handler")

    async def main() -> None:
        async with serve(handler, HOST, 0) as server:
            async with connect(url(server)) as ws:
                await ws.wait_closed()
                assert ws.close_code == 1011

    with caplog.at_level(logging.ERROR, logger="wskit.server"):
        arun(main())
    assert any("connection handler failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_server_close_sends_1001_and_waits() -> None:
    async def main() -> None:
        server = await serve(echo, HOST, 0)
        address = url(server)
        clients = [await connect(url(server)) for _ in range(3)]
        assert len(server.connections) == 3
        server.close()
        await server.wait_closed()
        for ws in clients:
            with pytest.raises(ConnectionClosedOK) as info:
                await ws.recv()
            assert info.value.code == 1001
        assert not server.connections and not server.is_serving()
        with pytest.raises(OSError):
            await connect(address, open_timeout=2)

    arun(main())


# -- opening handshake ---------------------------------------------------------


def test_process_request_health_check_and_401() -> None:
    def process_request(conn: ServerConnection, request: Any) -> Response | None:
        if request.path == "/healthz":
            return conn.respond(200, "OK\n")
        if request.headers.get("Authorization") != "Bearer good":
            return Response(401, "Unauthorized", Headers([("WWW-Authenticate", "Bearer")]), b"no token\n")
        return None

    handled: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        handled.append(ws.request.path if ws.request else "")
        await echo(ws)

    async def main() -> None:
        async with serve(handler, HOST, 0, process_request=process_request) as server:
            # A plain HTTP request, no upgrade at all.
            reader, writer = await asyncio.open_connection(HOST, port_of(server))
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await reader.read()
            writer.close()
            await writer.wait_closed()
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nOK\n")
            # A WebSocket upgrade answered with 200 by process_request.
            with pytest.raises(InvalidHandshake) as info:
                await connect(url(server, "/healthz"))
            assert info.value.response is not None and info.value.response.status_code == 200
            # Refused with 401.
            with pytest.raises(InvalidHandshake) as info:
                await connect(url(server, "/private"))
            response = info.value.response
            assert response is not None and response.status_code == 401
            assert response.headers["WWW-Authenticate"] == "Bearer" and response.body == b"no token\n"
            # Accepted.
            async with connect(url(server, "/private"), extra_headers={"Authorization": "Bearer good"}) as ws:
                await ws.send("in")
                assert await ws.recv() == "in"
        assert handled == ["/private"]

    arun(main())


def test_async_process_request_and_invalid_requests() -> None:
    async def process_request(conn: ServerConnection, request: Any) -> Response | None:
        await asyncio.sleep(0)
        return conn.respond(418, "teapot\n") if request.path == "/tea" else None

    async def main() -> None:
        async with serve(echo, HOST, 0, process_request=process_request) as server:
            with pytest.raises(InvalidHandshake) as info:
                await connect(url(server, "/tea"))
            assert info.value.response is not None and info.value.response.status_code == 418
            async with connect(url(server, "/other")) as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
            # Plain HTTP that process_request does not answer: 426 from the core.
            reader, writer = await asyncio.open_connection(HOST, port_of(server))
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await reader.read()
            writer.close()
            await writer.wait_closed()
            assert answer.startswith(b"HTTP/1.1 426 ")
        async with serve(echo, HOST, 0) as server:
            reader, writer = await asyncio.open_connection(HOST, port_of(server))
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            answer = await reader.read()
            writer.close()
            await writer.wait_closed()
            assert answer.startswith(b"HTTP/1.1 400 ")

    arun(main())


def test_process_request_error_gives_500(caplog: pytest.LogCaptureFixture) -> None:
    def process_request(conn: ServerConnection, request: Any) -> Response | None:
        raise ValueError("bug")

    async def main() -> None:
        async with serve(echo, HOST, 0, process_request=process_request) as server:
            with pytest.raises(InvalidHandshake) as info:
                await connect(url(server))
            assert info.value.response is not None and info.value.response.status_code == 500

    with caplog.at_level(logging.ERROR, logger="wskit.server"):
        arun(main())
    assert any("opening handshake failed" in r.getMessage() for r in caplog.records)


def test_origins_403() -> None:
    async def main() -> None:
        async with serve(echo, HOST, 0, origins=["https://good.example"]) as server:
            async with connect(url(server), origin="https://good.example") as ws:
                await ws.send("ok")
                assert await ws.recv() == "ok"
            with pytest.raises(InvalidHandshake) as info:
                await connect(url(server), origin="https://evil.example")
            assert info.value.response is not None and info.value.response.status_code == 403
            with pytest.raises(InvalidHandshake) as info:
                await connect(url(server))  # no Origin
            assert info.value.response is not None and info.value.response.status_code == 403

    arun(main())


def test_open_timeout_against_silent_tcp_peer() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await idle(writer)

    async def main() -> None:
        async with RawServer(handler) as raw:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await connect(f"ws://{HOST}:{raw.port}/", open_timeout=0.2)
            assert time.monotonic() - started < 2

    arun(main())


def test_slow_loris_client_loses_its_slot_after_open_timeout() -> None:
    async def main() -> None:
        async with serve(echo, HOST, 0, open_timeout=0.2) as server:
            reader, writer = await asyncio.open_connection(HOST, port_of(server))
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes
            await until(lambda: len(server._connections) == 1)  # the server accepted it: it holds a slot
            assert not server.connections  # though not open
            started = time.monotonic()
            assert await reader.read() == b""  # the server hung up
            assert time.monotonic() - started < 2
            writer.close()
            await writer.wait_closed()
            await until(lambda: not server._connections)

    arun(main())


def test_client_handshake_failures() -> None:
    async def partial(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
        await writer.drain()
        writer.close()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        await idle(writer)

    async def main() -> None:
        async with RawServer(partial) as raw:
            with pytest.raises((ConnectionClosedError, InvalidHandshake)) as info:
                await connect(f"ws://{HOST}:{raw.port}/")
            if isinstance(info.value, ConnectionClosedError):
                assert info.value.code == 1006
        async with RawServer(garbage) as raw:
            with pytest.raises(InvalidHandshake):
                await connect(f"ws://{HOST}:{raw.port}/", open_timeout=5)
        with pytest.raises(InvalidURI):
            connect("http://example.com/")
        with pytest.raises(ValueError, match="wss"):
            connect("ws://example.com/", ssl=ssl.create_default_context())
        with pytest.raises(ValueError, match="compression"):
            connect("ws://example.com/", compression="gzip")._make()

    arun(main())


# -- keepalive, backpressure, abrupt disconnects --------------------------------


def test_send_blocks_when_peer_does_not_read_and_buffer_stays_bounded() -> None:
    limit = 32768
    size = 65536

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw_accept(reader, writer)
        await idle(writer)  # never reads

    async def main() -> None:
        async with RawServer(handler) as raw:
            ws = await connect(f"ws://{HOST}:{raw.port}/", write_limit=limit, compression=None,
                               close_timeout=0.2)
            sock = ws.transport.get_extra_info("socket") if ws.transport else None
            assert sock is not None
            payload = b"\x00" * size
            blocked = None
            for i in range(2000):  # kernel buffers fill up long before 128 MiB
                task = asyncio.ensure_future(ws.send(payload))
                done, _ = await asyncio.wait({task}, timeout=0.2)
                assert ws.transport is not None
                assert ws.transport.get_write_buffer_size() <= limit + size + 14
                if not done:
                    blocked = (i, task)
                    break
            assert blocked is not None, "send never blocked"
            _, task = blocked
            await asyncio.sleep(0.1)
            assert not task.done()  # still waiting for the peer to read
            assert ws.transport.get_write_buffer_size() <= limit + size + 14
            await ws.close()  # the peer never reads: close_timeout aborts
            with pytest.raises(ConnectionClosedError):
                await task

    arun(main())


def test_recv_timeout_and_concurrent_recv() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async def main() -> None:
        async with serve(handler, HOST, 0) as server:
            async with connect(url(server)) as ws:
                with pytest.raises(TimeoutError):
                    await ws.recv(timeout=0.05)
                first = asyncio.ensure_future(ws.recv())
                await asyncio.sleep(0)
                with pytest.raises(ConcurrencyError):
                    await ws.recv()
                first.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await first

    arun(main())


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.mark.parametrize("how", ["rst", "eof_mid_frame", "eof_after_handshake"])
def test_abrupt_disconnect_gives_1006_on_server(how: str) -> None:
    outcome: asyncio.Queue[Any] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        try:
            await ws.recv()
        except ConnectionClosedError as exc:
            await outcome.put(exc.code)
        try:
            await ws.send("late")
        except ConnectionClosedError as exc:
            await outcome.put(exc.code)

    async def main() -> None:
        async with serve(handler, HOST, 0) as server:
            reader, writer, _ = await raw_connect(port_of(server))
            if how == "rst":
                _rst(writer)
            else:
                if how == "eof_mid_frame":
                    writer.write(client_frame(Opcode.TEXT, b"hello")[:4])
                writer.write_eof()
                assert await reader.read() == b""
                writer.close()
            assert await outcome.get() == 1006
            assert await outcome.get() == 1006
            await until(lambda: not server.connections)

    arun(main())


def test_eof_mid_handshake_never_reaches_the_handler() -> None:
    called: list[bool] = []

    async def handler(ws: ServerConnection) -> None:
        called.append(True)

    async def main() -> None:
        async with serve(handler, HOST, 0) as server:
            reader, writer = await asyncio.open_connection(HOST, port_of(server))
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgr")
            writer.write_eof()
            await reader.read()
            writer.close()
            await writer.wait_closed()
            await until(lambda: not server.connections)
        assert not called

    arun(main())


# -- transports: TLS, Unix sockets, existing sockets, reuse_port ------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl binary to make a self-signed certificate (cryptography is not installed)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


def test_tls(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def main() -> None:
        async with serve(echo, HOST, 0, ssl=server_ctx) as server:
            port = port_of(server)
            async with connect(f"wss://{HOST}:{port}/", ssl=client_ctx) as ws:
                assert ws.transport is not None and ws.transport.get_extra_info("ssl_object") is not None
                await ws.send("secret")
                assert await ws.recv() == "secret"
                await ws.send(b"\x01" * 300_000)
                assert await ws.recv() == b"\x01" * 300_000
            assert ws.close_code == 1000
            # wss:// implies a default context, which does not trust our certificate.
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(f"wss://{HOST}:{port}/")

    arun(main())


def test_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")

    async def main() -> None:
        async with unix_serve(echo, path) as server:
            assert server.sockets
            async with unix_connect(path) as ws:
                await ws.send("over unix")
                assert await ws.recv() == "over unix"

    arun(main())


def test_connect_with_existing_socket_and_reuse_port() -> None:
    async def main() -> None:
        async with serve(echo, HOST, 0, reuse_port=True) as server:
            sock = socket.create_connection((HOST, port_of(server)))
            async with connect(url(server), sock=sock) as ws:
                await ws.send("via sock")
                assert await ws.recv() == "via sock"
                assert ws.remote_address[1] == port_of(server)
                assert ws.local_address[0] == HOST
                assert ws.id.version == 4

    arun(main())


def test_peer_close_answered_after_close_timeout_when_handler_does_not_read() -> None:
    async def handler(ws: ServerConnection) -> None:
        await asyncio.sleep(5)  # busy elsewhere: neither reads nor waits for the close

    async def main() -> None:
        async with serve(handler, HOST, 0, compression=None, close_timeout=0.2) as server:
            reader, writer, _ = await raw_connect(port_of(server))
            writer.write(client_frame(Opcode.TEXT, b"unread") + client_frame(Opcode.CLOSE, close_payload(1001)))
            started = time.monotonic()
            assert await read_close(reader, masked=False) == (1001, "")
            assert time.monotonic() - started < 2
            writer.close()
            await writer.wait_closed()

    arun(main())


def test_serve_forever_returns_when_closed_and_closes_when_cancelled() -> None:
    async def main() -> None:
        server = await serve(echo, HOST, 0)
        forever = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)  # serve_forever starts and waits
        assert not forever.done()
        server.close()
        await asyncio.wait_for(forever, 5)  # returns once closed

        server = await serve(echo, HOST, 0)
        ws = await connect(url(server))
        forever = asyncio.ensure_future(server.serve_forever())
        await asyncio.sleep(0)  # serve_forever starts and waits
        forever.cancel()  # what Ctrl-C does under asyncio.run
        with pytest.raises(asyncio.CancelledError):
            await forever
        assert not server.is_serving()
        with pytest.raises(ConnectionClosedOK) as info:
            await ws.recv()
        assert info.value.code == 1001

    arun(main())


def test_debug_logging_names_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> str:
        async with serve(echo, HOST, 0) as server:
            async with connect(url(server), logger="wskit.test.client") as ws:
                await ws.send("logged")
                await ws.recv()
                return str(ws.id)

    with caplog.at_level(logging.DEBUG, logger="wskit.test.client"):
        conn_id = arun(main())
    mine = [r for r in caplog.records if r.name == "wskit.test.client"]
    assert mine and all(r.getMessage().startswith(f"[{conn_id[:8]}]") for r in mine)
    assert all(getattr(r, "connection_id", None) is not None for r in mine)
    assert any("> CLOSE 1000" in r.getMessage() for r in mine)
    # At INFO and above: only the connection opening and closing (as python-websockets logs them).
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and r.name.startswith("wskit")
                and not any(what in r.getMessage() for what in ("connection open", "connection closed"))]


def test_send_after_peer_violation_does_not_crash() -> None:
    outcome: asyncio.Queue[Any] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        try:
            await ws.recv()
        except ConnectionClosedError as exc:
            outcome.put_nowait(exc.code)
        try:
            await ws.send("after the failure")
        except ConnectionClosedError as exc:
            outcome.put_nowait(exc.code)

    async def main() -> None:
        async with serve(handler, HOST, 0, compression=None, close_timeout=0.5) as server:
            reader, writer, _ = await raw_connect(port_of(server))
            writer.write(server_frame(Opcode.TEXT, b"unmasked"))  # RFC 6455 §5.1: must be masked
            assert (await read_close(reader, masked=False))[0] == 1002
            assert await reader.read() == b""  # our EOF follows the Close
            writer.close()
            await writer.wait_closed()
            assert await outcome.get() == 1002  # recv() raised
            assert await outcome.get() == 1002  # and so did send(), without crashing

    arun(main())


def test_config_file_gives_defaults_and_code_overrides_it() -> None:
    config_module = pytest.importorskip("wskit.config")
    config = config_module.loads("max_size: 1000\nmax_queue: 4\nsubprotocols: [chat]\ntimeouts:\n  close: 0.5\n")

    async def main() -> None:
        async with serve(echo, HOST, 0, config=config) as server:
            async with connect(url(server), config=config, max_size=5000) as ws:
                assert ws.subprotocol == "chat"
                assert ws.protocol.max_size == 5000  # given in code: wins over the file
                await ws.send("x" * 2000)  # over the server's max_size from the file
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1009

    arun(main())

"""``config=`` on the asyncio and sync clients and servers: every key reaches the layer.

For each consumer (``wskit.asyncio.connect``/``serve``, ``wskit.sync.connect``/
``serve``) and each configuration key, one table row: a YAML file setting the
key, a probe observing real behaviour on 127.0.0.1 (a message over
``max_size`` fails with 1009, the negotiated subprotocol, the
permessage-deflate parameters in the 101 response, frames seen by the peer,
the listening address...), the value the file must produce, and an explicit
keyword argument -- equal to the consumer's default whenever the key has one
-- that must win over the file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

import wskit.asyncio as wa
import wskit.sync as ws_sync
from wskit.config import Config, loads
from wskit.events import Request, Response
from wskit.exceptions import InvalidHandshake, WebSocketClosed
from wskit.extensions.base import ClientExtensionFactory
from wskit.extensions.permessage_deflate import ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory
from wskit.frames import Frame, Opcode
from wskit.headers import Headers
from wskit.hookspecs import hookimpl
from wskit.http11 import HTTPLimits
from wskit.plugin import PluginManager

HOST = "127.0.0.1"
T = TypeVar("T")
DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
INCOMPRESSIBLE = os.urandom(60).hex()  # 120 characters that deflate barely shrinks


# -- infrastructure: an event loop thread, a frame recorder, peers ---------------------


class LoopThread:
    """An event loop running in a thread; the test thread submits coroutines to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-io-config-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        async def leftovers() -> int:
            current = asyncio.current_task()
            return len([t for t in asyncio.all_tasks() if t is not current])

        assert self.run(leftovers()) == 0, "tasks left running in the event loop"
        self.run(self.loop.shutdown_default_executor())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Recorder:
    """A plugin keeping every frame its connections receive."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []

    @hookimpl
    def wskit_frame_received(self, protocol: Any, frame: Frame) -> None:
        self.frames.append(frame)

    def data_frames(self) -> list[Frame]:
        return [f for f in self.frames if f.opcode in DATA_OPCODES]


async def async_handler(ws: Any) -> None:
    """Echo; ``send:N`` asks for ``"x" * N``; remembers the connection."""
    SERVER_CONNECTIONS.append(ws)
    async for message in ws:
        if isinstance(message, str) and message.startswith("send:"):
            await ws.send("x" * int(message[5:]))
        else:
            await ws.send(message)


def sync_handler(ws: Any) -> None:
    """The blocking twin of :func:`async_handler`."""
    SERVER_CONNECTIONS.append(ws)
    for message in ws:
        if isinstance(message, str) and message.startswith("send:"):
            ws.send("x" * int(message[5:]))
        else:
            ws.send(message)


SERVER_CONNECTIONS: list[Any] = []


class Handle:
    """A client connection of either layer, driven from the test thread."""

    def __init__(self, conn: Any, loop: LoopThread | None) -> None:
        self.conn = conn
        self.loop = loop

    def _do(self, what: Callable[[], Any]) -> Any:
        if self.loop is None:
            return what()
        return self.loop.run(what())

    def send(self, message: str | bytes) -> None:
        self._do(lambda: self.conn.send(message))

    def recv(self) -> Any:
        return self._do(lambda: self.conn.recv(timeout=5))

    def close(self) -> None:
        self._do(lambda: self.conn.close())

    def attr(self, name: str) -> Any:
        """A setting of the connection (the asyncio layer keeps them private)."""
        return getattr(self.conn, name if self.loop is None else "_" + name)

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_asyncio(loop: LoopThread, *args: Any, **kwargs: Any) -> Handle:
    async def go() -> Any:
        return await wa.connect(*args, **kwargs)

    return Handle(loop.run(go()), loop)


def open_sync(*args: Any, **kwargs: Any) -> Handle:
    return Handle(ws_sync.connect(*args, **kwargs).open(), None)


@dataclass
class PeerServer:
    """wskit asyncio servers the client consumers talk to."""

    loop: LoopThread
    recorder: Recorder = field(default_factory=Recorder)
    requests: list[Request] = field(default_factory=list)
    servers: list[Any] = field(default_factory=list)
    hang_transports: list[asyncio.BaseTransport] = field(default_factory=list)
    uri: str = ""
    tls_uri: str = ""
    hang_uri: str = ""

    def process_request(self, conn: Any, request: Request) -> Response | None:
        self.requests.append(request)
        if request.path == "/reject":
            body = b"r" * 100
            return Response(403, "Forbidden", Headers([("Content-Length", str(len(body)))]), body)
        return None

    async def start(self, certificate: tuple[Path, Path] | None) -> None:
        common: dict[str, Any] = {"subprotocols": ["chat"], "plugins": [self.recorder],
                                  "process_request": self.process_request}
        server = await wa.serve(async_handler, HOST, 0, **common)
        self.servers.append(server)
        self.uri = f"ws://{HOST}:{server.sockets[0].getsockname()[1]}/"
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*certificate)
            tls = await wa.serve(async_handler, HOST, 0, ssl=context, **common)
            self.servers.append(tls)
            self.tls_uri = f"wss://localhost:{tls.sockets[0].getsockname()[1]}/"

        peer = self

        class Silent(asyncio.Protocol):  # accepts and never answers: open_timeout's victim
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                peer.hang_transports.append(transport)

        hang = await asyncio.get_running_loop().create_server(Silent, HOST, 0)
        self.servers.append(hang)
        self.hang_uri = f"ws://{HOST}:{hang.sockets[0].getsockname()[1]}/"

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for transport in self.hang_transports:
            transport.abort()
        for server in self.servers:
            await server.wait_closed()

    def drop_hanging(self) -> None:
        async def drop() -> None:
            for transport in self.hang_transports:
                transport.abort()

        self.loop.run(drop())


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path] | None:
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def peer(loop: LoopThread, certificate: tuple[Path, Path] | None) -> Iterator[PeerServer]:
    server = PeerServer(loop)
    loop.run(server.start(certificate))
    yield server
    loop.run(server.stop())


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    SERVER_CONNECTIONS.clear()
    for thread in set(threading.enumerate()) - before:
        if thread.name.startswith("asyncio_"):
            continue  # the event loop's default executor (getaddrinfo): shut down with the loop
        thread.join(5)
        assert not thread.is_alive(), f"thread left running: {thread.name}"


class FrameLog(logging.Handler):
    """Collects the frame lines of the ``logging`` plugin (``> TEXT ...``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        # The plugin's format: > TEXT 'hello' [5 bytes] (the wire payload: extensions
        # that plugins installed in the environment provide may change it).
        if re.search(r"TEXT '(\[\w+\] )?hello' \[", message):
            self.lines.append(message)


def capture_frame_log(run: Callable[[], None]) -> bool:
    """Run ``run``; return whether a consumer logged a frame line."""
    logger = logging.getLogger("wskit")
    handler = FrameLog()
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        run()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    return bool(handler.lines)


def known_extensions(header: str, known: tuple[str, ...] = ("permessage-deflate",)) -> str:
    """The items of an extension header these tests deal with (the ``known`` tokens).

    Extensions that third-party plugins installed in the environment add
    (their entry points are loaded by default) are left out, so that the
    tests pass with or without such plugins.
    """
    items = [item.strip() for item in header.split(",") if item.strip()]
    return ", ".join(item for item in items if item.split(";")[0].strip() in known)


def ext_header(response: Response | None) -> str:
    """The permessage-deflate part of a response's ``Sec-WebSocket-Extensions``."""
    assert response is not None
    return known_extensions(response.headers.get("Sec-WebSocket-Extensions") or "")


def has(text: str) -> Callable[[str], bool]:
    return lambda header: text in header


def lacks(text: str) -> Callable[[str], bool]:
    return lambda header: text not in header


# -- client consumers -------------------------------------------------------------------


@dataclass
class ClientEnv:
    kind: str
    loop: LoopThread
    peer: PeerServer
    certificate: tuple[Path, Path] | None

    def open(self, config: Config, *args: Any, **kwargs: Any) -> Handle:
        if self.kind == "asyncio_client":
            return open_asyncio(self.loop, *args, config=config, **kwargs)
        return open_sync(*args, config=config, **kwargs)


ClientProbe = Callable[[ClientEnv, Config, dict[str, Any]], Any]


def c_big_message(env: ClientEnv, config: Config, kw: dict[str, Any]) -> Any:
    with env.open(config, env.peer.uri, **kw) as ws:
        ws.send("send:11")
        try:
            return len(ws.recv())
        except WebSocketClosed as exc:
            return exc.code


def c_fragmented(env: ClientEnv, config: Config, kw: dict[str, Any]) -> bool:
    with env.open(config, env.peer.uri, **kw) as ws:
        env.peer.recorder.frames.clear()
        ws.send(INCOMPRESSIBLE)
        assert ws.recv() == INCOMPRESSIBLE
        return len(env.peer.recorder.data_frames()) > 1


def c_attr(name: str) -> ClientProbe:
    def probe(env: ClientEnv, config: Config, kw: dict[str, Any]) -> Any:
        with env.open(config, env.peer.uri, **kw) as ws:
            return ws.attr(name)

    return probe


def c_subprotocol(env: ClientEnv, config: Config, kw: dict[str, Any]) -> Any:
    with env.open(config, env.peer.uri, **kw) as ws:
        return ws.conn.subprotocol


def c_origin(env: ClientEnv, config: Config, kw: dict[str, Any]) -> Any:
    with env.open(config, env.peer.uri, **kw):
        return env.peer.requests[-1].headers.get("Origin")


def c_opens(env: ClientEnv, config: Config, kw: dict[str, Any]) -> str:
    try:
        with env.open(config, env.peer.uri, **kw):
            return "open"
    except InvalidHandshake:
        return "refused"


def c_rejection_body(env: ClientEnv, config: Config, kw: dict[str, Any]) -> int:
    with pytest.raises(InvalidHandshake) as info:
        env.open(config, env.peer.uri + "reject", **kw)
    response = info.value.response
    assert response is not None and response.status_code == 403
    return len(response.body)


def c_extensions(env: ClientEnv, config: Config, kw: dict[str, Any]) -> str:
    with env.open(config, env.peer.uri, **kw) as ws:
        return ext_header(ws.conn.response)


def c_sent_frame(message: str) -> ClientProbe:
    def probe(env: ClientEnv, config: Config, kw: dict[str, Any]) -> Frame:
        with env.open(config, env.peer.uri, **kw) as ws:
            env.peer.recorder.frames.clear()
            ws.send(message)
            assert ws.recv() == message
            (frame,) = env.peer.recorder.data_frames()
            return frame

    return probe


def c_mem_level(env: ClientEnv, config: Config, kw: dict[str, Any]) -> Any:
    with env.open(config, env.peer.uri, **kw) as ws:
        (extension,) = [e for e in ws.conn.protocol.extensions if e.name == "permessage-deflate"]
        return extension.mem_level


def c_frame_log(env: ClientEnv, config: Config, kw: dict[str, Any]) -> bool:
    def run() -> None:
        with env.open(config, env.peer.uri, **kw) as ws:
            ws.send("hello")
            assert ws.recv() == "hello"

    return capture_frame_log(run)


def c_plugin_manager(env: ClientEnv, config: Config, kw: dict[str, Any]) -> bool:
    with env.open(config, env.peer.uri, **kw) as ws:
        return ws.conn.protocol.plugin_manager is config.plugin_manager()


def c_open_timeout(env: ClientEnv, config: Config, kw: dict[str, Any]) -> str:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(env.open, config, env.peer.hang_uri, **kw)
        done, _ = concurrent.futures.wait([future], timeout=0.5)
        if done:
            assert isinstance(future.exception(), TimeoutError), future.exception()
            return "timed out"
        env.peer.drop_hanging()  # let the pending connect() fail now
        with pytest.raises((WebSocketClosed, InvalidHandshake, OSError)):
            future.result(timeout=5)
        return "still opening"


def c_uri_path(env: ClientEnv, config: Config, kw: dict[str, Any]) -> str:
    with env.open(config, **kw):
        return env.peer.requests[-1].path


def c_tls(env: ClientEnv, config: Config, kw: dict[str, Any]) -> str:
    try:
        with env.open(config, env.peer.tls_uri, **kw) as ws:
            ws.send("secret")
            assert ws.recv() == "secret"
            return "open"
    except ssl.SSLCertVerificationError:
        return "certificate refused"


@dataclass(frozen=True)
class Case:
    """One configuration key: the file, a probe, what the file gives, an explicit override and what it gives."""

    key: str
    yaml: str
    probe: Any
    from_file: Any
    override: dict[str, Any]
    overridden: Any
    needs_tls: bool = False


CLIENT_CASES = [
    Case("max_size", "max_size: 10", c_big_message, 1009, {"max_size": 2**20}, 11),
    Case("max_fragment_size", "max_fragment_size: 16", c_fragmented, True, {"max_fragment_size": None}, False),
    Case("max_queue", "max_queue: 3", c_attr("max_queue"), 3, {"max_queue": 16}, 16),
    Case("write_limit", "write_limit: 1000", c_attr("write_limit"), 1000, {"write_limit": 32768}, 32768),
    Case("subprotocols", "subprotocols: [chat]", c_subprotocol, "chat", {"subprotocols": None}, None),
    Case("origin", "origin: https://app.example", c_origin, "https://app.example", {"origin": None}, None),
    Case("handshake.max_line", "handshake: {max_line: 20}", c_opens, "refused", {"limits": None}, "open"),
    Case("handshake.max_headers", "handshake: {max_headers: 2}", c_opens, "refused", {"limits": None}, "open"),
    Case("handshake.max_header_bytes", "handshake: {max_header_bytes: 60}", c_opens, "refused",
         {"limits": HTTPLimits()}, "open"),
    Case("handshake.max_body", "handshake: {max_body: 10}", c_rejection_body, 10, {"limits": None}, 100),
    Case("compression.enabled", "compression: false", c_extensions, "", {"compression": "deflate"},
         has("permessage-deflate")),
    Case("compression.server_no_context_takeover", "compression: {server_no_context_takeover: true}",
         c_extensions, has("server_no_context_takeover"), {"plugin_manager": None},
         lacks("server_no_context_takeover")),
    Case("compression/compression=None", "compression: {server_no_context_takeover: true}",
         c_extensions, has("server_no_context_takeover"), {"compression": None}, ""),
    # extensions=[] in code: compression="deflate" (the default) adds permessage-deflate, with the file's settings.
    Case("compression/extensions=[]", "compression: {server_no_context_takeover: true}",
         c_extensions, has("server_no_context_takeover"), {"extensions": []}, has("server_no_context_takeover")),
    Case("compression/compression='deflate'", "compression: {enabled: false, level: 0}",
         c_sent_frame("a" * 4000), lambda f: not f.rsv1, {"compression": "deflate"},
         lambda f: f.rsv1 and len(f.data) > 4000),
    Case("compression.client_no_context_takeover", "compression: {client_no_context_takeover: true}",
         c_extensions, has("client_no_context_takeover"), {"plugin_manager": None},
         lacks("client_no_context_takeover")),
    Case("compression.server_max_window_bits", "compression: {server_max_window_bits: 10}",
         c_extensions, has("server_max_window_bits=10"), {"plugin_manager": None},
         lacks("server_max_window_bits=10")),
    Case("compression.client_max_window_bits", "compression: {client_max_window_bits: 9}",
         c_extensions, has("client_max_window_bits=9"), {"plugin_manager": None},
         lacks("client_max_window_bits=9")),
    Case("compression.level", "compression: {level: 0}", c_sent_frame("a" * 4000),
         lambda f: len(f.data) > 4000, {"plugin_manager": None}, lambda f: len(f.data) < 200),
    Case("compression.mem_level", "compression: {mem_level: 1}", c_mem_level, 1,
         {"plugin_manager": None}, lambda level: level != 1),
    Case("compression.min_size", "compression: {min_size: 1000}", c_sent_frame("a" * 100),
         lambda f: not f.rsv1, {"plugin_manager": None}, lambda f: f.rsv1),
    Case("plugins.enable", "plugins: {enable: [logging]}", c_frame_log, True, {"plugin_manager": None}, False),
    Case("plugins.disable", "plugins: {disable: [permessage-deflate]}", c_extensions, "",
         {"plugin_manager": None}, has("permessage-deflate")),
    Case("plugins.entry_points", "plugins: {entry_points: false}", c_plugin_manager, True,
         {"plugin_manager": None}, False),
    Case("timeouts.open", "timeouts: {open: 0.05}", c_open_timeout, "timed out", {"open_timeout": 10},
         "still opening"),
    Case("timeouts.close", "timeouts: {close: 0.5}", c_attr("close_timeout"), 0.5, {"close_timeout": 10}, 10),
    Case("timeouts.ping_interval", "timeouts: {ping_interval: null}", c_attr("ping_interval"), None,
         {"ping_interval": 20}, 20),
    Case("timeouts.ping_timeout", "timeouts: {ping_timeout: 3}", c_attr("ping_timeout"), 3,
         {"ping_timeout": 20}, 20),
    Case("client.uri", "client:\n  uri: {uri}from-file", c_uri_path, "/from-file",
         {"uri": "{uri}from-code"}, "/from-code"),
    Case("tls.cafile", "tls: {cafile: {cert}}", c_tls, "open", {"ssl": None}, "certificate refused",
         needs_tls=True),
]


def _fill(value: Any, env: Any) -> Any:
    if isinstance(value, str):
        cert = env.certificate[0] if env.certificate else ""
        return value.replace("{uri}", env.peer.uri).replace("{cert}", str(cert))
    return value


@dataclass(frozen=True)
class Not:
    """Expect any value but this one."""

    value: Any


def _check(expected: Any, observed: Any) -> None:
    if isinstance(expected, Not):
        assert observed != expected.value
    elif callable(expected):
        assert expected(observed), observed
    else:
        assert observed == expected


def _params(cases: list[Case], kinds: tuple[str, str]) -> list[Any]:
    return [pytest.param(kind, case, id=f"{kind}-{case.key}") for kind in kinds for case in cases]


@pytest.mark.parametrize(("kind", "case"), _params(CLIENT_CASES, ("asyncio_client", "sync_client")))
def test_client_config_key(kind: str, case: Case, loop: LoopThread, peer: PeerServer,
                           certificate: tuple[Path, Path] | None) -> None:
    if case.needs_tls and certificate is None:
        pytest.skip("needs the openssl binary to make a certificate")
    env = ClientEnv(kind, loop, peer, certificate)
    config = loads(_fill(case.yaml, env))
    # The file's value takes effect...
    _check(case.from_file, case.probe(env, config, {}))
    # ...and an explicit keyword argument wins over it, even when equal to the default.
    override = {k: _fill(v, env) for k, v in case.override.items()}
    _check(case.overridden, case.probe(env, config, override))


# -- server consumers -------------------------------------------------------------------


@dataclass
class Running:
    server: Any
    address: Any
    family: int
    stop: Callable[[], None]

    @property
    def uri(self) -> str:
        return f"ws://{HOST}:{self.address[1]}/"


@dataclass
class ServerEnv:
    kind: str
    loop: LoopThread
    certificate: tuple[Path, Path] | None
    tmp_path: Path
    recorder: Recorder = field(default_factory=Recorder)

    def start(self, config: Config, *args: Any, **kwargs: Any) -> Running:
        if self.kind == "asyncio_server":
            async def go() -> Any:
                return await wa.serve(async_handler, *args, config=config, **kwargs)

            server = self.loop.run(go())
            sock = server.sockets[0]

            def stop() -> None:
                async def close() -> None:
                    server.close()
                    await server.wait_closed()

                self.loop.run(close())

            return Running(server, sock.getsockname(), sock.family, stop)
        sync_server = ws_sync.serve(sync_handler, *args, config=config, **kwargs)
        thread = threading.Thread(target=sync_server.serve_forever, name="test-io-config-sync-server")
        thread.start()

        def stop_sync() -> None:
            sync_server.shutdown()
            thread.join(5)

        sock = sync_server.socket
        return Running(sync_server, sock.getsockname(), sock.family, stop_sync)

    def connect(self, uri: str, **kwargs: Any) -> Handle:
        kwargs.setdefault("plugins", [self.recorder])
        return open_asyncio(self.loop, uri, **kwargs)

    def serving(self, config: Config, kw: dict[str, Any], args: tuple[Any, ...] = (HOST, 0)) -> Any:
        """Start a server for a ``with`` block: ``serve(handler, *args, config=config, **kw)``."""
        return _Serving(self, config, args, kw)


class _Serving:
    def __init__(self, env: ServerEnv, config: Config, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        self.env, self.config, self.args, self.kw = env, config, args, kw

    def __enter__(self) -> Running:
        self.running = self.env.start(self.config, *self.args, **self.kw)
        return self.running

    def __exit__(self, *exc: object) -> None:
        self.running.stop()


ServerProbe = Callable[[ServerEnv, Config, dict[str, Any]], Any]


def s_big_message(env: ServerEnv, config: Config, kw: dict[str, Any]) -> Any:
    with env.serving(config, kw) as server, env.connect(server.uri) as ws:
        ws.send("y" * 11)
        try:
            return len(ws.recv())
        except WebSocketClosed as exc:
            return exc.code


def s_fragmented(env: ServerEnv, config: Config, kw: dict[str, Any]) -> bool:
    with env.serving(config, kw) as server, env.connect(server.uri, compression=None) as ws:
        env.recorder.frames.clear()
        ws.send("send:100")
        assert ws.recv() == "x" * 100
        return len(env.recorder.data_frames()) > 1


def s_attr(name: str) -> ServerProbe:
    def probe(env: ServerEnv, config: Config, kw: dict[str, Any]) -> Any:
        with env.serving(config, kw) as server, env.connect(server.uri) as ws:
            ws.send("ping")
            assert ws.recv() == "ping"
            (conn,) = SERVER_CONNECTIONS[-1:]
            return Handle(conn, None if env.kind == "sync_server" else env.loop).attr(name)

    return probe


def s_subprotocol(env: ServerEnv, config: Config, kw: dict[str, Any]) -> Any:
    with env.serving(config, kw) as server, env.connect(server.uri, subprotocols=["chat"]) as ws:
        return ws.conn.subprotocol


def s_opens(**client: Any) -> ServerProbe:
    def probe(env: ServerEnv, config: Config, kw: dict[str, Any]) -> Any:
        with env.serving(config, kw) as server:
            try:
                with env.connect(server.uri, **client):
                    return "open"
            except InvalidHandshake as exc:
                return exc.response.status_code if exc.response is not None else "refused"

    return probe


def s_max_body(env: ServerEnv, config: Config, kw: dict[str, Any]) -> int:
    with env.serving(config, kw) as server, env.connect(server.uri) as ws:
        ws.send("x")
        ws.recv()
        limits: HTTPLimits = SERVER_CONNECTIONS[-1].protocol._limits
        return limits.max_body


def s_extensions(env: ServerEnv, config: Config, kw: dict[str, Any]) -> str:
    with env.serving(config, kw) as server, env.connect(server.uri) as ws:
        return ext_header(ws.conn.response)


def s_sent_frame(size: int) -> ServerProbe:
    def probe(env: ServerEnv, config: Config, kw: dict[str, Any]) -> Frame:
        with env.serving(config, kw) as server, env.connect(server.uri) as ws:
            env.recorder.frames.clear()
            ws.send(f"send:{size}")
            assert ws.recv() == "x" * size
            (frame,) = env.recorder.data_frames()
            return frame

    return probe


def s_mem_level(env: ServerEnv, config: Config, kw: dict[str, Any]) -> Any:
    with env.serving(config, kw) as server, env.connect(server.uri) as ws:
        ws.send("x")
        ws.recv()
        (extension,) = [e for e in SERVER_CONNECTIONS[-1].protocol.extensions if e.name == "permessage-deflate"]
        return extension.mem_level


def s_frame_log(env: ServerEnv, config: Config, kw: dict[str, Any]) -> bool:
    def run() -> None:
        with env.serving(config, kw) as server, env.connect(server.uri, logger="test.peer") as ws:
            ws.send("hello")
            assert ws.recv() == "hello"

    return capture_frame_log(run)


def s_plugin_manager(env: ServerEnv, config: Config, kw: dict[str, Any]) -> bool:
    with env.serving(config, kw) as server, env.connect(server.uri) as ws:
        ws.send("x")
        ws.recv()
        return bool(SERVER_CONNECTIONS[-1].protocol.plugin_manager is config.plugin_manager())


def s_open_timeout(env: ServerEnv, config: Config, kw: dict[str, Any]) -> str:
    with env.serving(config, kw) as server, socket.create_connection(server.address[:2]) as sock:
        sock.settimeout(0.5)
        try:
            return "closed" if sock.recv(1) == b"" else "answered"
        except TimeoutError:
            return "still open"


def s_listen(env: ServerEnv, config: Config, kw: dict[str, Any]) -> Any:
    args = kw.pop("_args", ())
    with env.serving(config, kw, args) as server:
        if server.family == socket.AF_UNIX:
            address = server.address
            with ws_sync.unix_connect(address) as ws:
                ws.send("unix")
                assert ws.recv() == "unix"
            return ("unix", Path(address).name)
        with env.connect(f"ws://{HOST}:{server.address[1]}/") as ws:
            ws.send("tcp")
            assert ws.recv() == "tcp"
        return (server.address[0], server.address[1])


def s_reuse_port(env: ServerEnv, config: Config, kw: dict[str, Any]) -> bool:
    with env.serving(config, kw) as server:
        sock = server.server.sockets[0] if env.kind == "asyncio_server" else server.server.socket
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))


def s_tls(env: ServerEnv, config: Config, kw: dict[str, Any]) -> str:
    assert env.certificate is not None
    client_ctx = ssl.create_default_context(cafile=str(env.certificate[0]))
    with env.serving(config, kw) as server:
        try:
            with env.connect(f"wss://localhost:{server.address[1]}/", ssl=client_ctx) as ws:
                ws.send("secret")
                assert ws.recv() == "secret"
                return "open"
        except (ssl.SSLError, OSError, WebSocketClosed):
            return "no TLS"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


SERVER_CASES = [
    Case("max_size", "max_size: 10", s_big_message, 1009, {"max_size": 2**20}, 11),
    Case("max_fragment_size", "max_fragment_size: 16", s_fragmented, True, {"max_fragment_size": None}, False),
    Case("max_queue", "max_queue: 3", s_attr("max_queue"), 3, {"max_queue": 16}, 16),
    Case("write_limit", "write_limit: 1000", s_attr("write_limit"), 1000, {"write_limit": 32768}, 32768),
    Case("subprotocols", "subprotocols: [chat]", s_subprotocol, "chat", {"subprotocols": None}, None),
    Case("origins", "origins: [https://ok.example]", s_opens(origin="https://bad.example"), 403,
         {"origins": None}, "open"),
    Case("handshake.max_line", "handshake: {max_line: 30}", s_opens(), 431, {"limits": None}, "open"),
    Case("handshake.max_headers", "handshake: {max_headers: 3}", s_opens(), 431, {"limits": None}, "open"),
    Case("handshake.max_header_bytes", "handshake: {max_header_bytes: 100}", s_opens(), 431,
         {"limits": HTTPLimits()}, "open"),
    Case("handshake.max_body", "handshake: {max_body: 10}", s_max_body, 10, {"limits": None}, 65536),
    Case("compression.enabled", "compression: false", s_extensions, "", {"compression": "deflate"},
         has("permessage-deflate")),
    Case("compression.server_no_context_takeover", "compression: {server_no_context_takeover: true}",
         s_extensions, has("server_no_context_takeover"), {"plugin_manager": None},
         lacks("server_no_context_takeover")),
    Case("compression/compression=None", "compression: {server_no_context_takeover: true}",
         s_extensions, has("server_no_context_takeover"), {"compression": None}, ""),
    # extensions=[] in code: compression="deflate" (the default) adds permessage-deflate, with the file's settings.
    Case("compression/extensions=[]", "compression: {server_no_context_takeover: true}",
         s_extensions, has("server_no_context_takeover"), {"extensions": []}, has("server_no_context_takeover")),
    Case("compression.client_no_context_takeover", "compression: {client_no_context_takeover: true}",
         s_extensions, has("client_no_context_takeover"), {"plugin_manager": None},
         lacks("client_no_context_takeover")),
    Case("compression.server_max_window_bits", "compression: {server_max_window_bits: 10}",
         s_extensions, has("server_max_window_bits=10"), {"plugin_manager": None},
         lacks("server_max_window_bits=10")),
    Case("compression.client_max_window_bits", "compression: {client_max_window_bits: 9}",
         s_extensions, has("client_max_window_bits=9"), {"plugin_manager": None},
         lacks("client_max_window_bits=9")),
    Case("compression.level", "compression: {level: 0}", s_sent_frame(4000),
         lambda f: len(f.data) > 4000, {"plugin_manager": None}, lambda f: len(f.data) < 200),
    Case("compression.mem_level", "compression: {mem_level: 1}", s_mem_level, 1,
         {"plugin_manager": None}, lambda level: level != 1),
    Case("compression.min_size", "compression: {min_size: 1000}", s_sent_frame(100),
         lambda f: not f.rsv1, {"plugin_manager": None}, lambda f: f.rsv1),
    Case("plugins.enable", "plugins: {enable: [logging]}", s_frame_log, True, {"plugin_manager": None}, False),
    Case("plugins.disable", "plugins: {disable: [permessage-deflate]}", s_extensions, "",
         {"plugin_manager": None}, has("permessage-deflate")),
    Case("plugins.entry_points", "plugins: {entry_points: false}", s_plugin_manager, True,
         {"plugin_manager": None}, False),
    Case("timeouts.open", "timeouts: {open: 0.05}", s_open_timeout, "closed", {"open_timeout": 10}, "still open"),
    Case("timeouts.close", "timeouts: {close: 0.5}", s_attr("close_timeout"), 0.5, {"close_timeout": 10}, 10),
    Case("timeouts.ping_interval", "timeouts: {ping_interval: null}", s_attr("ping_interval"), None,
         {"ping_interval": 20}, 20),
    Case("timeouts.ping_timeout", "timeouts: {ping_timeout: 3}", s_attr("ping_timeout"), 3,
         {"ping_timeout": 20}, 20),
    Case("server.host+port", "server: {host: 127.0.0.1, port: {port}}", s_listen, (HOST, "{port}"),
         {"port": 0}, Not((HOST, "{port}"))),
    Case("server.unix", "server: {unix: {tmp}/file.sock, port: {port}}", s_listen, ("unix", "file.sock"),
         {"_args": (HOST, 0)}, lambda address: address[0] == HOST),
    Case("server.reuse_port", "server: {reuse_port: true}", s_reuse_port, True, {"reuse_port": False}, False),
    Case("tls.certfile+keyfile", "tls: {certfile: {cert}, keyfile: {key}}", s_tls, "open", {"ssl": None},
         "no TLS", needs_tls=True),
]


@pytest.mark.parametrize(("kind", "case"), _params(SERVER_CASES, ("asyncio_server", "sync_server")))
def test_server_config_key(kind: str, case: Case, loop: LoopThread, certificate: tuple[Path, Path] | None,
                           tmp_path: Path) -> None:
    if case.needs_tls and certificate is None:
        pytest.skip("needs the openssl binary to make a certificate")
    if case.key == "server.reuse_port" and not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT on this platform")
    env = ServerEnv(kind, loop, certificate, tmp_path)
    port = free_port()
    cert, key = certificate if certificate is not None else ("", "")
    short = Path(tempfile.mkdtemp(prefix="wsk"))  # a Unix socket path must stay short

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            for name, text in (("port", port), ("cert", cert), ("key", key), ("tmp", short)):
                value = value.replace("{" + name + "}", str(text))
            return int(value) if value.isdigit() else value
        if isinstance(value, tuple):
            return tuple(fill(v) for v in value)
        if isinstance(value, Not):
            return Not(fill(value.value))
        return value

    try:
        config = loads(fill(case.yaml))
        _check(fill(case.from_file), case.probe(env, config, {}))
        _check(fill(case.overridden), case.probe(env, config, {k: fill(v) for k, v in case.override.items()}))
    finally:
        shutil.rmtree(short, ignore_errors=True)


# -- the rules around the table ---------------------------------------------------------------


def test_config_must_be_a_config_object(loop: LoopThread) -> None:
    with pytest.raises(TypeError, match=r"config must be a wskit\.config\.Config"):
        ws_sync.connect("ws://127.0.0.1:1/", config={"max_size": 10})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"config must be a wskit\.config\.Config"):
        wa.connect("ws://127.0.0.1:1/", config="max_size: 10")  # type: ignore[arg-type]


def test_a_uri_is_needed_from_the_call_or_the_file() -> None:
    with pytest.raises(TypeError, match=r"needs a URI \(or client\.uri"):
        ws_sync.connect(config=loads("max_size: 10"))
    with pytest.raises(TypeError, match=r"needs a URI \(or client\.uri"):
        wa.connect(config=loads("max_size: 10"))


@pytest.mark.parametrize("kind", ["asyncio_server", "sync_server"])
def test_serve_with_config_alone_listens_where_the_file_says(kind: str, loop: LoopThread, tmp_path: Path) -> None:
    env = ServerEnv(kind, loop, None, tmp_path)
    port = free_port()
    config = loads(f"server: {{port: {port}}}\n")  # host: the configuration's default, 127.0.0.1
    with env.serving(config, {}, ) as server:  # positional HOST, 0: explicit, wins
        assert server.address[1] != port
    running = env.start(config)
    try:
        assert running.address == (HOST, port)
        with env.connect(f"ws://{HOST}:{port}/") as ws:
            ws.send("where")
            assert ws.recv() == "where"
    finally:
        running.stop()


# -- compression= and extensions=: the same rules in both layers ------------------------------


class OtherClientFactory(ClientExtensionFactory):
    """An extension the peer does not know: offered, never accepted."""

    name = "x-other"

    def get_request_params(self) -> list[tuple[str, str | None]]:
        return []


def _offer(env: ClientEnv, **kw: Any) -> str:
    """The ``Sec-WebSocket-Extensions`` header the client sent."""
    with env.open(None, env.peer.uri, **kw) as ws:  # type: ignore[arg-type]
        request = ws.conn.request
        assert request is not None
        return known_extensions(request.headers.get("Sec-WebSocket-Extensions") or "",
                                ("permessage-deflate", "x-other"))


NO_DEFLATE = PluginManager(disable=["permessage-deflate"], entry_points=False)


@pytest.mark.parametrize("kind", ["asyncio_client", "sync_client"])
@pytest.mark.parametrize(("kw", "offered"), [
    pytest.param({}, "permessage-deflate; client_max_window_bits", id="defaults"),
    pytest.param({"extensions": [OtherClientFactory()]}, "x-other, permessage-deflate; client_max_window_bits",
                 id="deflate-appended-to-the-list"),
    pytest.param({"extensions": [ClientPerMessageDeflateFactory(server_no_context_takeover=True)]},
                 "permessage-deflate; server_no_context_takeover; client_max_window_bits",
                 id="deflate-in-the-list-not-added-again"),
    pytest.param({"extensions": [OtherClientFactory()], "compression": None}, "x-other",
                 id="compression-None-adds-nothing"),
    pytest.param({"extensions": [], "compression": None}, "", id="nothing"),
    pytest.param({"compression": None}, "", id="compression-None"),
    pytest.param({"plugin_manager": NO_DEFLATE}, "", id="plugins-disable-deflate"),
])
def test_client_extension_options(kind: str, kw: dict[str, Any], offered: str, loop: LoopThread,
                                  peer: PeerServer) -> None:
    assert _offer(ClientEnv(kind, loop, peer, None), **kw) == offered


@pytest.mark.parametrize("kind", ["asyncio_server", "sync_server"])
@pytest.mark.parametrize(("kw", "accepted"), [
    pytest.param({}, True, id="defaults"),
    pytest.param({"extensions": []}, True, id="empty-list-still-gets-deflate"),
    pytest.param({"extensions": [ServerPerMessageDeflateFactory(server_no_context_takeover=True)]},
                 "server_no_context_takeover", id="deflate-in-the-list-not-added-again"),
    pytest.param({"extensions": [], "compression": None}, False, id="nothing"),
    pytest.param({"plugin_manager": NO_DEFLATE}, False, id="plugins-disable-deflate"),
])
def test_server_extension_options(kind: str, kw: dict[str, Any], accepted: bool | str, loop: LoopThread,
                                  tmp_path: Path) -> None:
    env = ServerEnv(kind, loop, None, tmp_path)
    with env.serving(None, kw) as server, env.connect(server.uri) as ws:  # type: ignore[arg-type]
        header = ext_header(ws.conn.response)
    assert header.startswith("permessage-deflate") is bool(accepted)
    if isinstance(accepted, str):
        assert accepted in header


@pytest.mark.parametrize("layer", [wa, ws_sync])
def test_an_unknown_compression_fails_at_the_call(layer: Any) -> None:
    with pytest.raises(ValueError, match=r"compression must be 'deflate' or None, got 'gzip'"):
        layer.connect("ws://127.0.0.1:1/", compression="gzip")
    with pytest.raises(ValueError, match=r"compression must be 'deflate' or None, got 'gzip'"):
        layer.serve(sync_handler, HOST, 0, compression="gzip")


# -- keywords and option types are checked when connect/serve is called ------------------------


@pytest.mark.parametrize(("layer", "call"), [
    (wa, lambda layer, **kw: layer.connect("ws://127.0.0.1:1/", **kw)),
    (wa, lambda layer, **kw: layer.serve(sync_handler, HOST, 0, **kw)),
    (ws_sync, lambda layer, **kw: layer.connect("ws://127.0.0.1:1/", **kw)),
    (ws_sync, lambda layer, **kw: layer.serve(sync_handler, HOST, 0, **kw)),
], ids=["asyncio-connect", "asyncio-serve", "sync-connect", "sync-serve"])
def test_a_misspelled_keyword_fails_at_the_call_with_a_suggestion(layer: Any, call: Any) -> None:
    # Port 1 on 127.0.0.1: nothing listens; the sync layer would fail to connect if the call got that far.
    with pytest.raises(TypeError, match=r"\(\) got an unexpected keyword argument 'open_timout'; "
                                        r"did you mean 'open_timeout'\?$"):
        call(layer, open_timout=5)
    with pytest.raises(TypeError, match=r"max_size must be an int \(bytes, the limit of a whole message\) or None, "
                                        r"got tuple \(1048576, 65536\)"):
        call(layer, max_size=(2**20, 2**16))  # python-websockets' (message, frame) pair
    with pytest.raises(TypeError, match=r"ping_interval must be a number of seconds or None, got str '20'"):
        call(layer, ping_interval="20")
    with pytest.raises(TypeError, match=r"subprotocols must be a list of strings or None, got str 'chat'"):
        call(layer, subprotocols="chat")


def test_the_loop_keywords_still_pass_through() -> None:
    async def echo_once(ws: Any) -> None:
        await ws.send(await ws.recv())

    async def main() -> None:
        async with wa.serve(echo_once, HOST, 0, backlog=5, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with wa.connect(f"ws://{HOST}:{port}/", happy_eyeballs_delay=0.25) as ws:
                await ws.send("through")
                assert await ws.recv() == "through"

    asyncio.run(main())
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'backlg'; did you mean 'backlog'\?"):
        wa.serve(sync_handler, HOST, 0, backlg=5)

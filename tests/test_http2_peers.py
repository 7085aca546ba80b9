"""WebSockets over HTTP/2 with real peers, started by the tests on 127.0.0.1 and stopped by PID.

* hypercorn (it implements RFC 8441 on its side) serves an ASGI echo
  application over TLS + HTTP/2; wskit's client talks to it.
* headless Chromium loads tests/browser/exchange.html from
  ``wskit.asyncio.http2.serve`` over TLS + HTTP/2 (self-signed certificate:
  ``--ignore-certificate-errors``) and opens its WebSocket on that HTTP/2
  connection; the server's connection object shows it was a stream.

Each skips, saying why, when the peer cannot be had.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_browser import PAGE, check, chromium, run_page  # noqa: F401 - chromium is a fixture

from wskit import Request, Response
from wskit.asyncio import ServerConnection, http2
from wskit.headers import Headers

HOST = "127.0.0.1"

ECHO_APP = textwrap.dedent('''
    """An ASGI echo application; /scope answers with what the server told it."""
    import json


    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "websocket":
            return
        await receive()
        offered = scope["subprotocols"]
        await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
        if scope["path"] == "/scope":
            shown = {"http_version": scope["http_version"], "scheme": scope["scheme"], "path": scope["path"]}
            await send({"type": "websocket.send", "text": json.dumps(shown)})
            await send({"type": "websocket.close", "code": 1000, "reason": "scope sent"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})
''')


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl binary to make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


# -- hypercorn serves, wskit's client connects ------------------------------------------------


@pytest.fixture
def hypercorn(certificate: tuple[Path, Path], tmp_path: Path) -> Iterator[int]:
    """hypercorn serving ECHO_APP over TLS (ALPN h2, http/1.1) on a socket this test made; yields its port.

    The listening socket exists before hypercorn starts (passed by file
    descriptor), so a client may connect at once: the connection waits in
    the backlog until hypercorn accepts it.
    """
    pytest.importorskip("hypercorn", reason="hypercorn is not installed (it is in the dev extra)")
    cert, key = certificate
    (tmp_path / "h2echo.py").write_text(ECHO_APP)
    listener = socket.create_server((HOST, 0))
    listener.set_inheritable(True)
    port = listener.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hypercorn", "h2echo:app", "--workers", "0", "--bind", f"fd://{listener.fileno()}",
         "--certfile", str(cert), "--keyfile", str(key)],
        pass_fds=[listener.fileno()], cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        yield port
    finally:
        listener.close()
        proc.terminate()
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        assert "Traceback" not in output, output


def test_wskit_client_with_hypercorn_over_http2(hypercorn: int, certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate
    ctx = ssl.create_default_context(cafile=str(cert))
    uri = f"wss://{HOST}:{hypercorn}"

    async def main() -> None:
        ws = await http2.connect(uri + "/echo", ssl=ctx, subprotocols=["chat"])
        assert isinstance(ws, http2.H2ClientConnection) and ws.http_version == "2"
        assert ws.subprotocol == "chat"
        assert ws.response is not None and ws.response.status_code == 200
        assert [e.name for e in ws.protocol.extensions] == ["permessage-deflate"]
        for message in ("hello", b"\x00\xff" * 10, "é" * 50_000, b"\x01" * 500_000):
            await ws.send(message)
            assert await ws.recv() == message
        # A second WebSocket on the same HTTP/2 connection; hypercorn says it came over HTTP/2.
        scope_ws = await http2.connect(uri + "/scope", ssl=ctx)
        assert scope_ws.transport._carrier is ws.transport._carrier  # type: ignore[union-attr]
        assert json.loads(await scope_ws.recv()) == {"http_version": "2", "scheme": "wss", "path": "/scope"}
        await scope_ws.wait_closed()
        assert (scope_ws.close_code, scope_ws.close_reason) == (1000, "scope sent")
        # The first one is still open.
        await ws.send("after")
        assert await ws.recv() == "after"
        await ws.close()
        assert ws.close_code == 1000

    run(main())


def test_many_wskit_streams_on_one_hypercorn_connection(hypercorn: int, certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate
    ctx = ssl.create_default_context(cafile=str(cert))

    async def main() -> None:
        sockets = await asyncio.gather(*(http2.connect(f"wss://{HOST}:{hypercorn}/echo", ssl=ctx) for _ in range(20)))
        assert len({ws.transport._carrier for ws in sockets}) == 1  # type: ignore[union-attr]
        await asyncio.gather(*(ws.send(f"m{i}") for i, ws in enumerate(sockets)))
        assert await asyncio.gather(*(ws.recv() for ws in sockets)) == [f"m{i}" for i in range(20)]
        await asyncio.gather(*(ws.close() for ws in sockets))
        assert {ws.close_code for ws in sockets} == {1000}

    run(main())


# -- wskit serves, headless Chromium connects -------------------------------------------------


def test_chromium_opens_its_websocket_over_http2(chromium: str, certificate: tuple[Path, Path]) -> None:  # noqa: F811
    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    websockets: list[ServerConnection] = []
    pages: list[str] = []

    async def echo(ws: ServerConnection) -> None:
        websockets.append(ws)
        async for message in ws:
            await ws.send(message)

    def page(connection: ServerConnection, request: Request) -> Response | None:
        if request.method == "CONNECT" or request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        pages.append(type(connection).__name__)
        body = PAGE if request.path == "/" else b"not found"
        headers = Headers([("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
        return Response(200 if request.path == "/" else 404, "", headers, body)

    async def main() -> tuple[Any, Any]:
        async with http2.serve(echo, HOST, 0, ssl=server_ctx, process_request=page, subprotocols=["chat"],
                               max_size=None) as server:
            port = server.sockets[0].getsockname()[1]
            return await run_page(chromium, f"https://{HOST}:{port}/", "--ignore-certificate-errors")

    check(*run(main()))
    assert pages and pages[0] == "H2ServerConnection"  # the page itself came over HTTP/2
    (ws,) = websockets
    # The browser's WebSocket was a stream of an HTTP/2 connection (RFC 8441), not an HTTP/1.1 upgrade.
    assert isinstance(ws, http2.H2ServerConnection) and ws.http_version == "2"
    assert ws.stream_id is not None and ws.stream_id > 1  # after the page's own stream
    assert ws.request is not None and ws.request.method == "CONNECT"
    assert ws.close_code == 1000

"""wskit under uvicorn (``--ws wskit.asgi:UvicornProtocol``) with a plain ASGI application.

Every test talks to a real uvicorn started in a child process on 127.0.0.1
(tests/asgi_apps/server.py) serving tests/asgi_apps/plain.py, with wskit's
asyncio client or a sans-I/O client on a socket where the test needs to see
the frames themselves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("uvicorn")

from wskit import ClientProtocol, Close, Ping, ServerProtocol, TextMessage
from wskit.asgi import ASGIConnection
from wskit.asyncio import connect, unix_connect
from wskit.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidHandshake
from wskit.plugin import PluginManager

from asgi_apps.server import Uvicorn

PLAIN = "asgi_apps.plain:app"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture(scope="module")
def server() -> Iterator[Uvicorn]:
    """uvicorn + wskit with its default settings, shared by the tests that change none."""
    with Uvicorn(PLAIN) as srv:
        yield srv


async def report(srv: Uvicorn, key: str) -> Any:
    """What the application recorded under ``key`` (see plain.py's /report)."""
    async with connect(srv.url(f"/report?of={key}")) as ws:
        return json.loads(await ws.recv())


async def wait_report(srv: Uvicorn, key: str) -> Any:
    """The report under ``key``, once the application wrote it (it does when its connection ends)."""
    while True:
        value = await report(srv, key)
        if value is not None:
            return value
        await asyncio.sleep(0.02)


class RawClient:
    """A client on a socket: wskit's sans-I/O ClientProtocol, nothing answered automatically."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proto: ClientProtocol) -> None:
        self.reader, self.writer, self.proto = reader, writer, proto
        self.events: list[Any] = []
        self.response: Any = None

    @classmethod
    async def open(cls, port: int, path: str = "/echo", **kwargs: Any) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        proto = ClientProtocol(f"ws://127.0.0.1:{port}{path}", **kwargs)
        writer.writelines(proto.connect())
        self = cls(reader, writer, proto)
        self.response = await self.next_event()
        return self

    async def next_event(self) -> Any:
        while not self.events:
            data = await self.reader.read(65536)
            if not data:
                self.events += self.proto.receive_eof()
                break
            self.events += self.proto.receive_data(data)
        return self.events.pop(0)

    def close(self) -> None:
        self.writer.close()


# -- messages, the scope, the handshake --------------------------------------------


def test_echo_text_and_binary_with_subprotocol_and_app_headers(server: Uvicorn) -> None:
    async def main() -> None:
        async with connect(server.url("/echo"), subprotocols=["chat", "other"]) as ws:
            assert ws.subprotocol == "chat"
            headers = ws.response.headers
            assert headers["x-app"] == "plain"
            assert headers["Server"] == "uvicorn"  # uvicorn's default headers, not wskit's
            assert "date" in headers
            assert "permessage-deflate" in headers["Sec-WebSocket-Extensions"]
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xff" * 1000)
            assert await ws.recv() == b"\x00\xff" * 1000
            await ws.send("x" * 200_000)  # compressed by both sides
            assert await ws.recv() == "x" * 200_000

    run(main())


def test_scope(server: Uvicorn) -> None:
    async def main() -> None:
        async with connect(server.url("/scope?a=1&b=%20"), subprotocols=["p1", "p2"],
                           extra_headers=[("X-Custom", "v")]) as ws:
            scope = json.loads(await ws.recv())
            local = ws.local_address
        assert scope["type"] == "websocket"
        assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
        assert scope["http_version"] == "1.1"
        assert scope["scheme"] == "ws"
        assert scope["path"] == "/scope"
        assert scope["raw_path"] == "/scope"
        assert scope["query_string"] == "a=1&b=%20"
        assert scope["root_path"] == ""
        assert scope["subprotocols"] == ["p1", "p2"]
        assert scope["server"] == ["127.0.0.1", server.port]
        assert scope["client"] == [local[0], local[1]]
        assert ["x-custom", "v"] in scope["headers"]
        assert all(name == name.lower() for name, _ in scope["headers"])
        assert scope["extensions"] == {"websocket.http.response": {}}

    run(main())


def test_client_close_code_and_reason_reach_the_app(server: Uvicorn) -> None:
    async def main() -> None:
        ws = await connect(server.url("/echo?key=client-close"))
        await ws.close(4321, "bye now")
        assert await wait_report(server, "client-close") == {
            "type": "websocket.disconnect", "code": 4321, "reason": "bye now"}

    run(main())


def test_app_close_code_and_reason_reach_the_client_and_later_sends_raise_oserror(server: Uvicorn) -> None:
    async def main() -> None:
        async with connect(server.url("/close?code=4000&reason=done&key=app-close")) as ws:
            with pytest.raises(ConnectionClosedError) as caught:  # 4000 is not a clean code
                await ws.recv()
            assert (caught.value.code, caught.value.reason) == (4000, "done")
        assert await wait_report(server, "app-close") == {"send after close": "ClientDisconnected", "oserror": True}

    run(main())


def test_close_before_accept_is_403(server: Uvicorn) -> None:
    async def main() -> None:
        with pytest.raises(InvalidHandshake) as caught:
            await connect(server.url("/deny-close?key=deny-close"))
        assert caught.value.response.status_code == 403
        assert caught.value.response.headers["Server"] == "uvicorn"
        assert (await wait_report(server, "deny-close"))["code"] == 1006

    run(main())


def test_http_response_extension_denies_with_the_apps_response(server: Uvicorn) -> None:
    async def main() -> None:
        with pytest.raises(InvalidHandshake) as caught:
            await connect(server.url("/deny"))
        response = caught.value.response
        assert response.status_code == 418
        assert response.headers["x-deny"] == "yes"
        assert response.headers["content-type"] == "text/plain"
        assert response.body == b"no tea for you"

    run(main())


def test_invalid_upgrade_request_gets_the_cores_answer(server: Uvicorn) -> None:
    async def main() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(BAD_REQUEST)
        answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert b"Sec-WebSocket-Key" in answer

    run(main())


BAD_REQUEST = (b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")  # no key


def test_invalid_upgrade_request_is_logged_at_debug_level(tmp_path: Path) -> None:
    """With wskit's loggers at DEBUG (uvicorn's --log-config), the reason of a 400 is logged."""
    config = tmp_path / "logging.json"
    config.write_text(json.dumps({
        "version": 1, "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {"wskit": {"level": "DEBUG"}},
    }))

    async def main(port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(BAD_REQUEST)
        answer = await reader.read()
        writer.close()
        return answer

    with Uvicorn(PLAIN, "--log-config", str(config)) as srv:
        assert run(main(srv.port)).startswith(b"HTTP/1.1 400 ")
        srv.wait_for(r"! invalid opening request: .*Sec-WebSocket-Key")


def test_frames_sent_before_the_answer_reach_the_app_once_it_accepts(server: Uvicorn) -> None:
    """A client that sends a message right after its request, before the 101: the message is
    kept until the application accepts, then delivered (here: echoed)."""

    async def main() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        proto = ClientProtocol(f"ws://127.0.0.1:{server.port}/accept-late?gate=early&key=early", extensions=[])
        writer.writelines(proto.connect())
        await asyncio.get_running_loop().run_in_executor(None, server.wait_for, "early: waiting")
        # A masked text frame (a zero mask key) the core of this client will not send before the 101.
        writer.write(b"\x81\x8a\x00\x00\x00\x00sent early")
        await writer.drain()
        async with connect(server.url("/release?gate=early")):
            pass
        client = RawClient(reader, writer, proto)
        response = await client.next_event()
        assert response.status_code == 101
        assert await client.next_event() == TextMessage("sent early")
        client.close()

    run(main())


def test_unix_socket_scope(tmp_path: Path) -> None:
    """Under --uds the scope's server is [path, None] and its client None (ASGI spec)."""
    path = str(tmp_path / "ws.sock")

    async def main() -> None:
        async with unix_connect(path, "ws://localhost/scope") as ws:
            scope = json.loads(await ws.recv())
        assert scope["server"] == [path, None]
        assert scope["client"] is None
        async with unix_connect(path, "ws://localhost/echo") as ws:
            await ws.send("over a unix socket")
            assert await ws.recv() == "over a unix socket"

    with Uvicorn(PLAIN, "--uds", path) as srv:
        run(main())
        srv.wait_for(r' - "WebSocket /scope" \[accepted\]')


def test_extension_factory_failing_during_accept_is_500_and_logged() -> None:
    """A plugin's extension factory raises while the application accepts: the client gets a
    500 without the exception's text, the server logs it, the application's accept raises
    ClientDisconnected and receive() says the connection is gone."""

    async def main(srv: Uvicorn) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET /accept-report?key=broken HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: x-broken\r\n\r\n")
        answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 500 "), answer
        assert b"secret detail" not in answer
        assert await wait_report(srv, "broken") == {
            "raised": "ClientDisconnected", "code": 1006,
            "then": {"type": "websocket.disconnect", "code": 1006, "reason": ""}}
        async with connect(srv.url("/echo")) as ws:  # a client that does not offer it is served
            await ws.send("fine")
            assert await ws.recv() == "fine"

    with Uvicorn("asgi_apps.broken_extension:app") as srv:
        run(main(srv))
        srv.wait_for(r"WebSocket handshake failed: .*extension factory 'x-broken'.*secret detail")
        assert "Exception in ASGI application" not in srv.output


# -- application errors ----------------------------------------------------------


def test_exception_before_accept_is_500(server: Uvicorn) -> None:
    async def main() -> None:
        with pytest.raises(InvalidHandshake) as caught:
            await connect(server.url("/raise-before"))
        assert caught.value.response.status_code == 500

    run(main())
    server.wait_for("Exception in ASGI application")
    server.wait_for("RuntimeError: boom before accept")


def test_exception_after_accept_is_1011(server: Uvicorn) -> None:
    async def main() -> None:
        async with connect(server.url("/raise-after")) as ws:
            await ws.send("go")
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv()
            assert caught.value.code == 1011

    run(main())
    server.wait_for("RuntimeError: boom after accept")


def test_returning_without_an_answer_is_500(server: Uvicorn) -> None:
    async def main() -> None:
        with pytest.raises(InvalidHandshake) as caught:
            await connect(server.url("/return-early"))
        assert caught.value.response.status_code == 500

    run(main())
    server.wait_for("ASGI application returned without accepting or denying")


@pytest.mark.parametrize("case", ["accept-twice", "text-not-str", "both", "neither", "unknown", "bad-code",
                                  "bool-code", "no-type"])
def test_invalid_message_after_accept_raises_logs_and_closes_1011(server: Uvicorn, case: str) -> None:
    key = f"invalid-after-{case}"

    async def main() -> None:
        async with connect(server.url(f"/invalid?case={case}&key={key}")) as ws:
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv()
            assert caught.value.code == 1011
        result = await wait_report(server, key)
        assert result["raised"] == "RuntimeError"
        assert "invalid message" in result["message"]
        assert result["then"]["type"] == "websocket.disconnect"  # receive() did not hang
        assert result["then"]["code"] == 1011

    run(main())
    server.wait_for(r"ASGI application sent an invalid message .* while the WebSocket connection is open")


@pytest.mark.parametrize("case", ["send-before-accept", "bad-status", "no-type", "subprotocol-not-str",
                                  "subprotocol-not-offered", "accept-bad-headers", "start-bad-headers", "not-body",
                                  "body-not-bytes", "body-on-204"])
def test_invalid_message_before_accept_raises_logs_and_answers_500(server: Uvicorn, case: str) -> None:
    key = f"invalid-before-{case}"

    async def main() -> None:
        with pytest.raises(InvalidHandshake) as caught:
            await connect(server.url(f"/invalid?case={case}&before=1&key={key}"))
        assert caught.value.response.status_code == 500
        result = await wait_report(server, key)
        assert result["raised"] == "RuntimeError"
        assert result["then"] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}

    run(main())
    phase = "responding" if case in ("not-body", "body-not-bytes", "body-on-204") else "connecting"
    server.wait_for(rf"ASGI application sent an invalid message .* while the WebSocket connection is {phase}")


def test_invalid_message_error_left_to_propagate_is_logged_once(server: Uvicorn) -> None:
    """The application does not catch the RuntimeError of its invalid message: 1011, and the
    error is not logged a second time as an exception escaping the application."""

    async def main() -> None:
        async with connect(server.url("/invalid?case=not-a-message&propagate=1")) as ws:
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv()
            assert caught.value.code == 1011
        with pytest.raises(InvalidHandshake):  # a line logged after everything the first one logs
            await connect(server.url("/deny-close?key=after-propagate"))

    run(main())
    server.wait_for(r'"WebSocket /deny-close\?key=after-propagate" 403')
    assert len([line for line in server.lines if "'websocket.not-a-message'" in line]) == 1


def test_send_after_a_denial_raises_client_disconnected(server: Uvicorn) -> None:
    async def main() -> None:
        with pytest.raises(InvalidHandshake) as caught:
            await connect(server.url("/deny-then-send?key=deny-then-send"))
        assert caught.value.response.status_code == 403
        assert await wait_report(server, "deny-then-send") == {"raised": "ClientDisconnected"}

    run(main())


def test_application_returning_a_value_is_logged(server: Uvicorn) -> None:
    async def main() -> None:
        async with connect(server.url("/return-value")) as ws:
            await ws.wait_closed()
            assert ws.close_code == 1000

    run(main())
    server.wait_for("ASGI application should return None, but returned 42")


def test_application_closing_then_returning_a_value_keeps_its_close_code(server: Uvicorn) -> None:
    """The application's Close was sent: returning a value is logged, the client has 1000."""

    async def main() -> None:
        async with connect(server.url("/return-value?close=1")) as ws:
            await ws.wait_closed()
            assert (ws.close_code, ws.close_reason) == (1000, "")

    run(main())
    server.wait_for("ASGI application should return None, but returned 'closed'")


def test_app_close_without_a_code_is_1000(server: Uvicorn) -> None:
    async def main() -> None:
        async with connect(server.url("/close?key=default-close")) as ws:
            with pytest.raises(ConnectionClosedOK) as caught:
                await ws.recv()
            assert (caught.value.code, caught.value.reason) == (1000, "")

    run(main())


# -- uvicorn's settings ----------------------------------------------------------------


def test_ws_max_size() -> None:
    async def main(port: int) -> None:
        # wskit's own plugins only: a third-party extension could change the size on the wire.
        async with connect(f"ws://127.0.0.1:{port}/echo", max_size=None,
                           plugin_manager=PluginManager(entry_points=False)) as ws:
            await ws.send("a" * 1000)
            assert await ws.recv() == "a" * 1000
            await ws.send("a" * 1001)
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv()
            assert caught.value.code == 1009

    with Uvicorn(PLAIN, "--ws-max-size", "1000") as srv:
        run(main(srv.port))


def test_ws_per_message_deflate_off() -> None:
    async def main(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/echo") as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            await ws.send("plain")
            assert await ws.recv() == "plain"

    with Uvicorn(PLAIN, "--ws-per-message-deflate", "false") as srv:
        run(main(srv.port))


def test_ping_interval_and_timeout() -> None:
    """A client that never answers Pings gets one per interval, then close 1011 after the timeout."""

    async def main(port: int) -> None:
        client = await RawClient.open(port)
        assert client.response.status_code == 101
        assert isinstance(await client.next_event(), Ping)
        close = await client.next_event()
        assert isinstance(close, Close)
        assert (close.code, close.reason) == (1011, "keepalive ping timeout")
        client.close()

    with Uvicorn(PLAIN, "--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.3") as srv:
        run(main(srv.port))


def test_ping_answered_keeps_the_connection() -> None:
    async def main(port: int) -> None:
        client = await RawClient.open(port)
        for _ in range(3):
            ping = await client.next_event()
            assert isinstance(ping, Ping)
            client.writer.writelines(client.proto.send_pong(ping.data))
        client.writer.writelines(client.proto.send_text("still here"))
        assert await client.next_event() == TextMessage("still here")
        client.close()

    with Uvicorn(PLAIN, "--ws-ping-interval", "0.1", "--ws-ping-timeout", "0.5") as srv:
        run(main(srv.port))


def test_ws_max_queue_bounds_what_a_stalled_app_buffers() -> None:
    """The app stops receiving: with ws_max_queue=1 the server stops reading, and the client's sends wait.

    With a large queue the same client gets everything into the server; the
    counts the app takes afterwards show nothing was lost either way.
    """
    message = b"m" * 65536

    async def push(port: int, total: int) -> tuple[int, int]:
        async with connect(f"ws://127.0.0.1:{port}/stall", compression=None, write_limit=65536) as ws:
            await ws.send("first")
            sent = 0
            while sent < total:
                try:
                    await asyncio.wait_for(ws.send(message), 1.0)
                except asyncio.TimeoutError:  # asyncio.wait_for's (TimeoutError from Python 3.11)
                    break
                sent += 1
            async with connect(f"ws://127.0.0.1:{port}/release"):
                pass
            await ws.send("end")
            count = int(await ws.recv())
            return sent, count

    mib = 16
    with Uvicorn(PLAIN, "--ws-max-queue", "1") as srv:
        sent, count = run(push(srv.port, mib * 16))
    assert sent < mib * 16  # blocked: the server did not read on (socket buffers are a few MiB at most)
    assert count >= sent  # the one that timed out may have left too
    with Uvicorn(PLAIN, "--ws-max-queue", "100000") as srv:
        sent, count = run(push(srv.port, mib * 16))
    assert (sent, count) == (mib * 16, mib * 16)


def test_slow_client_makes_the_apps_send_wait(server: Uvicorn) -> None:
    async def main() -> None:
        client = await RawClient.open(server.port, "/flood?key=flood", extensions=[])
        # Never read: the server's write buffer fills, then the application's send waits.
        result = await wait_report(server, "flood")
        assert 0 < result["sent before waiting"] < 64 * 2**20
        client.close()

    run(main())


def test_default_headers_and_root_path() -> None:
    async def main(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/scope") as ws:
            headers = ws.response.headers
            scope = json.loads(await ws.recv())
        assert headers["x-site"] == "one"
        assert "Server" not in headers
        assert "date" not in headers
        assert scope["root_path"] == "/api"
        assert scope["path"] == "/api/scope"
        assert scope["raw_path"] == "/api/scope"

    with Uvicorn(PLAIN, "--header", "X-Site:one", "--no-server-header", "--no-date-header",
                 "--root-path", "/api") as srv:
        run(main(srv.port))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl binary to make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_wss_scheme_under_tls(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate

    async def main(port: int) -> None:
        context = ssl.create_default_context(cafile=str(cert))
        async with connect(f"wss://127.0.0.1:{port}/scope", ssl=context) as ws:
            scope = json.loads(await ws.recv())
        assert scope["scheme"] == "wss"
        async with connect(f"wss://127.0.0.1:{port}/echo", ssl=context) as ws:
            await ws.send("over tls")
            assert await ws.recv() == "over tls"

    with Uvicorn(PLAIN, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)) as srv:
        run(main(srv.port))


# -- shutdown ------------------------------------------------------------------------


def test_graceful_shutdown_closes_open_connections_with_1012_and_leaves_no_task() -> None:
    srv = Uvicorn(PLAIN, "--timeout-graceful-shutdown", "15")

    async def main() -> None:
        opened = [await connect(srv.url(f"/hold?key=conn{i}")) for i in range(3)]
        # One more still waiting for the application's answer.
        pending = asyncio.ensure_future(connect(srv.url("/hold?accept=0&key=pending")))
        srv.wait_for(r'"WebSocket /hold\?key=conn2" \[accepted\]')
        for ws in opened:
            await ws.send("ping")  # not answered by /hold, but it keeps going
        loop = asyncio.get_running_loop()
        stopping = loop.run_in_executor(None, srv.stop, signal.SIGINT)
        for ws in opened:
            with pytest.raises((ConnectionClosedOK, ConnectionClosedError)) as caught:
                while True:
                    await ws.recv()
            assert caught.value.code == 1012
        with pytest.raises(InvalidHandshake) as refused:
            await pending
        assert refused.value.response.status_code == 503
        assert await stopping == 0

    try:
        run(main())
    finally:
        srv.stop()
    for i in range(3):
        srv.wait_for(f"conn{i}: disconnect 1012")
        srv.wait_for(f"conn{i}: send raised OSError")
    srv.wait_for("pending: disconnect 1006")
    assert "Cancel" not in srv.output  # no task had to be cancelled: all of them ended
    assert "Task was destroyed" not in srv.output
    assert "Traceback" not in srv.output


def test_applications_that_outlive_the_graceful_shutdown_are_cancelled() -> None:
    """One client answers the 1012 Close (its application then hangs), one does not
    (its application is cancelled while the closing handshake waits): both end."""
    srv = Uvicorn(PLAIN, "--timeout-graceful-shutdown", "1")

    async def main() -> None:
        ws = await connect(srv.url("/stubborn?key=answering"))
        raw = await RawClient.open(srv.port, "/stubborn?key=silent", extensions=[])
        srv.wait_for(r'"WebSocket /stubborn\?key=silent" \[accepted\]')
        loop = asyncio.get_running_loop()
        stopping = loop.run_in_executor(None, srv.stop, signal.SIGINT)
        with pytest.raises(ConnectionClosedError) as caught:
            await ws.recv()
        assert caught.value.code == 1012
        event = await raw.next_event()
        assert isinstance(event, Close) and event.code == 1012
        while True:  # no answer from this client: the server ends the connection all the same
            try:
                event = await raw.next_event()
            except Exception:  # the core reports the EOF that follows the server's Close
                break
        raw.close()
        assert await stopping == 0

    try:
        run(main())
    finally:
        srv.stop()
    srv.wait_for("answering: disconnect 1012")


# -- the layer itself --------------------------------------------------------------


def test_import_wskit_asgi_does_not_import_uvicorn() -> None:
    code = "import sys, wskit.asgi; print('uvicorn' in sys.modules, 'starlette' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_accept_server_header() -> None:
    """ServerProtocol.accept(server_header=): wskit's by default, another one, or none."""
    request = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    answers = []
    for kwargs in ({}, {"server_header": "uvicorn"}, {"server_header": None}):
        server = ServerProtocol(extensions=[])
        server.receive_data(request)
        server.accept(**kwargs)
        assert server.response is not None
        answers.append(server.response.headers.get("Server"))
    assert answers[0].startswith("wskit/")
    assert answers[1:] == ["uvicorn", None]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_asgi_connection_as_an_asyncio_protocol_of_its_own() -> None:
    """ASGIConnection without a server's extras: no default headers in the 101 (no Server
    header either), and the access lines only when its error logger is enabled for INFO."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/deny":
            await send({"type": "websocket.close"})
            return
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": message["text"]})
        await send({"type": "websocket.close"})

    async def main(level: int) -> list[str]:
        logger = logging.Logger(f"asgi-test-{level}", level)
        records = Records()
        logger.addHandler(records)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: ASGIConnection(app, ServerProtocol(extensions=[]),
                                                                 error_logger=logger), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/echo") as ws:
            assert "Server" not in ws.response.headers
            assert "Date" not in ws.response.headers
            await ws.send("plain asyncio")
            assert await ws.recv() == "plain asyncio"
            await ws.wait_closed()
            assert ws.close_code == 1000
        with pytest.raises(InvalidHandshake) as caught:
            await connect(f"ws://127.0.0.1:{port}/deny")
        assert caught.value.response.status_code == 403
        assert "Server" not in caught.value.response.headers
        server.close()
        await server.wait_closed()
        return records.messages

    assert run(main(logging.WARNING)) == []
    lines = run(main(logging.INFO))
    assert len(lines) == 2
    assert lines[0].endswith(' - "WebSocket /echo" [accepted]')
    assert lines[1].endswith(' - "WebSocket /deny" 403')

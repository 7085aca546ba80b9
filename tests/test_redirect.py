"""Redirects in the opening handshake: the rules (wskit.redirects) and both clients against real servers."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

import wskit.asyncio as wa
import wskit.sync as ws_sync
from wskit.events import Response
from wskit.exceptions import InvalidHandshake, RedirectError
from wskit.headers import Headers
from wskit.redirects import redirect_target

from proxy_servers import HOST, RedirectServer, echo_server

LAYERS = ["asyncio", "sync"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def moved(location: str | None, status: int = 302) -> Response:
    return Response(status, "Moved", Headers([] if location is None else [("Location", location)]))


# -- the rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(("uri", "location", "target"), [
    ("ws://a.example/x/y", "z", "ws://a.example/x/z"),
    ("ws://a.example/x/y", "/z?q=1", "ws://a.example/z?q=1"),
    ("ws://a.example/x", "//b.example:81/p", "ws://b.example:81/p"),
    ("ws://a.example/x", "wss://b.example/p", "wss://b.example/p"),
    ("ws://a.example/x", "https://b.example/p", "wss://b.example/p"),
    ("wss://a.example/x", "http://a.example/p".replace("http", "https"), "wss://a.example/p"),
    # Credentials: kept on the same origin (and ws→wss on default ports), dropped elsewhere.
    ("ws://u:p@a.example/x", "/y", "ws://u:p@a.example/y"),
    ("ws://u:p@a.example/x", "wss://a.example/y", "wss://u:p@a.example/y"),
    ("ws://u:p@a.example:8080/x", "ws://a.example:8081/y", "ws://a.example:8081/y"),
    ("ws://u:p@a.example/x", "ws://b.example/y", "ws://b.example/y"),
    ("ws://a.example/x", "/y#fragment", "ws://a.example/y"),  # RFC 6455 §3: no fragment in a WebSocket URI
])
def test_redirect_targets(uri: str, location: str, target: str) -> None:
    for status in (301, 302, 303, 307, 308):
        assert redirect_target(uri, moved(location, status)) == target


def test_other_statuses_are_not_redirects() -> None:
    assert redirect_target("ws://a/", moved("/x", 300)) is None
    assert redirect_target("ws://a/", moved("/x", 304)) is None
    assert redirect_target("ws://a/", moved(None, 403)) is None


@pytest.mark.parametrize(("uri", "location", "message"), [
    ("wss://a.example/", "ws://a.example/", "from wss:// to ws:// would drop TLS"),
    ("wss://a.example/", "http://a.example/", "from wss:// to ws://"),
    ("ws://a.example/", None, "with no Location header"),
    ("ws://a.example/", "ftp://a.example/", "invalid Location 'ftp://a.example/'"),
    ("ws://a.example/", "http://[oops/", "invalid Location"),
    ("ws://a.example/", "", "invalid Location"),
])
def test_bad_redirects(uri: str, location: str | None, message: str) -> None:
    with pytest.raises(RedirectError, match=message) as info:
        redirect_target(uri, moved(location))
    assert info.value.response is not None and info.value.uri == uri


def test_redirect_errors_never_show_the_password() -> None:
    with pytest.raises(RedirectError) as info:
        redirect_target("wss://user:secret@a.example/", moved("ws://a.example/"))
    assert "secret" not in str(info.value) and "secret" not in info.value.uri


# -- both layers ---------------------------------------------------------------------------


def open_and_echo(layer: str, uri: str, **options: Any) -> tuple[str, Any]:
    if layer == "sync":
        with ws_sync.connect(uri, **options) as ws:
            ws.send("hi")
            return str(ws.recv(timeout=5)), ws.request

    async def main() -> tuple[str, Any]:
        async with wa.connect(uri, **options) as ws:
            await ws.send("hi")
            return str(await ws.recv(timeout=5)), ws.request

    return asyncio.run(main())


@pytest.fixture
def server() -> Iterator[Any]:
    with echo_server() as running:
        yield running


@pytest.mark.parametrize("layer", LAYERS)
def test_follows_relative_then_absolute_redirects(layer: str, server: Any) -> None:
    def answer(path: str) -> tuple[int, list[tuple[str, str]]]:
        if path == "/start":
            return 307, [("Location", "again?x=1")]  # no scheme: relative to the current URI
        return 308, [("Location", f"{server.uri}final")]

    with RedirectServer(answer) as redirector:
        assert open_and_echo(layer, redirector.uri("/start"))[0] == "hi"
        assert redirector.paths == ["/start", "/again?x=1"]
    assert server.requests[0].path == "/final"


@pytest.mark.parametrize("layer", LAYERS)
def test_redirect_loop_stops_with_a_clear_error(layer: str) -> None:
    with RedirectServer(lambda path: (302, [("Location", "/")])) as redirector:
        started = time.monotonic()
        with pytest.raises(RedirectError, match="more than 10 redirects") as info:
            open_and_echo(layer, redirector.uri("/"), open_timeout=5)
        assert time.monotonic() - started < 4
        assert len(redirector.paths) == 11
        with pytest.raises(RedirectError, match="more than 2 redirects"):
            open_and_echo(layer, redirector.uri("/"), max_redirects=2)
        assert len(redirector.paths) == 11 + 3
    assert info.value.response is not None and info.value.response.status_code == 302


@pytest.mark.parametrize("layer", LAYERS)
def test_max_redirects_zero_gives_the_redirect_itself(layer: str) -> None:
    with RedirectServer(lambda path: (301, [("Location", "/elsewhere")])) as redirector:
        with pytest.raises(InvalidHandshake) as info:
            open_and_echo(layer, redirector.uri("/"), max_redirects=0)
    assert not isinstance(info.value, RedirectError)
    assert info.value.response is not None and info.value.response.status_code == 301


@pytest.mark.parametrize("layer", LAYERS)
def test_bad_location_fails_clearly(layer: str) -> None:
    with RedirectServer(lambda path: (302, [("Location", "http://[not-a-host/")])) as redirector:
        with pytest.raises(RedirectError, match=r"invalid Location 'http://\[not-a-host/'"):
            open_and_echo(layer, redirector.uri("/"), open_timeout=5)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize("layer", LAYERS)
def test_ws_to_wss_is_followed_and_wss_to_ws_refused(layer: str, ca: trustme.CA, server: Any, tmp_path: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(HOST).configure_cert(server_ctx)
    # A ws:// URI takes no ssl=: the wss:// it is sent to uses the default context, which trusts SSL_CERT_FILE.
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    with echo_server(tls=server_ctx) as secure, RedirectServer(lambda p: (301, [("Location", secure.uri)])) as up:
        assert open_and_echo(layer, up.uri("/"))[0] == "hi"
    with RedirectServer(lambda p: (302, [("Location", server.uri)]), tls=server_ctx) as down:
        with pytest.raises(RedirectError, match="from wss:// to ws://"):
            open_and_echo(layer, down.uri("/"))
    assert server.requests == []


@pytest.mark.parametrize("layer", LAYERS)
def test_credentials_dropped_on_cross_origin_redirect(layer: str, server: Any) -> None:
    with RedirectServer(lambda p: (302, [("Location", server.uri)])) as redirector:
        uri = f"ws://alice:pw@{HOST}:{redirector.port}/"
        open_and_echo(layer, uri)
        assert b"Authorization: Basic" in redirector.heads[0]
    assert server.requests[0].headers.get("Authorization") is None


@pytest.mark.parametrize("layer", LAYERS)
def test_credentials_kept_on_same_origin_redirect(layer: str) -> None:
    seen: list[Any] = []

    def process_request(conn: Any, request: Any) -> Any:
        seen.append(request)
        if request.path == "/old":
            return Response(302, "Found", Headers([("Location", "/new"), ("Content-Length", "0")]))
        return None

    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    served = ws_sync.serve(echo, HOST, 0, process_request=process_request)
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    try:
        port = served.socket.getsockname()[1]
        assert open_and_echo(layer, f"ws://{HOST}:{port}/old", auth=("alice", "pw"))[0] == "hi"
    finally:
        served.shutdown()
        thread.join(5)
    assert [r.path for r in seen] == ["/old", "/new"]
    assert all(r.headers.get("Authorization") == "Basic YWxpY2U6cHc=" for r in seen)

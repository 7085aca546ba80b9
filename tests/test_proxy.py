"""Proxies: the sans-I/O rules (wskit.proxy) and both clients through real proxies on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

import wskit.asyncio as wa
import wskit.sync as ws_sync
from wskit.exceptions import InvalidURI, ProxyError
from wskit.handshake import parse_uri
from wskit.proxy import ConnectHandshake, bypasses_proxy, parse_proxy, proxy_from_environment

from proxy_servers import HOST, HTTPProxy, SocksProxy, echo_server

LAYERS = ["asyncio", "sync"]
PROXY_VARIABLES = ["http_proxy", "https_proxy", "all_proxy", "no_proxy", "REQUEST_METHOD"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's proxy variables never reach these tests; each test sets its own."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) for 127.0.0.1, from a test CA."""
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(HOST, "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def echo_once(layer: str, uri: str, **options: Any) -> str:
    """Connect with ``options``, send one message, return the echo."""
    if layer == "sync":
        with ws_sync.connect(uri, **options) as ws:
            ws.send("through")
            return str(ws.recv(timeout=5))

    async def main() -> str:
        async with wa.connect(uri, **options) as ws:
            await ws.send("through")
            return str(await ws.recv(timeout=5))

    return asyncio.run(main())


@pytest.fixture
def server() -> Iterator[Any]:
    with echo_server() as running:
        yield running


# -- sans-I/O: proxy URLs ----------------------------------------------------------


def test_parse_proxy_reads_scheme_host_port_and_credentials() -> None:
    assert parse_proxy("http://proxy.example:3128") == parse_proxy("proxy.example:3128")
    proxy = parse_proxy("https://us%40r:p%3Ass@[::1]")
    assert (proxy.scheme, proxy.host, proxy.port, proxy.user_info) == ("https", "::1", 443, ("us@r", "p:ss"))
    assert str(proxy) == "https://[::1]:443"  # no credentials in messages
    assert parse_proxy("socks5h://h").port == 1080
    assert parse_proxy("socks5h://h").remote_dns and not parse_proxy("socks5://h").remote_dns


@pytest.mark.parametrize(("url", "what"), [
    ("ftp://user:secret@h:21", "scheme must be one of"),
    ("http://:8080", "missing host"),
    ("http://h:99999", "Port out of range"),
    ("http://h:3128/path", "no path"),
])
def test_parse_proxy_rejects_bad_urls_without_showing_the_password(url: str, what: str) -> None:
    with pytest.raises(InvalidURI, match=what) as info:
        parse_proxy(url)
    assert "secret" not in str(info.value)


# -- sans-I/O: the environment -------------------------------------------------------

WS, WSS = parse_uri("ws://app.example.com/"), parse_uri("wss://app.example.com/")


def test_environment_ws_uses_http_proxy_and_wss_https_proxy() -> None:
    env = {"HTTP_PROXY": "http://plain:1", "HTTPS_PROXY": "http://secure:2"}
    assert proxy_from_environment(WS, env) == "http://plain:1"
    assert proxy_from_environment(WSS, env) == "http://secure:2"
    assert proxy_from_environment(WSS, {"HTTP_PROXY": "http://plain:1"}) is None


def test_environment_all_proxy_is_the_fallback_and_lower_case_wins() -> None:
    assert proxy_from_environment(WSS, {"ALL_PROXY": "socks5://s:1"}) == "socks5://s:1"
    assert proxy_from_environment(WS, {"all_proxy": "socks5://s:1", "http_proxy": "http://h:2"}) == "http://h:2"
    assert proxy_from_environment(WS, {"http_proxy": "http://low:1", "HTTP_PROXY": "http://up:2"}) == "http://low:1"
    assert proxy_from_environment(WS, {"http_proxy": "", "HTTP_PROXY": "http://up:2"}) == "http://up:2"


def test_environment_http_proxy_upper_case_is_ignored_in_a_cgi_script() -> None:
    assert proxy_from_environment(WS, {"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"}) is None
    assert proxy_from_environment(WS, {"http_proxy": "http://ok:1", "REQUEST_METHOD": "GET"}) == "http://ok:1"


@pytest.mark.parametrize(("host", "port", "no_proxy", "bypass"), [
    ("app.example.com", 80, "example.com", True),
    ("app.example.com", 80, ".example.com", True),
    ("app.example.com", 80, "*.example.com", True),
    ("example.com", 80, ".example.com", True),
    ("badexample.com", 80, "example.com", False),
    ("app.example.com", 80, "other.org, *", True),
    ("10.1.2.3", 80, "10.0.0.0/8", True),
    ("10.1.2.3", 80, "192.168.0.0/16,10.1.2.4", False),
    ("::1", 80, "::1", True),
    ("app.example.com", 8080, "example.com:8080", True),
    ("app.example.com", 80, "example.com:8080", False),
    ("localhost", 80, "", False),
])
def test_no_proxy_entries(host: str, port: int, no_proxy: str, bypass: bool) -> None:
    assert bypasses_proxy(host, port, no_proxy) is bypass


def test_environment_no_proxy_bypasses() -> None:
    assert proxy_from_environment(WS, {"HTTP_PROXY": "http://h:1", "NO_PROXY": "example.com"}) is None


# -- sans-I/O: the CONNECT exchange --------------------------------------------------


def test_connect_request_carries_target_and_basic_credentials() -> None:
    handshake = ConnectHandshake(parse_proxy("http://alice:s%C3%A9same@p:1"), parse_uri("wss://[::1]:9000/x"))
    request = handshake.request()
    assert request.startswith(b"CONNECT [::1]:9000 HTTP/1.1\r\nHost: [::1]:9000\r\n")
    # base64("alice:sésame"), UTF-8
    assert b"Proxy-Authorization: Basic YWxpY2U6c8Opc2FtZQ==\r\n" in request
    assert b"Proxy-Authorization" not in ConnectHandshake(parse_proxy("http://p:1"), WS).request()


@given(st.lists(st.integers(1, 60), max_size=10))
def test_connect_answer_in_any_chunking(cuts: list[int]) -> None:
    answer = b"HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\n"
    handshake = ConnectHandshake(parse_proxy("http://p:1"), WS)
    chunks, rest = [], answer
    for cut in cuts:
        chunks.append(rest[:cut])
        rest = rest[cut:]
    chunks.append(rest)
    chunks = [c for c in chunks if c]
    results = [handshake.receive_data(chunk) for chunk in chunks]
    assert results[-1] is True and not any(results[:-1])
    assert handshake.response is not None and handshake.response.status_code == 200


@given(st.binary(min_size=1, max_size=200))
def test_connect_answer_garbage_fails_clearly(data: bytes) -> None:
    handshake = ConnectHandshake(parse_proxy("http://p:1"), WS)
    try:
        done = handshake.receive_data(data)
    except ProxyError as exc:
        assert "proxy http://p:1" in str(exc)
    else:
        assert done is False or (handshake.response is not None and 200 <= handshake.response.status_code < 300)


@pytest.mark.parametrize(("proxy_url", "answer", "message"), [
    ("http://p:1", b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 3\r\n\r\n",
     "requires credentials"),
    ("http://u:pw@p:1", b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", "refused the credentials"),
    ("http://p:1", b"HTTP/1.1 403 Forbidden\r\n\r\n", "refused CONNECT app.example.com:80: 403 Forbidden"),
    ("http://p:1", b"SSH-2.0-OpenSSH\r\n", "not HTTP"),
    ("http://p:1", b"HTTP/1.1 200 OK\r\n\r\nextra", "sent 5 bytes after accepting"),
    ("http://p:1", b"HTTP/1.1 2000 Nope\r\n\r\n", "malformed"),
])
def test_connect_refusals_name_the_proxy_and_the_answer(proxy_url: str, answer: bytes, message: str) -> None:
    handshake = ConnectHandshake(parse_proxy(proxy_url), WS)
    with pytest.raises(ProxyError, match=message) as info:
        handshake.receive_data(answer)
    assert info.value.proxy == "http://p:1"
    assert str(info.value).startswith("proxy http://p:1 ")


def test_connect_eof_is_a_proxy_error_worth_retrying() -> None:
    handshake = ConnectHandshake(parse_proxy("http://p:1"), WS)
    handshake.receive_data(b"HTTP/1.1 200")
    with pytest.raises(ProxyError, match="in the middle of its answer") as info:
        handshake.receive_eof()
    assert isinstance(info.value.__cause__, EOFError)


# -- both layers through real proxies ----------------------------------------------------


@pytest.mark.parametrize("layer", LAYERS)
def test_http_proxy_with_credentials_from_the_url(layer: str, server: Any) -> None:
    with HTTPProxy(credentials=("alice", "s:cret")) as proxy:
        url = f"http://alice:s%3Acret@{HOST}:{proxy.port}"
        assert echo_once(layer, server.uri, proxy=url) == "through"
        assert proxy.targets == [f"{HOST}:{server.port}"]
        assert b"Proxy-Authorization: Basic YWxpY2U6czpjcmV0\r\n" in proxy.requests[0]
    # The server saw no proxy credentials.
    assert server.requests[0].headers.get("Proxy-Authorization") is None


@pytest.mark.parametrize("layer", LAYERS)
def test_wss_through_an_http_proxy(layer: str, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    with echo_server(tls=server_ctx) as server, HTTPProxy() as proxy:
        assert echo_once(layer, server.uri, proxy=proxy.url, ssl=client_ctx) == "through"
        assert proxy.targets == [f"{HOST}:{server.port}"]


@pytest.mark.parametrize("layer", LAYERS)
def test_ws_through_an_https_proxy(layer: str, tls: tuple[ssl.SSLContext, ssl.SSLContext], server: Any) -> None:
    server_ctx, client_ctx = tls
    with HTTPProxy(tls=server_ctx) as proxy:
        assert proxy.url.startswith("https://")
        assert echo_once(layer, server.uri, proxy=proxy.url, proxy_ssl=client_ctx) == "through"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio does TLS inside TLS from Python 3.11 on")
def test_wss_through_an_https_proxy_asyncio(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    with echo_server(tls=server_ctx) as server, HTTPProxy(tls=server_ctx) as proxy:
        assert echo_once("asyncio", server.uri, proxy=proxy.url, proxy_ssl=client_ctx, ssl=client_ctx) == "through"


def test_wss_through_an_https_proxy_sync_says_what_to_use(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    _server_ctx, client_ctx = tls
    with pytest.raises(ProxyError, match=r"TLS inside TLS.*wskit\.asyncio"):
        ws_sync.connect(f"wss://{HOST}:1/", proxy=f"https://{HOST}:2", proxy_ssl=client_ctx, ssl=client_ctx)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize(("proxy_options", "message", "status"), [
    ({"credentials": ("a", "b")}, "requires credentials.*407 Proxy Authentication Required", 407),
    ({"behaviour": "refuse"}, r"refused CONNECT 127\.0\.0\.1:\d+: 403 Forbidden", 403),
    ({"behaviour": "unreachable"}, "502 Bad Gateway", 502),
    ({"behaviour": "garbage"}, "not HTTP", None),
])
def test_proxy_refusals(layer: str, server: Any, proxy_options: dict[str, Any], message: str,
                        status: int | None) -> None:
    with HTTPProxy(**proxy_options) as proxy:
        started = time.monotonic()
        with pytest.raises(ProxyError, match=message) as info:
            echo_once(layer, server.uri, proxy=proxy.url, open_timeout=5)
        assert time.monotonic() - started < 4  # answered at once, not at the timeout
    assert info.value.proxy == proxy.url
    assert str(info.value).startswith(f"proxy {proxy.url} ")
    if status is None:
        assert info.value.response is None
    else:
        assert info.value.response is not None and info.value.response.status_code == status


@pytest.mark.parametrize("layer", LAYERS)
def test_silent_proxy_times_out_within_open_timeout_naming_it(layer: str, server: Any) -> None:
    with HTTPProxy(behaviour="silent") as proxy:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=f"waiting for proxy {proxy.url} to answer CONNECT"):
            echo_once(layer, server.uri, proxy=proxy.url, open_timeout=0.3)
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("layer", LAYERS)
def test_unreachable_proxy(layer: str, server: Any) -> None:
    with HTTPProxy() as proxy:
        port = proxy.port
    with pytest.raises(ProxyError, match=f"proxy http://{HOST}:{port} could not be reached") as info:
        echo_once(layer, server.uri, proxy=f"http://{HOST}:{port}", open_timeout=5)
    assert isinstance(info.value.__cause__, OSError)


# -- the environment, for real -------------------------------------------------------------


@pytest.mark.parametrize("layer", LAYERS)
def test_environment_proxy_is_the_default(layer: str, server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with HTTPProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("HTTPS_PROXY", f"http://{HOST}:1")  # for wss:// only: never used here
        assert echo_once(layer, server.uri) == "through"
        assert proxy.connections == 1
        assert echo_once(layer, server.uri, proxy=None) == "through"  # proxy=None: direct
        monkeypatch.setenv("no_proxy", f"localhost,{HOST}")
        assert echo_once(layer, server.uri) == "through"
        assert proxy.connections == 1


@pytest.mark.parametrize("layer", LAYERS)
def test_environment_https_proxy_for_wss(layer: str, tls: tuple[ssl.SSLContext, ssl.SSLContext],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    server_ctx, client_ctx = tls
    with echo_server(tls=server_ctx) as server, HTTPProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://{HOST}:1")  # for ws:// only: never used here
        monkeypatch.setenv("https_proxy", proxy.url)
        assert echo_once(layer, server.uri, ssl=client_ctx) == "through"
        assert proxy.targets == [f"{HOST}:{server.port}"]


# -- SOCKS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize(("scheme", "version"), [("socks5", 5), ("socks5h", 5), ("socks4", 4), ("socks4a", 4)])
def test_socks_proxy(layer: str, scheme: str, version: int) -> None:
    with echo_server() as server, SocksProxy() as proxy:
        uri = f"ws://localhost:{server.port}/"
        assert echo_once(layer, uri, proxy=proxy.url(scheme)) == "through"
        remote = scheme in ("socks5h", "socks4a")
        assert proxy.targets == [(version, "localhost" if remote else HOST, server.port)]


@pytest.mark.parametrize("layer", LAYERS)
def test_socks5_credentials(layer: str, server: Any) -> None:
    with SocksProxy(credentials=("bob", "pw")) as proxy:
        assert echo_once(layer, server.uri, proxy=proxy.url("socks5", "bob:pw@")) == "through"
        with pytest.raises(ProxyError, match=f"proxy socks5://{HOST}:{proxy.port} failed"):
            echo_once(layer, server.uri, proxy=proxy.url("socks5", "bob:wrong@"))


@pytest.mark.parametrize("layer", LAYERS)
def test_socks_without_python_socks_names_the_extra(layer: str, server: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "python_socks.sync", None)
    monkeypatch.setitem(sys.modules, "python_socks.async_.asyncio", None)
    with pytest.raises(ImportError, match=r"pip install 'wskit\[socks\]'"):
        echo_once(layer, server.uri, proxy=f"socks5://{HOST}:1")


@pytest.mark.parametrize("layer", LAYERS)
def test_bad_proxy_option_fails_at_the_call(layer: str) -> None:
    connect: Any = ws_sync.connect if layer == "sync" else wa.connect
    with pytest.raises(TypeError, match="proxy must be a proxy URL"):
        connect("ws://127.0.0.1:1/", proxy=8080)
    with pytest.raises(InvalidURI, match="scheme must be one of"):
        connect("ws://127.0.0.1:1/", proxy="ftp://p:1")
    with pytest.raises(ValueError, match="proxy_ssl= was given"):
        connect("ws://127.0.0.1:1/", proxy="http://p:1", proxy_ssl=ssl.create_default_context())

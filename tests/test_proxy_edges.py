"""Tests for the sans-I/O proxy rules (wskit.proxy) at their edges: arguments of the wrong kind,
passwords hidden in URLs without a scheme, bracketed no_proxy entries, and proxies that talk too
much."""

from __future__ import annotations

import pytest

from wskit.exceptions import InvalidURI, ProxyError
from wskit.handshake import parse_uri
from wskit.proxy import ConnectHandshake, bypasses_proxy, parse_proxy

WS = parse_uri("ws://app.example.com/")


def test_proxy_url_must_be_a_str() -> None:
    with pytest.raises(InvalidURI, match="proxy URL must be a str, got bytes"):
        parse_proxy(b"http://p:1")  # type: ignore[arg-type]


def test_password_is_hidden_in_a_url_without_a_scheme() -> None:
    with pytest.raises(InvalidURI) as info:
        parse_proxy("alice:secret@proxy.example:3128/path")
    message = str(info.value)
    assert "secret" not in message
    assert "'alice:***@proxy.example:3128/path'" in message and "no path, query or fragment" in message


@pytest.mark.parametrize(("host", "port", "no_proxy", "bypass"), [
    ("::1", 8080, "[::1]:8080", True),
    ("::1", 80, "[::1]:8080", False),
    ("::1", 80, "[::1]", True),
    ("2001:db8::5", 443, "[2001:db8::/32]", True),
    ("app.example.com", 80, "example.com:http", False),  # not a port: the entry is a name that matches nothing
])
def test_no_proxy_bracketed_addresses_and_non_numeric_ports(host: str, port: int, no_proxy: str,
                                                            bypass: bool) -> None:
    assert bypasses_proxy(host, port, no_proxy) is bypass


def test_connect_handshake_is_for_http_proxies_only() -> None:
    with pytest.raises(ValueError, match="socks5://p:1080 is a SOCKS proxy, not an HTTP proxy"):
        ConnectHandshake(parse_proxy("socks5://p:1080"), WS)


def test_connect_request_without_a_user_agent() -> None:
    request = ConnectHandshake(parse_proxy("http://p:1"), WS, user_agent=None).request()
    assert request == b"CONNECT app.example.com:80 HTTP/1.1\r\nHost: app.example.com:80\r\n\r\n"


def test_bytes_after_the_tunnel_opened_are_refused() -> None:
    handshake = ConnectHandshake(parse_proxy("http://p:1"), WS)
    assert handshake.receive_data(b"HTTP/1.1 200 Connection established\r\n\r\n") is True
    with pytest.raises(ProxyError, match=r"sent 3 bytes after accepting CONNECT app\.example\.com:80"):
        handshake.receive_data(b"abc")


def test_an_endless_answer_head_is_refused() -> None:
    handshake = ConnectHandshake(parse_proxy("http://p:1"), WS)
    assert handshake.receive_data(b"HTTP/1.1 200 OK\r\n") is False
    with pytest.raises(ProxyError, match="answered CONNECT with more than 16384 bytes without ending its head"):
        for _ in range(20):
            handshake.receive_data(b"X-Filler: " + b"x" * 1000 + b"\r\n")

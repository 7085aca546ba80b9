"""Client proxies, sans-I/O: which proxy to use, and the HTTP ``CONNECT`` exchange.

The I/O layers (:mod:`wskit.asyncio`, :mod:`wskit.sync`) open the sockets;
this module decides and parses:

* :func:`parse_proxy` reads a proxy URL (``http://``, ``https://``,
  ``socks4://``, ``socks4a://``, ``socks5://``, ``socks5h://``, with
  optional ``user:password@``);
* :func:`proxy_from_environment` picks the proxy for a WebSocket URI from
  the environment as curl, requests and the rest of the ecosystem do:
  ``wss://`` uses ``https_proxy``, ``ws://`` uses ``http_proxy``, both fall
  back to ``all_proxy``; lower-case names win over upper-case ones;
  ``no_proxy`` lists hosts to reach directly;
* :class:`ConnectHandshake` builds the ``CONNECT`` request (with
  ``Proxy-Authorization: Basic`` from the proxy URL's credentials) and
  checks the proxy's answer, raising :class:`~wskit.exceptions.ProxyError`
  with the proxy and what it answered.
"""

from __future__ import annotations

import base64
import ipaddress
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from .defaults import USER_AGENT
from .events import Response
from .exceptions import InvalidHandshake, InvalidURI, ProxyError
from .handshake import WSURI
from .headers import Headers
from .http11 import HTTPLimits, ResponseParser, serialize_request

__all__ = ["ProxyURL", "ConnectHandshake", "parse_proxy", "proxy_from_environment", "bypasses_proxy"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "socks4": 1080, "socks4a": 1080, "socks5": 1080, "socks5h": 1080}
# The longest answer head accepted from a proxy (a real one sends a few hundred bytes).
_MAX_HEAD = 16384


@dataclass(frozen=True)
class ProxyURL:
    """A parsed proxy URL.

    Attributes:
        scheme: ``"http"``, ``"https"`` (TLS to the proxy), ``"socks4"``,
            ``"socks4a"``, ``"socks5"`` or ``"socks5h"`` (the proxy resolves
            the server's name).
        host: the proxy's host name or IP address (IPv6 without brackets).
        port: the proxy's port (default 80 for http, 443 for https, 1080 for SOCKS).
        user_info: ``(user, password)`` from the URL, percent-decoded, or ``None``.
    """

    scheme: str
    host: str
    port: int
    user_info: tuple[str, str] | None = None

    @property
    def is_socks(self) -> bool:
        """Whether this is a SOCKS proxy (else HTTP ``CONNECT``)."""
        return self.scheme.startswith("socks")

    @property
    def secure(self) -> bool:
        """Whether the connection to the proxy itself uses TLS (``https://``)."""
        return self.scheme == "https"

    @property
    def remote_dns(self) -> bool:
        """Whether the proxy resolves the server's name (HTTP proxies, ``socks4a``, ``socks5h``)."""
        return self.scheme in ("http", "https", "socks4a", "socks5h")

    def __str__(self) -> str:
        """The URL without credentials, for messages and logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_proxy(url: str) -> ProxyURL:
    """Parse a proxy URL.

    A URL without a scheme (``proxy.example:3128``, as some environments
    set it) is taken as ``http://``.

    Raises:
        InvalidURI: an unsupported scheme, no host, or a bad port; the
            message shows the URL without its password.
    """
    if not isinstance(url, str):
        raise InvalidURI(f"proxy URL must be a str, got {type(url).__name__}")
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidURI(f"invalid proxy URL {_hide_password(url)!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidURI(f"invalid proxy URL {_hide_password(url)!r}: scheme must be one of "
                         f"{', '.join(_DEFAULT_PORTS)}, not {scheme!r}")
    host = parts.hostname
    if not host:
        raise InvalidURI(f"invalid proxy URL {_hide_password(url)!r}: missing host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidURI(f"invalid proxy URL {_hide_password(url)!r}: a proxy URL has no path, query or fragment")
    user_info = None
    if parts.username is not None:
        user_info = (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
    return ProxyURL(scheme, host, port if port is not None else _DEFAULT_PORTS[scheme], user_info)


def _hide_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@", 0, rest.find("/") if "/" in rest else len(rest))
    if at < 0:
        return url
    user = rest[:at].split(":", 1)[0]
    return f"{scheme}{sep}{user}:***{rest[at:]}"


def _env(environ: Mapping[str, str], name: str, *, upper: bool = True) -> str | None:
    # Lower-case first, as curl and requests read them; empty means unset.
    for key in (name, name.upper()) if upper else (name,):
        value = environ.get(key)
        if value:
            return value.strip()
    return None


def proxy_from_environment(wsuri: WSURI, environ: Mapping[str, str]) -> str | None:
    """Return the proxy URL the environment sets for ``wsuri``, or ``None``.

    ``wss://`` URIs use ``https_proxy``, ``ws://`` URIs ``http_proxy``;
    both fall back to ``all_proxy``; each name is read in lower case, then
    in upper case. ``HTTP_PROXY`` in upper case is ignored when
    ``REQUEST_METHOD`` is set: in a CGI script it comes from the client's
    ``Proxy:`` request header. ``no_proxy`` (or ``NO_PROXY``) lists hosts
    reached directly (:func:`bypasses_proxy`).

    Args:
        wsuri: the server's URI, from :func:`wskit.handshake.parse_uri`.
        environ: the environment, usually :data:`os.environ`.
    """
    no_proxy = _env(environ, "no_proxy")
    if no_proxy and bypasses_proxy(wsuri.host, wsuri.port, no_proxy):
        return None
    if wsuri.secure:
        return _env(environ, "https_proxy") or _env(environ, "all_proxy")
    cgi = "REQUEST_METHOD" in environ
    return _env(environ, "http_proxy", upper=not cgi) or _env(environ, "all_proxy")


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` says to reach ``host`` directly.

    ``no_proxy`` is a comma-separated list: ``*`` for every host, a domain
    (``example.com`` or ``.example.com``: that host and its subdomains), an
    IP address, a network in CIDR notation (``10.0.0.0/8``), each optionally
    with ``:port`` to apply to that port only.
    """
    host = host.lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.removeprefix("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [::1]:8080
        end = entry.find("]")
        name, rest = entry[1:end], entry[end + 1:]
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        if port.isdigit():
            return name, int(port)
    return entry, None


class ConnectHandshake:
    """The HTTP ``CONNECT`` exchange that opens a tunnel through an HTTP proxy (RFC 9110 §9.3.6).

    Write :meth:`request` to the proxy, then pass what it answers to
    :meth:`receive_data` until it returns ``True``: the tunnel is open and
    the WebSocket handshake (after TLS for ``wss://``) goes through it.

    Args:
        proxy: the proxy (``http`` or ``https``).
        wsuri: the WebSocket server to reach.
        user_agent: the ``User-Agent`` header (``None`` for none).
        limits: size limits for the proxy's answer.

    Attributes:
        response: the proxy's answer, once received.
    """

    def __init__(self, proxy: ProxyURL, wsuri: WSURI, *, user_agent: str | None = USER_AGENT,
                 limits: HTTPLimits | None = None) -> None:
        if proxy.is_socks:
            raise ValueError(f"{proxy} is a SOCKS proxy, not an HTTP proxy")
        self.proxy = proxy
        self.wsuri = wsuri
        self._limits = limits or HTTPLimits()
        self._user_agent = user_agent
        self._buffer = bytearray()
        self.response: Response | None = None

    @property
    def target(self) -> str:
        """The ``host:port`` the tunnel goes to."""
        host = f"[{self.wsuri.host}]" if ":" in self.wsuri.host else self.wsuri.host
        return f"{host}:{self.wsuri.port}"

    def request(self) -> bytes:
        """The ``CONNECT`` request to write to the proxy."""
        headers = Headers([("Host", self.target)])
        if self.proxy.user_info is not None:
            # RFC 7617: Basic credentials are base64("user:password").
            token = base64.b64encode(":".join(self.proxy.user_info).encode("utf-8")).decode("ascii")
            headers["Proxy-Authorization"] = f"Basic {token}"
        if self._user_agent is not None:
            headers["User-Agent"] = self._user_agent
        return serialize_request("CONNECT", self.target, headers)

    def _error(self, what: str, response: Response | None = None) -> ProxyError:
        return ProxyError(f"proxy {self.proxy} {what}", proxy=str(self.proxy), response=response)

    def receive_data(self, data: bytes | bytearray | memoryview) -> bool:
        """Take bytes the proxy sent.

        Returns:
            ``True`` once the proxy accepted (a 2xx answer): the tunnel is
            open. ``False`` while the answer is incomplete.

        Raises:
            ProxyError: the proxy refused (``exc.response`` holds its answer,
                e.g. 407 when it wants credentials), answered something that
                is not HTTP, or sent bytes after its answer.
        """
        if self.response is not None:
            raise self._error(f"sent {len(data)} bytes after accepting CONNECT {self.target}, "
                              "before the tunnel was used")
        buffer = self._buffer
        buffer += data
        if not (buffer.startswith(b"HTTP/") or b"HTTP/".startswith(bytes(buffer))):
            raise self._error(f"answered CONNECT with something that is not HTTP: {bytes(buffer[:40])!r}")
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                raise self._error(f"answered CONNECT with more than {_MAX_HEAD} bytes without ending its head")
            return False
        head, rest = bytes(buffer[: end + 4]), bytes(buffer[end + 4:])
        parser = ResponseParser(self._limits)
        try:
            response = parser.feed(head) or parser.feed_eof()
        except InvalidHandshake as exc:
            # A head that announces a body (an error page): the head is what counts.
            response = exc.response
            if response is None:
                raise self._error(f"answered CONNECT with a malformed response: {exc}") from exc
        assert response is not None
        self.response = response
        status = response.status_code
        answer = f"{status} {response.reason_phrase}".rstrip()
        if status == 407:
            sent = "refused the credentials of the proxy URL" if self.proxy.user_info else (
                "requires credentials (put them in the proxy URL: http://user:password@host:port)")
            raise self._error(f"{sent}: {answer}", response)
        if not 200 <= status < 300:
            raise self._error(f"refused CONNECT {self.target}: {answer}", response)
        if rest:
            raise self._error(f"sent {len(rest)} bytes after accepting CONNECT {self.target}, "
                              "before the tunnel was used")
        return True

    def receive_eof(self) -> None:
        """The proxy closed the connection before its answer was complete.

        Raises:
            ProxyError: always; its ``__cause__`` is an :class:`EOFError`
                (a retry may succeed).
        """
        what = "closed the connection without answering CONNECT" if not self._buffer else (
            f"closed the connection in the middle of its answer to CONNECT ({len(self._buffer)} bytes)")
        raise self._error(what) from EOFError(what)

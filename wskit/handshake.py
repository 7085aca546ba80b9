"""The WebSocket opening handshake (RFC 6455 §4) as pure functions.

No I/O and no connection state: these functions build and check the HTTP
messages of the handshake. :class:`~wskit.ClientProtocol` and
:class:`~wskit.ServerProtocol` drive them (and negotiate extensions with the
extension factories); they are public for code that does the handshake by
itself.

Server-side failures raise :class:`~wskit.exceptions.InvalidHandshake` with
the HTTP ``status`` to answer and the ``headers`` that answer must carry
(pass both to :func:`wskit.http11.build_error_response`):

* ``405 Method Not Allowed`` (with ``Allow: GET``) for a method other than
  GET. RFC 6455 §4.2.1 only asks for "an appropriate error code (such as 400
  Bad Request)"; 405 is the precise HTTP answer (RFC 7231 §6.5.5).
* ``426 Upgrade Required`` (with ``Upgrade: websocket``) for a request
  without ``Upgrade: websocket``, and (also with ``Sec-WebSocket-Version:
  13``) for a missing or unsupported version (RFC 6455 §4.4).
* ``403 Forbidden`` for an ``Origin`` not in the allowed list.
* ``400 Bad Request`` for everything else.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import secrets
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from .defaults import USER_AGENT
from .events import Request, Response
from .exceptions import InvalidHandshake, InvalidURI, NegotiationError
from .headers import (
    Headers,
    HeadersLike,
    _check_value,
    is_token,
    parse_subprotocol_header,
    parse_token_list,
    parse_upgrade_header,
    serialize_subprotocol_header,
)
from .http11 import serialize_request, serialize_response

__all__ = [
    "GUID",
    "WSURI",
    "generate_key",
    "accept_key",
    "parse_uri",
    "build_request",
    "check_request",
    "select_subprotocol",
    "build_accept_response",
    "check_response",
]

# RFC 6455 §1.3: the GUID appended to Sec-WebSocket-Key.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# What urllib.parse.quote must leave alone in a path+query: RFC 3986 reserved
# characters, "%" (existing escapes) and unreserved ones (always safe).
_URI_SAFE = "!#$%&'()*+,/:;=?@[]~"


def generate_key() -> str:
    """Return a fresh ``Sec-WebSocket-Key``: base64 of 16 random bytes (RFC 6455 §4.1)."""
    return binascii.b2a_base64(secrets.token_bytes(16), newline=False).decode("ascii")


def accept_key(key: str) -> str:
    """Return the ``Sec-WebSocket-Accept`` value for ``key`` (RFC 6455 §4.2.2).

    Example:
        >>> accept_key("dGhlIHNhbXBsZSBub25jZQ==")
        's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
    """
    digest = hashlib.sha1((key + GUID).encode("ascii"), usedforsecurity=False).digest()
    return binascii.b2a_base64(digest, newline=False).decode("ascii")


# URIs --------------------------------------------------------------------------


@dataclass(frozen=True)
class WSURI:
    """A parsed ``ws://`` or ``wss://`` URI.

    Attributes:
        secure: ``True`` for ``wss://``.
        host: the host name (lowercase, IDNA-encoded) or IP address (IPv6
            without brackets).
        port: the port (default 80 for ws, 443 for wss).
        path: the request target: path and query, percent-encoded, ``"/"``
            when empty.
        user_info: ``(user, password)`` from the URI, percent-decoded, or
            ``None``.
    """

    secure: bool
    host: str
    port: int
    path: str = "/"
    user_info: tuple[str, str] | None = None

    @property
    def host_header(self) -> str:
        """The ``Host`` header value: brackets IPv6 literals, omits a default port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == (443 if self.secure else 80):
            return host
        return f"{host}:{self.port}"


def parse_uri(uri: str) -> WSURI:
    """Parse a WebSocket URI (RFC 6455 §3).

    Non-ASCII characters in the path and query are percent-encoded as UTF-8
    (an IRI becomes a URI); a non-ASCII host is IDNA-encoded. Results are
    cached (a :class:`WSURI` is immutable), except for URIs with credentials.

    Raises:
        InvalidURI: for another scheme, a missing host, a fragment, a bad
            port, or whitespace / control characters.
    """
    if not isinstance(uri, str):
        raise InvalidURI(f"WebSocket URI must be a str, got {type(uri).__name__}")
    if "@" in uri:  # never keep credentials in a process-wide cache
        return _parse_uri(uri)
    return _parse_uri_cached(uri)


def _parse_uri(uri: str) -> WSURI:
    for i, char in enumerate(uri):
        if char <= " " or char == "\x7f":
            raise InvalidURI(f"invalid WebSocket URI {uri!r}: whitespace or control character at position {i}")
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError as exc:
        raise InvalidURI(f"invalid WebSocket URI {uri!r}: {exc}") from None
    if parts.scheme not in ("ws", "wss"):
        raise InvalidURI(f"invalid WebSocket URI {uri!r}: scheme must be ws or wss, not {parts.scheme or 'missing'!r}")
    # RFC 6455 §3: fragment identifiers are meaningless and MUST NOT be used.
    if "#" in uri:
        raise InvalidURI(f"invalid WebSocket URI {uri!r}: fragments ('#') are not allowed (RFC 6455 §3)")
    host = parts.hostname
    if not host:
        raise InvalidURI(f"invalid WebSocket URI {uri!r}: missing host")
    try:
        port = parts.port
    except ValueError:
        raise InvalidURI(f"invalid WebSocket URI {uri!r}: bad port") from None
    secure = parts.scheme == "wss"
    if port is None:
        port = 443 if secure else 80
    elif port == 0:
        raise InvalidURI(f"invalid WebSocket URI {uri!r}: port 0")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidURI(f"invalid WebSocket URI {uri!r}: invalid international host name") from None
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    if not path.isascii():
        path = urllib.parse.quote(path, safe=_URI_SAFE)
    user_info = None
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        user_info = (user, password)
    return WSURI(secure, host, port, path, user_info)


_parse_uri_cached = functools.lru_cache(maxsize=256)(_parse_uri)


# Client request ------------------------------------------------------------------

# Header lines every handshake carries, shared by all connections.
_UPGRADE = ("Upgrade", "websocket")
_CONNECTION = ("Connection", "Upgrade")
_VERSION = ("Sec-WebSocket-Version", "13")
_USER_AGENT = USER_AGENT
_USER_AGENT_ITEM = ("User-Agent", _USER_AGENT)
_SERVER_ITEM = ("Server", _USER_AGENT)
# base64 of exactly 16 bytes: 22 characters and "==" (fast path of the key check).
_KEY_RE = re.compile(r"[A-Za-z0-9+/]{22}==")


def _extra(headers: Headers, extra_headers: HeadersLike | None, where: str) -> None:
    """Append ``extra_headers``; refuse ones that would duplicate a header we set."""
    if extra_headers is None:
        return
    extra = extra_headers if isinstance(extra_headers, Headers) else Headers(extra_headers)
    ours = {name.lower() for name, _ in headers._items}
    for name in extra.keys():
        if name.lower() in ours:
            raise ValueError(
                f"{where}: extra header {name!r} conflicts with the {name!r} header the handshake sets; "
                "use the dedicated argument instead"
            )
    headers.extend(extra)


def build_request(
    wsuri: WSURI,
    key: str,
    *,
    origin: str | None = None,
    subprotocols: Sequence[str] | None = None,
    extensions_header: str | None = None,
    extra_headers: HeadersLike | None = None,
    user_agent: str | None = USER_AGENT,
) -> tuple[Headers, bytes]:
    """Build the client's upgrade request (RFC 6455 §4.1).

    Args:
        wsuri: from :func:`parse_uri`.
        key: the ``Sec-WebSocket-Key`` (from :func:`generate_key`).
        origin: the ``Origin`` header, if any.
        subprotocols: offered subprotocols, in preference order.
        extensions_header: the ``Sec-WebSocket-Extensions`` value, if any
            (see :func:`wskit.headers.serialize_extension_header`).
        extra_headers: more headers, appended after the handshake's own.
        user_agent: the ``User-Agent`` header; ``None`` omits it.

    Returns:
        ``(headers, request_bytes)``.

    Raises:
        ValueError: if an extra header duplicates one the handshake sets
            (``Host``, ``Origin``, ``User-Agent``, ...), or a value is invalid.
    """
    # Names are constants and generated values are valid by construction:
    # only the caller's strings are checked.
    _check_value("Sec-WebSocket-Key", key)
    items = [("Host", wsuri.host_header), _UPGRADE, _CONNECTION, ("Sec-WebSocket-Key", key), _VERSION]
    if origin is not None:
        _check_value("Origin", origin)
        items.append(("Origin", origin))
    if extensions_header:
        _check_value("Sec-WebSocket-Extensions", extensions_header)
        items.append(("Sec-WebSocket-Extensions", extensions_header))
    if subprotocols:
        items.append(("Sec-WebSocket-Protocol", serialize_subprotocol_header(subprotocols)))
    if wsuri.user_info is not None:
        # RFC 7617: Basic credentials are base64("user:password").
        credentials = ":".join(wsuri.user_info).encode("utf-8")
        items.append(("Authorization", "Basic " + base64.b64encode(credentials).decode("ascii")))
    if user_agent is not None:
        if user_agent != _USER_AGENT:
            _check_value("User-Agent", user_agent)
            items.append(("User-Agent", user_agent))
        else:
            items.append(_USER_AGENT_ITEM)
    headers = Headers._trusted(items)
    _extra(headers, extra_headers, "build_request")
    return headers, serialize_request("GET", wsuri.path, headers)


# Server side ---------------------------------------------------------------------

_UPGRADE_HEADERS = [("Upgrade", "websocket")]
_VERSION_HEADERS = [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]


def _single(headers: Headers, name: str) -> str | None:
    values = headers.get_all(name)
    if len(values) > 1:
        raise InvalidHandshake(f"{name} header appears {len(values)} times: {values!r}")
    return values[0] if values else None


def _has_token(values: list[str], header: str, token: str) -> bool:
    if len(values) == 1 and values[0].lower() == token:
        return True
    return any(item.lower() == token for item in parse_token_list(values, header))


def _check_request_fast(request: Request, origins: Sequence[str | None] | None) -> str | None:
    """Accept the usual, unambiguous request in one pass; ``None``: check it step by step.

    Returns a key only when :func:`check_request` would return it: every
    header it reads appears once with the plain value.
    """
    headers = request.headers
    if request.method != "GET" or type(headers) is not Headers:
        return None
    get = headers._lookup().get
    host = get("host")
    upgrade = get("upgrade")
    connection = get("connection")
    key = get("sec-websocket-key")
    if (
        type(host) is str and host
        and type(upgrade) is str and upgrade.lower() == "websocket"
        and type(connection) is str and connection.lower() == "upgrade"
        and get("sec-websocket-version") == "13"
        and type(key) is str and _KEY_RE.fullmatch(key) is not None
    ):
        if origins is not None:
            origin = get("origin")
            if type(origin) is list or origin not in origins:
                return None
        return key
    return None


def check_request(request: Request, *, origins: Sequence[str | None] | None = None) -> str:
    """Validate a client's upgrade request (RFC 6455 §4.2.1).

    Args:
        request: the parsed request.
        origins: the acceptable ``Origin`` values; ``None`` in the list
            accepts a request without ``Origin``; ``origins=None`` accepts
            anything.

    Returns:
        The ``Sec-WebSocket-Key``, for :func:`build_accept_response`.

    Raises:
        InvalidHandshake: ``status`` 405, 426, 403 or 400 (see the module
            docstring) and ``headers`` to include in the error response.
    """
    headers = request.headers
    key = _check_request_fast(request, origins)
    if key is not None:
        return key
    # RFC 6455 §4.2.1 (1): the method MUST be GET.
    if request.method != "GET":
        raise InvalidHandshake(
            f"method {request.method} is not allowed: a WebSocket handshake is a GET request",
            status=405,
            headers=[("Allow", "GET")],
        )
    # RFC 6455 §4.2.1 (2): a Host header field.
    if not _single(headers, "Host"):
        raise InvalidHandshake("missing Host header")
    # RFC 6455 §4.2.1 (3): Upgrade contains "websocket" (case-insensitive).
    upgrade = headers.get_all("Upgrade")
    if not upgrade:
        raise InvalidHandshake(
            "missing Upgrade header: this is a WebSocket endpoint", status=426, headers=list(_UPGRADE_HEADERS)
        )
    if not (len(upgrade) == 1 and upgrade[0].lower() == "websocket") and not any(
        item.lower() == "websocket" for item in parse_upgrade_header(upgrade)
    ):
        raise InvalidHandshake(
            f"Upgrade header does not contain websocket: {', '.join(upgrade)!r}",
            status=426,
            headers=list(_UPGRADE_HEADERS),
        )
    # RFC 6455 §4.2.1 (4): Connection contains "Upgrade" (case-insensitive).
    connection = headers.get_all("Connection")
    if not connection:
        raise InvalidHandshake("missing Connection header (expected 'Connection: Upgrade')")
    if not _has_token(connection, "Connection", "upgrade"):
        raise InvalidHandshake(f"Connection header does not contain upgrade: {', '.join(connection)!r}")
    # RFC 6455 §4.2.1 (6) and §4.4: version 13, else 426 with the versions we speak.
    versions = headers.get_all("Sec-WebSocket-Version")
    if versions != ["13"]:
        what = "missing Sec-WebSocket-Version header" if not versions else (
            f"unsupported Sec-WebSocket-Version {', '.join(versions)!r}"
        )
        raise InvalidHandshake(f"{what}: this server supports version 13", status=426, headers=list(_VERSION_HEADERS))
    # RFC 6455 §4.2.1 (5): Sec-WebSocket-Key is base64 of 16 bytes.
    key = _single(headers, "Sec-WebSocket-Key")
    if key is None:
        raise InvalidHandshake("missing Sec-WebSocket-Key header")
    if _KEY_RE.fullmatch(key) is None:
        try:
            raw = base64.b64decode(key.encode("latin-1"), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
    else:
        raw = b"0123456789abcdef"  # 22 base64 characters and "==" always decode to 16 bytes
    if len(raw) != 16:
        raise InvalidHandshake(f"invalid Sec-WebSocket-Key {key!r}: expected base64 of 16 bytes")
    # RFC 6455 §4.2.1 (8) and §10.2: Origin checks are the server's policy.
    if origins is not None:
        origin = _single(headers, "Origin")
        if origin not in origins:
            shown = "missing Origin header" if origin is None else f"Origin {origin!r}"
            raise InvalidHandshake(f"{shown} is not allowed", status=403)
    return key


def select_subprotocol(client_offered: Sequence[str], server_supported: Sequence[str]) -> str | None:
    """Pick a subprotocol: the first of ``server_supported`` the client offered.

    Server preference wins (RFC 6455 §4.2.2 lets the server choose). Names
    compare case-sensitively. Returns ``None`` when there is no common one.
    """
    if not client_offered:
        return None
    offered = set(client_offered)
    for name in server_supported:
        if name in offered:
            return name
    return None


def build_accept_response(
    key: str,
    *,
    subprotocol: str | None = None,
    extensions_header: str | None = None,
    extra_headers: HeadersLike | None = None,
    server_header: str | None = USER_AGENT,
) -> tuple[Headers, bytes]:
    """Build the server's ``101 Switching Protocols`` response (RFC 6455 §4.2.2).

    Args:
        key: the client's ``Sec-WebSocket-Key`` (from :func:`check_request`).
        subprotocol: the chosen subprotocol, if any.
        extensions_header: the accepted ``Sec-WebSocket-Extensions`` value.
        extra_headers: more headers, appended after the handshake's own.
        server_header: the ``Server`` header; ``None`` omits it.

    Returns:
        ``(headers, response_bytes)``.

    Raises:
        ValueError: if an extra header duplicates one the handshake sets, or
            the subprotocol is not a token.
    """
    items = [_UPGRADE, _CONNECTION, ("Sec-WebSocket-Accept", accept_key(key))]
    if extensions_header:
        _check_value("Sec-WebSocket-Extensions", extensions_header)
        items.append(("Sec-WebSocket-Extensions", extensions_header))
    if subprotocol is not None:
        if not is_token(subprotocol):
            raise ValueError(f"subprotocol {subprotocol!r} is not a token")
        items.append(("Sec-WebSocket-Protocol", subprotocol))
    if server_header is not None:
        if server_header != _USER_AGENT:
            _check_value("Server", server_header)
            items.append(("Server", server_header))
        else:
            items.append(_SERVER_ITEM)
    headers = Headers._trusted(items)
    _extra(headers, extra_headers, "build_accept_response")
    if len(items) == 4 and items[3] is _SERVER_ITEM:
        # The common answer: a constant around the accept value.
        return headers, b"%s%s%s" % (_ACCEPT_HEAD, items[2][1].encode("ascii"), _ACCEPT_TAIL)
    return headers, serialize_response(101, "Switching Protocols", headers)


_ACCEPT_HEAD = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
)
_ACCEPT_TAIL = b"\r\nServer: " + USER_AGENT.encode() + b"\r\n\r\n"


# Client side ---------------------------------------------------------------------


def check_response(
    response: Response, key: str, *, subprotocols_offered: Sequence[str] | None = None
) -> str | None:
    """Validate the server's answer to our upgrade request (RFC 6455 §4.1).

    Args:
        response: the parsed response.
        key: the ``Sec-WebSocket-Key`` we sent.
        subprotocols_offered: the subprotocols we offered.

    Returns:
        The subprotocol the server chose, or ``None``.

    Raises:
        InvalidHandshake: the response is not a valid ``101``; ``exc.response``
            is ``response``.
        NegotiationError: the server chose a subprotocol we did not offer, or
            several.
    """
    try:
        return _check_response(response, key, subprotocols_offered)
    except InvalidHandshake as exc:
        exc.response = response
        raise


def _check_response(response: Response, key: str, offered: Sequence[str] | None) -> str | None:
    headers = response.headers
    if response.status_code == 101 and type(headers) is Headers:
        # The usual, unambiguous response in one pass; anything else is
        # checked step by step below (same result, precise errors).
        get = headers._lookup().get
        upgrade = get("upgrade")
        connection = get("connection")
        accept = get("sec-websocket-accept")
        if (
            type(upgrade) is str and upgrade.lower() == "websocket"
            and type(connection) is str and connection.lower() == "upgrade"
            and type(accept) is str and accept == accept_key(key)
            and get("sec-websocket-protocol") is None
        ):
            return None
    # RFC 6455 §4.1: any status other than 101 means the handshake failed.
    if response.status_code != 101:
        reason = f" {response.reason_phrase}" if response.reason_phrase else ""
        raise InvalidHandshake(f"server answered {response.status_code}{reason} instead of 101")
    # RFC 6455 §4.1 (2): Upgrade must be "websocket" (case-insensitive).
    upgrade = headers.get_all("Upgrade")
    if not upgrade:
        raise InvalidHandshake("missing Upgrade header in the 101 response")
    if len(upgrade) == 1 and upgrade[0].lower() == "websocket":
        protocols = upgrade
    else:
        protocols = parse_upgrade_header(upgrade)
    if len(protocols) != 1 or protocols[0].lower() != "websocket":
        raise InvalidHandshake(f"Upgrade header is {', '.join(upgrade)!r}, expected 'websocket'")
    # RFC 6455 §4.1 (3): Connection must contain "Upgrade" (case-insensitive).
    connection = headers.get_all("Connection")
    if not connection:
        raise InvalidHandshake("missing Connection header in the 101 response")
    if not _has_token(connection, "Connection", "upgrade"):
        raise InvalidHandshake(f"Connection header does not contain upgrade: {', '.join(connection)!r}")
    # RFC 6455 §4.1 (4): Sec-WebSocket-Accept = base64(SHA-1(key + GUID)).
    accept = _single(headers, "Sec-WebSocket-Accept")
    if accept is None:
        raise InvalidHandshake("missing Sec-WebSocket-Accept header")
    expected = accept_key(key)
    if accept != expected:
        raise InvalidHandshake(f"Sec-WebSocket-Accept mismatch: expected {expected!r}, got {accept!r}")
    # RFC 6455 §4.1 (6): the subprotocol must be one we offered.
    values = headers.get_all("Sec-WebSocket-Protocol")
    if not values:
        return None
    chosen = parse_subprotocol_header(values)
    if len(chosen) > 1:
        raise NegotiationError(f"server chose several subprotocols: {', '.join(chosen)!r}")
    subprotocol = chosen[0]
    if not offered:
        raise NegotiationError(f"server chose subprotocol {subprotocol!r} but none was offered")
    if subprotocol not in offered:
        raise NegotiationError(
            f"server chose subprotocol {subprotocol!r}, which was not offered (offered: {', '.join(offered)})"
        )
    return subprotocol

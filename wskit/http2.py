"""WebSockets over HTTP/2 (RFC 8441): the opening handshake as header lists, sans-I/O.

Over HTTP/2 a WebSocket is one stream of an HTTP/2 connection. The client
opens it with an *extended CONNECT* request (``:method: CONNECT``,
``:protocol: websocket``) once the server announced
``SETTINGS_ENABLE_CONNECT_PROTOCOL = 1``; the server answers ``200`` to
accept, or another status to refuse. After that the stream's DATA frames
carry the WebSocket frames of RFC 6455 unchanged (the client still masks);
closing the stream (END_STREAM) plays the part of closing TCP, and
RST_STREAM the part of a TCP reset. There is no ``Sec-WebSocket-Key`` /
``Sec-WebSocket-Accept`` exchange and no ``Upgrade`` or ``Connection``
header (HTTP/2 forbids connection-specific headers).

:class:`H2ClientProtocol` and :class:`H2ServerProtocol` are the core's
:class:`~wskit.ClientProtocol` and :class:`~wskit.ServerProtocol` with
that handshake instead of the HTTP/1.1 one: subprotocols, extensions
(permessage-deflate, offered by the same factories and plugins), ``Origin``
checks and the handshake plugin hooks work as over HTTP/1.1. Header lists
are ``(name, value)`` pairs of ``str`` with lowercase names, pseudo-headers
first: what :meth:`h2.connection.H2Connection.send_headers` takes and what
its ``RequestReceived``/``ResponseReceived`` events carry (decoded). The
HTTP/2 framing itself is the ``h2`` package's, used by
:mod:`wskit.asyncio.http2`; this module imports nothing outside wskit.

Example (the client side; the bytes come from the stream's DATA frames)::

    client = H2ClientProtocol("wss://example.com/chat", subprotocols=["chat"])
    headers = client.request_headers()       # send as the stream's HEADERS
    client.receive_response([(":status", "200"), ("sec-websocket-protocol", "chat")])
    data = client.send_text("hello")         # send as DATA
    events = client.receive_data(received)   # DATA payloads
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from .client import ClientProtocol
from .events import Event, Request, Response
from .exceptions import InvalidHandshake, InvalidState, NegotiationError, PluginError
from .frames import CloseCode
from .headers import (
    Headers,
    HeadersLike,
    _check_value,
    parse_subprotocol_header,
    serialize_extension_header,
    serialize_subprotocol_header,
)
from .http11 import _PHRASES
from .server import ServerProtocol, _plugin_failed
from .statemachine import Trigger

__all__ = [
    "CONNECTION_SPECIFIC",
    "H2ClientProtocol",
    "H2Header",
    "H2ServerProtocol",
    "error_response",
]

H2Header = tuple[str, str]
"""One header of an HTTP/2 header block: ``(lowercase name, value)``."""

CONNECTION_SPECIFIC = frozenset({"connection", "upgrade", "keep-alive", "proxy-connection", "transfer-encoding",
                                 "host", "http2-settings", "te"})
"""Headers an HTTP/2 request must not carry (RFC 9113 §8.2.2; ``host`` is ``:authority``), which the
HTTP/1.1 handshake uses: ``extra_headers`` naming one of them are refused."""

# The headers the handshake sets itself: extra_headers may not repeat them.
_CLIENT_OWN = frozenset({"sec-websocket-version", "sec-websocket-protocol", "sec-websocket-extensions", "origin",
                         "user-agent", "authorization"})
_SERVER_OWN = frozenset({"sec-websocket-protocol", "sec-websocket-extensions", "server"})


def _lower_items(headers: HeadersLike | None, own: frozenset[str], where: str) -> list[H2Header]:
    """``extra_headers`` as lowercase pairs; refuse connection-specific ones and those the handshake sets."""
    if headers is None:
        return []
    checked = headers if isinstance(headers, Headers) else Headers(headers)  # validates names and values
    items: list[H2Header] = []
    for name, value in checked:
        lower = name.lower()
        if lower in CONNECTION_SPECIFIC:
            raise ValueError(f"{where}: header {name!r} is not allowed over HTTP/2 (RFC 9113 §8.2.2)")
        if lower in own:
            raise ValueError(f"{where}: extra header {name!r} conflicts with the {name!r} header the handshake "
                             "sets; use the dedicated argument instead")
        items.append((lower, value))
    return items


# Received, these make a header block malformed (RFC 9113 §8.2.2); ``te`` may only be "trailers".
_FORBIDDEN_RECEIVED = frozenset({"connection", "upgrade", "keep-alive", "proxy-connection", "transfer-encoding"})


def _split(block: Iterable[tuple[str | bytes, str | bytes]]) -> tuple[dict[str, str], list[H2Header]]:
    """Split a received header block into its pseudo-headers and its regular headers (as ``str``).

    Raises:
        InvalidHandshake: the block is malformed (RFC 9113 §8.2): a name
            with uppercase letters, a pseudo-header twice or after a regular
            header, a connection-specific header.
    """
    pseudo: dict[str, str] = {}
    regular: list[H2Header] = []
    for raw_name, raw_value in block:
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
        if name != name.lower():
            raise InvalidHandshake(f"header name {name!r} has uppercase letters (not allowed in HTTP/2)")
        if name.startswith(":"):
            if name in pseudo:
                raise InvalidHandshake(f"pseudo-header {name} appears twice")
            if regular:
                raise InvalidHandshake(f"pseudo-header {name} after a regular header")
            pseudo[name] = value
        else:
            if name in _FORBIDDEN_RECEIVED or (name == "te" and value.strip().lower() != "trailers"):
                raise InvalidHandshake(f"connection-specific header {name!r} is not allowed in HTTP/2")
            regular.append((name, value))
    return pseudo, regular


def _headers(regular: list[H2Header]) -> Headers:
    try:
        return Headers(regular)
    except ValueError as exc:
        raise InvalidHandshake(f"invalid header: {exc}") from None


def error_response(status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> tuple[list[H2Header], bytes]:
    """Build a short ``text/plain`` HTTP/2 error response refusing an extended CONNECT.

    Args:
        status: the HTTP status (400, 403, 426, ...).
        message: the body text (a newline is appended), UTF-8 encoded.
        headers: more headers, e.g. :attr:`InvalidHandshake.headers
            <wskit.exceptions.InvalidHandshake.headers>`; connection-specific
            ones (``Upgrade``, ``Connection``) are left out.

    Returns:
        ``(header list, body)``: send the headers, then the body with END_STREAM.
    """
    body = (message + "\n").encode("utf-8")
    items: list[H2Header] = [(":status", str(status)), ("content-type", "text/plain; charset=utf-8"),
                             ("content-length", str(len(body)))]
    for name, value in headers:
        lower = name.lower()
        if lower not in CONNECTION_SPECIFIC and lower not in ("content-type", "content-length"):
            items.append((lower, value))
    return items, body


class H2ClientProtocol(ClientProtocol):
    """A WebSocket client on one HTTP/2 stream (RFC 8441).

    Takes the arguments of :class:`~wskit.ClientProtocol`; ``limits`` does
    not apply (``h2`` bounds the header block).

    Use :meth:`request_headers` instead of ``connect()``, and
    :meth:`receive_response` with the response's header block; then
    ``receive_data`` with the DATA payloads and ``send_*`` as usual.
    """

    __slots__ = ()

    def connect(self) -> list[bytes]:
        """Not used over HTTP/2: see :meth:`request_headers`.

        Raises:
            InvalidState: always.
        """
        raise InvalidState("over HTTP/2 the request is a header block: call request_headers(), not connect()")

    def request_headers(self) -> list[H2Header]:
        """Build the extended CONNECT request (RFC 8441 §4-5).

        Returns:
            The header block, pseudo-headers first, to send on a new stream
            (without END_STREAM: the stream then carries the WebSocket).

        Raises:
            InvalidState: if it was already called, or the handshake is over.
            ValueError: if an extra header is connection-specific or repeats
                one the handshake sets.
        """
        if not self._si.handshake or self.request is not None:
            raise InvalidState(f"request_headers() can only be called once, in state CONNECTING "
                               f"(state {self.state.name})")
        wsuri = self.wsuri
        items: list[H2Header] = [("sec-websocket-version", "13")]
        if self._origin is not None:
            _check_value("Origin", self._origin)
            items.append(("origin", self._origin))
        factories = self._factories
        if factories:
            items.append(("sec-websocket-extensions",
                          serialize_extension_header([(f.name, f.get_request_params()) for f in factories])))
        if self._offered_subprotocols:
            items.append(("sec-websocket-protocol", serialize_subprotocol_header(self._offered_subprotocols)))
        if wsuri.user_info is not None:
            credentials = ":".join(wsuri.user_info).encode("utf-8")
            items.append(("authorization", "Basic " + base64.b64encode(credentials).decode("ascii")))
        if self._user_agent is not None:
            _check_value("User-Agent", self._user_agent)
            items.append(("user-agent", self._user_agent))
        items.extend(_lower_items(self._extra_headers, _CLIENT_OWN, "H2ClientProtocol"))
        self._extra_headers = None
        headers = Headers._trusted(items)
        hook = self._plugins.handshake_request
        if hook is not None:
            hook(protocol=self, headers=headers)
            items = [(name.lower(), value) for name, value in headers]
            headers = Headers._trusted(items)
        self.request = headers
        if self._debug:
            self.logger.debug("> CONNECT %s (:protocol websocket, HTTP/2)", wsuri.path)
        return [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https" if wsuri.secure else "http"),
                (":path", wsuri.path), (":authority", wsuri.host_header), *items]

    def _receive_handshake(self, data: bytes | bytearray | memoryview) -> list[Event]:
        raise InvalidState("DATA before the response's HEADERS: call receive_response() first")

    def receive_response(self, block: Iterable[tuple[str | bytes, str | bytes]]) -> list[Event]:
        """Take the server's response header block.

        Args:
            block: the ``(name, value)`` pairs of the HEADERS frame,
                ``:status`` included (``str`` or ``bytes``).

        Returns:
            ``[Response]``: the connection is open.

        Raises:
            InvalidState: :meth:`request_headers` was not called, or the
                response was already received.
            InvalidHandshake: the server refused (a status other than 2xx;
                ``exc.response`` holds it, its body empty: the body follows in
                DATA frames) or answered wrongly (a subprotocol or extension
                it was not offered). The state is then ``CLOSED``.
        """
        if not self._si.handshake or self.request is None or self.response is not None:
            raise InvalidState(f"receive_response() needs a sent, unanswered request (state {self.state.name})")
        try:
            pseudo, regular = _split(block)
            status_text = pseudo.get(":status", "")
            if not (len(status_text) == 3 and status_text.isdigit()):
                raise InvalidHandshake(f"invalid :status {status_text!r} in the response")
            status = int(status_text)
            response = Response(status, _PHRASES.get(status, ""), _headers(regular))
        except InvalidHandshake as exc:
            self._handshake_failed(exc)
            raise
        self.response = response
        if self._debug:
            self.logger.debug("< :status %d (HTTP/2)", status)
        try:
            # RFC 8441 §5: 200 accepts; like any CONNECT, another 2xx does too (RFC 9110 §9.3.6).
            if not 200 <= status < 300:
                reason = f" {response.reason_phrase}" if response.reason_phrase else ""
                raise InvalidHandshake(f"server answered {status}{reason} to the extended CONNECT instead of 200")
            subprotocol = self._chosen_subprotocol(response.headers)
            extensions = self._negotiate(response)
        except InvalidHandshake as exc:
            exc.response = response
            self._handshake_failed(exc)
            raise
        self._subprotocol = subprotocol
        self._set_extensions(extensions)
        self._fire(Trigger.ACCEPT)
        return [response]

    def _chosen_subprotocol(self, headers: Headers) -> str | None:
        values = headers.get_all("Sec-WebSocket-Protocol")
        if not values:
            return None
        chosen = parse_subprotocol_header(values)
        offered = self._offered_subprotocols
        if len(chosen) != 1:
            raise NegotiationError(f"server chose several subprotocols: {', '.join(chosen)!r}")
        if chosen[0] not in offered:
            raise NegotiationError(f"server chose subprotocol {chosen[0]!r}, which was not offered "
                                   f"(offered: {', '.join(offered) or 'none'})")
        return chosen[0]


class H2ServerProtocol(ServerProtocol):
    """A WebSocket server connection on one HTTP/2 stream (RFC 8441).

    Takes the arguments of :class:`~wskit.ServerProtocol`; ``limits`` does
    not apply (``h2`` bounds the header block).

    Give the request's header block to :meth:`receive_request`; answer
    with :meth:`accept` or :meth:`reject` (both return ``[]``: the answer
    is the header block :meth:`response_headers` returns, plus
    ``response.body`` as DATA after a refusal). DATA payloads that arrive
    before the answer are kept (at most ``max_size`` plus 64 KiB) and
    parsed once the connection is open (``receive_data(b"")``).
    """

    __slots__ = ()

    def _receive_handshake(self, data: bytes | bytearray | memoryview) -> list[Event]:
        if self.request is None:
            raise InvalidState("DATA before the request's HEADERS: call receive_request() first")
        return super()._receive_handshake(data)  # buffered (bounded) until accept()

    def receive_request(self, block: Iterable[tuple[str | bytes, str | bytes]]) -> list[Event]:
        """Validate an extended CONNECT request (RFC 8441 §4-5).

        Args:
            block: the ``(name, value)`` pairs of the stream's HEADERS frame,
                pseudo-headers included (``str`` or ``bytes``).

        Returns:
            ``[Request]``: ``method`` is ``"CONNECT"``, ``path`` the
            ``:path``, and ``headers`` the regular headers plus ``Host``
            (from ``:authority``) when the block has none, so that code
            written for HTTP/1.1 finds it.

        Raises:
            InvalidState: a request was already received.
            InvalidHandshake: the request is not a WebSocket extended CONNECT:
                ``status`` 405 (another method; :attr:`request` is then set,
                so the application may answer it), 501 (another
                ``:protocol``), 426 (a ``sec-websocket-version`` other than
                13), 403 (an ``Origin`` not allowed), 400 (anything else).
                Build the answer with :func:`error_response`. The state is
                then ``CLOSED``.
        """
        if not self._si.handshake or self.request is not None:
            raise InvalidState(f"receive_request() can only be called once, in state CONNECTING "
                               f"(state {self.state.name})")
        self._parser = None  # no HTTP/1.1 request: DATA that follows is buffered until the answer
        try:
            pseudo, regular = _split(block)
            method = pseudo.get(":method", "")
            path = pseudo.get(":path", "")
            authority = pseudo.get(":authority", "")
            headers = _headers(regular)
            if "host" not in headers and authority:
                headers["Host"] = authority
            self.request = request = Request(path or "/", headers, method or "GET")
            if self._debug:
                self.logger.debug("< %s %s (:protocol %s, HTTP/2)", method, path, pseudo.get(":protocol"))
            self._check(pseudo, headers)
            hook = self._plugins.check_request
            if hook is not None:
                try:
                    answer = hook(protocol=self, request=request)
                except PluginError as error:
                    raise _plugin_failed(error) from error
                if answer is not None:
                    exc = InvalidHandshake(f"request refused by a plugin with {answer.status_code} "
                                           f"{answer.reason_phrase}", status=answer.status_code,
                                           headers=list(answer.headers))
                    exc.response = answer
                    raise exc
        except InvalidHandshake as exc:
            exc.to_send = []
            self._handshake_failed(exc)
            raise
        return [request]

    def _check(self, pseudo: dict[str, str], headers: Headers) -> None:
        method = pseudo.get(":method")
        if method != "CONNECT":
            raise InvalidHandshake(f"method {method} is not allowed: a WebSocket over HTTP/2 is opened with an "
                                   "extended CONNECT (RFC 8441)", status=405, headers=[("allow", "CONNECT")])
        protocol = pseudo.get(":protocol")
        if protocol is None:
            raise InvalidHandshake("CONNECT without :protocol: only the extended CONNECT of RFC 8441 is served")
        if protocol != "websocket":
            raise InvalidHandshake(f":protocol {protocol!r} is not supported (only 'websocket')", status=501)
        for name in (":scheme", ":path", ":authority"):
            if not pseudo.get(name):
                raise InvalidHandshake(f"extended CONNECT without {name}")
        if pseudo[":scheme"] not in ("https", "http"):
            raise InvalidHandshake(f":scheme {pseudo[':scheme']!r} is neither https nor http")
        if not pseudo[":path"].startswith("/"):
            raise InvalidHandshake(f":path {pseudo[':path']!r} does not start with '/'")
        unknown = set(pseudo) - {":method", ":protocol", ":scheme", ":path", ":authority"}
        if unknown:
            raise InvalidHandshake(f"unknown pseudo-header {sorted(unknown)[0]} in the request")
        # RFC 6455 §4.4 through RFC 8441: version 13, or no version header at all.
        versions = headers.get_all("Sec-WebSocket-Version")
        if versions and versions != ["13"]:
            raise InvalidHandshake(f"unsupported Sec-WebSocket-Version {', '.join(versions)!r}: this server "
                                   "supports version 13", status=426, headers=[("sec-websocket-version", "13")])
        origins = self._origins
        if origins is not None:
            values = headers.get_all("Origin")
            origin = values[0] if len(values) == 1 else None
            if origin not in origins:
                shown = "missing Origin header" if origin is None else f"Origin {origin!r}"
                raise InvalidHandshake(f"{shown} is not allowed", status=403)

    def accept(
        self,
        request: Request | None = None,
        *,
        subprotocol: str | None = None,
        extra_headers: HeadersLike | None = None,
        server_header: str | None = None,
    ) -> list[bytes]:
        """Accept the extended CONNECT: the connection is open.

        Args:
            request: the :class:`~wskit.events.Request` (optional: the one
                received is used).
            subprotocol: as for :meth:`wskit.ServerProtocol.accept`.
            extra_headers: more response headers (not connection-specific).
            server_header: a ``server`` header to send (none by default:
                the HTTP/2 server that carries the stream may send its own).

        Returns:
            ``[]``: the answer is :meth:`response_headers`, sent as the
            stream's HEADERS.

        Raises:
            InvalidState: no valid request was received, or it was answered.
            ValueError: ``subprotocol`` was not offered; a bad extra header.
            InvalidHandshake: an extension factory failed (status 500).
        """
        if not self._si.handshake or self.request is None:
            raise InvalidState(f"accept() needs a received, unanswered request (state {self.state.name})")
        req = self.request if request is None else request
        chosen = self._choose_subprotocol(req, subprotocol)  # one of the offered tokens, or None
        items: list[H2Header] = []
        try:
            extensions, answer = self._negotiate(req)
        except InvalidHandshake as exc:
            exc.to_send = []
            self._handshake_failed(exc)
            raise
        if answer:
            items.append(("sec-websocket-extensions", serialize_extension_header(answer)))
        if chosen is not None:
            items.append(("sec-websocket-protocol", chosen))
        if server_header is not None:
            _check_value("Server", server_header)
            items.append(("server", server_header))
        items.extend(_lower_items(extra_headers, _SERVER_OWN, "H2ServerProtocol.accept"))
        headers = Headers._trusted(items)
        hook = self._plugins.handshake_response
        if hook is not None:
            try:
                hook(protocol=self, request=req, headers=headers)
            except PluginError as error:
                failure = _plugin_failed(error)
                failure.to_send = []
                self._handshake_failed(failure)
                raise failure from error
            headers = Headers._trusted([(name.lower(), value) for name, value in headers])
        self.response = Response(200, "OK", headers)
        self._subprotocol = chosen
        self._set_extensions(extensions)
        self._fire(Trigger.ACCEPT)
        if self._debug:
            self.logger.debug("> :status 200 (HTTP/2)")
        return []

    def reject(self, status: int, body: str | bytes = b"", headers: HeadersLike | None = None) -> list[bytes]:
        """Refuse the extended CONNECT with an HTTP response.

        Args:
            status: the HTTP status code (e.g. 403).
            body: the response body (a ``str`` is sent as UTF-8).
            headers: more response headers (connection-specific ones are left out).

        Returns:
            ``[]``: send :meth:`response_headers` then ``response.body``
            with END_STREAM.

        Raises:
            InvalidState: if the handshake is already over.
        """
        if not self._si.handshake:
            raise InvalidState(f"reject() is only possible during the opening handshake (state {self.state.name})")
        if isinstance(body, str):
            body = body.encode("utf-8")
        given = Headers(headers) if headers is not None else Headers()
        items = [(name.lower(), value) for name, value in given if name.lower() not in CONNECTION_SPECIFIC]
        names = {name for name, _ in items}
        if body and "content-type" not in names:
            items.append(("content-type", "text/plain; charset=utf-8"))
        if "content-length" not in names:
            items.append(("content-length", str(len(body))))
        self.response = Response(status, _PHRASES.get(status, ""), Headers._trusted(items), body)
        self._close_code = CloseCode.ABNORMAL_CLOSURE
        self._close_reason = ""
        self._fire(Trigger.HANDSHAKE_FAILED)
        return []

    def response_headers(self) -> list[H2Header]:
        """The answer's header block, ``:status`` first (after :meth:`accept` or :meth:`reject`).

        Raises:
            InvalidState: nothing was answered yet.
        """
        response = self.response
        if response is None:
            raise InvalidState("response_headers() needs accept() or reject() first")
        return [(":status", str(response.status_code)), *((name.lower(), value) for name, value in response.headers)]


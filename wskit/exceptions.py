"""Exceptions raised by wskit.

Every exception wskit raises derives from :class:`WSKitError`. Protocol
violations derive from :class:`ProtocolError`, which carries what must still be
written to the peer (``to_send``) and the events completed before the violation
(``events``), so that nothing received correctly is lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .events import Event, Response

__all__ = [
    "WSKitError",
    "ProtocolError",
    "InvalidState",
    "PayloadTooBig",
    "InvalidHandshake",
    "NegotiationError",
    "ConfigError",
    "PluginError",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "WebSocketClosed",
    "InvalidURI",
    "ConcurrencyError",
    "ConnectionClosed",
    "ProxyError",
    "RedirectError",
]


class WSKitError(Exception):
    """Base class of every exception raised by wskit."""


class ProtocolError(WSKitError):
    """The WebSocket protocol was violated (by the peer or by the caller).

    Attributes:
        to_send: bytes to write to the transport before closing it (our Close
            frame, or an HTTP error response during the opening handshake).
        events: events completed by the same ``receive_data`` call before the
            violation was detected; the application should still handle them.
        close_code: the close code of the failure: the one in ``to_send``'s
            Close frame (when our Close was already out, none is sent again).
    """

    def __init__(
        self,
        message: str = "",
        *,
        close_code: int | None = None,
        to_send: list[bytes] | None = None,
        events: list[Event] | None = None,
    ) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.to_send: list[bytes] = to_send if to_send is not None else []
        self.events: list[Event] = events if events is not None else []


class InvalidState(ProtocolError):
    """An operation is not allowed in the connection's current state."""


class PayloadTooBig(ProtocolError):
    """A received message is larger than ``max_size`` (close code 1009)."""


class InvalidHandshake(ProtocolError):
    """The opening handshake failed.

    Attributes:
        response: on the client, the server's :class:`~wskit.events.Response`
            when one was received (so a caller can follow a redirect or read
            a 401); ``None`` otherwise.
        status: on the server, the HTTP status of the error response in
            ``to_send``.
    """

    def __init__(
        self,
        message: str = "",
        *,
        response: Response | None = None,
        status: int = 400,
        headers: list[tuple[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.response = response
        self.status = status
        self.headers = headers or []


class InvalidURI(InvalidHandshake, ValueError):
    """A WebSocket URI could not be used (bad scheme, host or port)."""


class NegotiationError(InvalidHandshake):
    """Extension or subprotocol negotiation failed."""


class ConfigError(WSKitError, ValueError):
    """A configuration file or value is invalid.

    Attributes:
        errors: one ``"FILE:LINE: key.path: message"`` string per problem.
    """

    def __init__(self, errors: list[str] | str) -> None:
        if isinstance(errors, str):
            errors = [errors]
        self.errors = errors
        super().__init__("\n".join(errors))


class PluginError(WSKitError):
    """A plugin could not be loaded, or raised inside a hook."""


class WebSocketClosed(WSKitError):
    """Raised by the asyncio and sync layers when the connection is closed.

    Attributes:
        code: the close code received (or 1006 when none was).
        reason: the close reason received.
    """

    def __init__(self, code: int | None, reason: str | None, message: str = "") -> None:
        self.code = code
        self.reason = reason
        if not message:
            message = f"connection closed: code {code}" + (f" ({reason!r})" if reason else "")
        super().__init__(message)


ConnectionClosed = WebSocketClosed
"""The name python-websockets users know for :class:`WebSocketClosed`, the base of
:class:`ConnectionClosedOK` and :class:`ConnectionClosedError` (``wskit.ConnectionClosed``,
at the top of the package, is the sans-I/O event)."""


class ConnectionClosedOK(WebSocketClosed):
    """The connection was closed cleanly with code 1000 or 1001."""


class ConnectionClosedError(WebSocketClosed):
    """The connection was closed abnormally or with an error code."""


class ConcurrencyError(WSKitError, RuntimeError):
    """Two callers used a connection in a way that cannot be shared.

    Raised by both I/O layers for a ping whose payload is already waiting
    for its pong, and by :mod:`wskit.asyncio` for a ``recv`` called while
    another coroutine waits in ``recv``. Importable from
    :mod:`wskit.asyncio` and :mod:`wskit.sync` too.
    """


class ProxyError(InvalidHandshake):
    """A proxy could not open the tunnel to the server.

    Raised by the clients of :mod:`wskit.asyncio` and :mod:`wskit.sync`
    when the proxy cannot be reached, answers ``CONNECT`` with an error
    (407 when it wants credentials, 403, 502, ...) or with something that
    is not HTTP, or when a SOCKS proxy refuses. The message names the proxy
    (without its credentials) and what it answered.

    Attributes:
        proxy: the proxy's URL, without credentials.
        response: the proxy's HTTP answer to ``CONNECT``, when there was one.
    """

    def __init__(self, message: str, *, proxy: str, response: Response | None = None) -> None:
        super().__init__(message, response=response)
        self.proxy = proxy


class RedirectError(InvalidHandshake):
    """A redirect in the opening handshake could not be followed.

    Too many redirects, a ``Location`` that is missing or is not a usable
    URI, or a redirect from ``wss://`` to ``ws://`` (which would drop TLS).

    Attributes:
        response: the redirect response.
        uri: the URI that answered with the redirect.
    """

    def __init__(self, message: str, *, uri: str, response: Response | None = None) -> None:
        super().__init__(message, response=response)
        self.uri = uri

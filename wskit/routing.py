"""Dispatching connections by path with werkzeug's router, without I/O.

The I/O layers' ``route`` (:func:`wskit.asyncio.route`,
:func:`wskit.sync.route`) match the request target of each upgrade request
against a :class:`werkzeug.routing.Map` during the opening handshake: a match
picks the handler and its path parameters (``/rooms/<name>`` gives
``name=...``), no match is answered with 404, and a rule's redirect (a
missing trailing slash, ``strict_slashes``) with its 308 and ``Location``.

werkzeug is an optional dependency: ``pip install 'wskit[router]'``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from .events import Request, Response
from .headers import Headers

__all__ = ["Match", "Router", "MISSING_WERKZEUG", "plain_response"]

MISSING_WERKZEUG = ("routing needs werkzeug, an optional dependency of wskit: "
                    "install it with pip install 'wskit[router]' (or pip install 'werkzeug>=3')")


def _werkzeug_routing() -> Any:
    try:
        from werkzeug import routing
    except ImportError as exc:
        raise ImportError(MISSING_WERKZEUG) from exc
    return routing


@dataclass(frozen=True)
class Match:
    """The handler a request target matched.

    Attributes:
        handler: the rule's endpoint.
        params: the path parameters, converted (``<int:id>`` gives an ``int``).
        rule: the matched rule's pattern, e.g. ``"/rooms/<name>"``.
    """

    handler: Callable[..., Any]
    params: dict[str, Any]
    rule: str


def plain_response(status: int, text: str, headers: list[tuple[str, str]] | None = None) -> Response:
    """A ``text/plain`` HTTP response that closes the connection.

    Args:
        status: the HTTP status code.
        text: the body, sent as UTF-8.
        headers: more headers.
    """
    body = text.encode("utf-8")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    all_headers = Headers([*(headers or []), ("Content-Type", "text/plain; charset=utf-8"),
                           ("Content-Length", str(len(body))), ("Connection", "close")])
    return Response(status, phrase, all_headers, body)


class Router:
    """Match upgrade requests against werkzeug rules.

    Args:
        routes: a :class:`werkzeug.routing.Map` whose rules' endpoints are
            handlers, or a mapping of rule patterns to handlers
            (``{"/": home, "/rooms/<name>": room}``).
        scheme: ``"ws"`` or ``"wss"``, for the ``Location`` of a redirect.

    Raises:
        ImportError: werkzeug is not installed (the message names the
            ``router`` extra).
        TypeError: ``routes`` is neither, or a handler is not callable.
    """

    def __init__(self, routes: Any, *, scheme: str = "ws") -> None:
        routing = _werkzeug_routing()
        if isinstance(routes, routing.Map):
            url_map = routes
        elif isinstance(routes, Mapping):
            url_map = routing.Map([routing.Rule(pattern, endpoint=handler) for pattern, handler in routes.items()])
        else:
            raise TypeError(f"routes must be a werkzeug.routing.Map or a dict of path patterns to handlers, "
                            f"not {type(routes).__name__}")
        for rule in url_map.iter_rules():
            if not callable(rule.endpoint):
                raise TypeError(f"route {rule.rule!r}: the endpoint must be a handler (callable), "
                                f"got {rule.endpoint!r}")
        self.url_map = url_map
        self.scheme = scheme
        self._routing = routing
        from werkzeug.exceptions import HTTPException

        self._http_error = HTTPException

    def match(self, request: Request) -> Match | Response:
        """Return the :class:`Match` for ``request``, or the HTTP response to send instead.

        The response is 404 when no rule matches, 308 with ``Location``
        when the rule redirects (e.g. ``/rooms`` to ``/rooms/``), 400 for a
        request target werkzeug cannot read.
        """
        routing = self._routing
        path, _, query = request.path.partition("?")
        host = request.headers.get("Host") or "localhost"
        # Rules declared with websocket=True match a ws:// binding only, the
        # others an http:// one: try both, WebSocket rules first.
        http = "https" if self.scheme == "wss" else "http"
        for scheme in (self.scheme, http):
            try:
                adapter = self.url_map.bind(host, url_scheme=scheme, path_info=path, query_args=query)
                rule, params = adapter.match(return_rule=True)
            except routing.RequestRedirect as redirect:
                location = redirect.new_url
                if location.startswith(http + ":"):
                    location = self.scheme + location[len(http):]
                return plain_response(308, f"Moved to {location}\n", [("Location", location)])
            except self._http_error:  # NotFound, or a WebSocket rule bound as http (or the reverse)
                continue
            except Exception as exc:  # a malformed Host or path: werkzeug's own errors
                return plain_response(400, f"Bad request target: {type(exc).__name__}\n")
            return Match(rule.endpoint, dict(params), rule.rule)
        return plain_response(404, f"No route for {path}\n")

"""The server side of the opening handshake (RFC 6455 §4.2), sans-I/O.

:class:`ServerProtocol` parses the upgrade request as it arrives through
``receive_data`` (emitting a :class:`~wskit.events.Request`), then
:meth:`~ServerProtocol.accept` or :meth:`~ServerProtocol.reject` answers it.
Once accepted it behaves as a server :class:`~wskit.protocol.Protocol`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ._protocol import LoggerLike, Protocol, Side
from .client import ConfigSource, HeadersLike, _plugin_factories, takes_config
from .defaults import MAX_SIZE, USER_AGENT
from .events import Event, Request, Response
from .exceptions import InvalidHandshake, InvalidState, NegotiationError, PluginError
from .frames import CloseCode
from .handshake import build_accept_response, check_request, select_subprotocol
from .headers import Headers, parse_extension_header, parse_subprotocol_header, serialize_extension_header
from .http11 import _DEFAULT_LIMITS, _PHRASES, HTTPLimits, RequestParser, build_error_response, serialize_response
from .statemachine import State, StateSpec, Trigger

if TYPE_CHECKING:
    from .extensions.base import Extension, ServerExtensionFactory
    from .plugin import PluginManager

__all__ = ["ServerProtocol"]

# Frame header and mask allowance on top of max_size for data sent early.
_EARLY_SLACK = 65536

SubprotocolSelector = Callable[["ServerProtocol", Sequence[str]], "str | None"]


class ServerProtocol(Protocol):
    """A WebSocket server connection, from the upgrade request to the closing handshake.

    Args:
        subprotocols: subprotocols this server supports, in preference order.
        select_subprotocol: a function ``(protocol, offered) -> str | None``
            that picks the subprotocol instead of the preference order.
        origins: allowed ``Origin`` values (``None`` in the list allows a
            request without Origin); other origins get 403.
        extensions: extension factories the server may accept; ``None`` uses
            those the active plugins provide (permessage-deflate by default),
            ``[]`` accepts none.
        limits: limits on the size of the HTTP request (see
            :class:`~wskit.http11.HTTPLimits`).

        config: a loaded :class:`~wskit.config.Config` (``wskit.config.load``),
            or any :class:`~wskit.client.ConfigSource`; arguments given
            explicitly override its settings.

    The other arguments are those of :class:`~wskit.protocol.Protocol`.
    """

    __slots__ = ("request", "response", "_key", "_factories", "_subprotocols", "_selector", "_origins",
                 "_limits", "_parser")

    @takes_config("server_protocol")
    def __init__(
        self,
        *,
        logger: LoggerLike | None = None,
        max_size: int | None = MAX_SIZE,
        extensions: Sequence[ServerExtensionFactory] | None = None,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: SubprotocolSelector | None = None,
        origins: Sequence[str | None] | None = None,
        max_fragment_size: int | None = None,
        limits: HTTPLimits | None = None,
        plugins: Sequence[object] | None = None,
        plugin_manager: PluginManager | None = None,
        spec: str | Path | StateSpec | None = None,
        state: State | None = None,
        config: ConfigSource | None = None,
    ) -> None:
        super().__init__(Side.SERVER, logger=logger, max_size=max_size, state=state,
                         max_fragment_size=max_fragment_size, plugins=plugins,
                         plugin_manager=plugin_manager, spec=spec)
        if extensions is None:
            extensions = _plugin_factories(self.plugin_manager, "server")
        # Tuples: the empty ones are shared, so a plain connection pays nothing.
        self._factories: tuple[ServerExtensionFactory, ...] = tuple(extensions) if extensions else ()
        self._subprotocols: tuple[str, ...] = tuple(subprotocols) if subprotocols else ()
        self._selector = select_subprotocol
        self._origins = None if origins is None else tuple(origins)
        self._limits = limits or _DEFAULT_LIMITS
        self._parser: RequestParser | None = RequestParser(self._limits)
        self._key = ""
        self.request: Request | None = None
        self.response: Response | None = None

    def _default_state(self) -> State:
        return State.CONNECTING

    def _receive_handshake(self, data: bytes | bytearray | memoryview) -> list[Event]:
        parser = self._parser
        if parser is None:
            # The request is complete; what follows are frames, parsed once
            # accept() has fixed the extensions. Bounded: a client may not
            # send more than one message's worth before being answered.
            if data:
                buf = self._reader.buf
                buf += data
                limit = (self._max_size if self._max_size is not None else MAX_SIZE) + _EARLY_SLACK
                if len(buf) > limit:
                    exc = InvalidHandshake(f"client sent {len(buf)} bytes of frames before the handshake was "
                                           f"answered (at most {limit})", status=400)
                    exc.to_send = [build_error_response(400, str(exc))]
                    self._handshake_failed(exc)
                    raise exc
            return []
        try:
            request = parser.feed(data)
            if request is None:
                return []
            self._parser = None
            leftover = parser.leftover()
            if leftover:
                self._reader.buf += leftover
            self.request = request
            if self._debug:
                self.logger.debug("< %s %s HTTP/1.1", request.method, request.path)
            self._key = check_request(request, origins=self._origins)
            offers = request.headers.get_all("Sec-WebSocket-Protocol")
            if offers:
                parse_subprotocol_header(offers)  # malformed: 400 now, not an error from accept()
            hook = self._plugins.check_request
            if hook is not None:
                try:
                    answer = hook(protocol=self, request=request)
                except PluginError as error:
                    raise _plugin_failed(error) from error
                if answer is not None:
                    raise _vetoed(answer)
        except InvalidHandshake as exc:
            if not exc.to_send:
                exc.to_send = [build_error_response(exc.status, str(exc), exc.headers)]
            self._handshake_failed(exc)
            raise
        return [request]

    def _choose_subprotocol(self, req: Request, subprotocol: str | None) -> str | None:
        """The subprotocol to answer ``req`` with: ``subprotocol`` if given, else the selector's or ours.

        Raises:
            ValueError: ``subprotocol`` (or the selector's choice) was not offered.
        """
        values = req.headers.get_all("Sec-WebSocket-Protocol")
        offered = parse_subprotocol_header(values) if values else []
        if subprotocol is not None:
            if subprotocol not in offered:
                raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client (offered: {offered})")
            return subprotocol
        if self._selector is not None:
            chosen = self._selector(self, offered)
            if chosen is not None and chosen not in offered:
                raise ValueError(f"select_subprotocol returned {chosen!r}, which the client did not offer")
            return chosen
        return select_subprotocol(offered, self._subprotocols)

    def accept(
        self,
        request: Request | None = None,
        *,
        subprotocol: str | None = None,
        extra_headers: HeadersLike | None = None,
        server_header: str | None = USER_AGENT,
    ) -> list[bytes]:
        """Accept the upgrade request: build the 101 response and open the connection.

        Args:
            request: the :class:`~wskit.events.Request` from ``receive_data``
                (optional: the one received is used).
            subprotocol: the subprotocol to choose (must be one the client
                offered); by default the first of the server's
                ``subprotocols`` the client offered, or ``select_subprotocol``'s choice.
            extra_headers: more response headers.
            server_header: the ``Server`` header (wskit's by default); ``None``
                omits it (an HTTP server that hands the stream over may send
                its own, e.g. in ``extra_headers``).

        Returns:
            The response's bytes, to write to the transport. Frames that
            followed the request are returned by the next ``receive_data``
            call (``receive_data(b"")`` returns them at once).

        Raises:
            InvalidState: if no valid request was received or it was answered.
        """
        if not self._si.handshake or self.request is None:
            raise InvalidState(f"accept() needs a received, unanswered request (state {self.state.name})")
        req = self.request if request is None else request
        chosen = self._choose_subprotocol(req, subprotocol)
        try:
            extensions, answer = self._negotiate(req)
        except InvalidHandshake as exc:
            self._handshake_failed(exc)
            raise
        headers, data = build_accept_response(
            self._key,
            subprotocol=chosen,
            extensions_header=serialize_extension_header(answer) if answer else None,
            extra_headers=extra_headers,
            server_header=server_header,
        )
        hook = self._plugins.handshake_response
        if hook is not None:
            try:
                hook(protocol=self, request=req, headers=headers)
            except PluginError as error:
                failure = _plugin_failed(error)
                self._handshake_failed(failure)
                raise failure from error
            data = serialize_response(101, "Switching Protocols", headers)
        self.response = Response(101, "Switching Protocols", headers)
        self._subprotocol = chosen
        self._set_extensions(extensions)
        self._fire(Trigger.ACCEPT)
        # The handshake is over: drop the headers' lookup indexes (rebuilt if
        # the application reads them again); request and response stay.
        req.headers._release()
        self.request.headers._release()
        headers._release()
        if self._debug:
            self.logger.debug("> HTTP/1.1 101 Switching Protocols")
        return [data]

    def _negotiate(self, request: Request) -> tuple[list[Extension], list[tuple[str, list[tuple[str, str | None]]]]]:
        accepted: list[Extension] = []
        answer: list[tuple[str, list[tuple[str, str | None]]]] = []
        if not self._factories:
            return accepted, answer
        values = request.headers.get_all("Sec-WebSocket-Extensions")
        if not values:
            return accepted, answer
        try:
            offers = parse_extension_header(values)
        except InvalidHandshake:
            return accepted, answer  # ignore an unparseable offer: no extension
        used: set[int] = set()
        # Offers in the client's preference order; the first acceptable one
        # of each extension wins (RFC 7692 §5).
        for name, params in offers:
            for i, factory in enumerate(self._factories):
                if i in used or factory.name != name:
                    continue
                try:
                    response_params, ext = factory.process_request_params(params, accepted)
                except NegotiationError:
                    continue
                except Exception as exc:  # a factory's bug: answer 500, name it here
                    raise InvalidHandshake(
                        f"internal error: extension factory {name!r} ({type(factory).__qualname__}) raised "
                        f"{type(exc).__name__}: {exc}", status=500,
                        to_send=[build_error_response(500, "Internal Server Error")]) from exc
                used.add(i)
                accepted.append(ext)
                answer.append((name, list(response_params)))
                break
        return accepted, answer

    def reject(self, status: int, body: str | bytes = b"", headers: HeadersLike | None = None) -> list[bytes]:
        """Refuse the upgrade with an HTTP response and close the connection.

        Args:
            status: the HTTP status code (e.g. 403).
            body: the response body (a ``str`` is sent as UTF-8).
            headers: more response headers.

        Returns:
            The response's bytes, to write before closing the transport.

        Raises:
            InvalidState: if the handshake is already over.
        """
        if not self._si.handshake:
            raise InvalidState(f"reject() is only possible during the opening handshake (state {self.state.name})")
        if isinstance(body, str):
            body = body.encode("utf-8")
        hdrs = Headers(headers) if headers is not None else Headers()
        if "Connection" not in hdrs:
            hdrs["Connection"] = "close"
        if "Content-Type" not in hdrs and body:
            hdrs["Content-Type"] = "text/plain; charset=utf-8"
        data = serialize_response(status, None, hdrs, body)
        phrase = _PHRASES.get(status, "")
        self.response = Response(status, phrase, hdrs, body)
        self._close_code = CloseCode.ABNORMAL_CLOSURE
        self._close_reason = ""
        self._fire(Trigger.HANDSHAKE_FAILED)
        return [data]

    def _handshake_failed(self, exc: InvalidHandshake) -> None:
        self._failure = exc
        self._close_code = CloseCode.ABNORMAL_CLOSURE
        self._close_reason = ""
        self._fire(Trigger.HANDSHAKE_FAILED)  # the spec gives every handshake state this transition
        if self._debug:
            self.logger.debug("! opening handshake failed: %s", exc)


def _plugin_failed(error: PluginError) -> InvalidHandshake:
    """A plugin hook raised during the handshake: answer 500, keep the details on the server."""
    return InvalidHandshake(f"opening handshake failed: {error}", status=500,
                            to_send=[build_error_response(500, "internal server error")])


def _vetoed(answer: Response) -> InvalidHandshake:
    data = serialize_response(answer.status_code, answer.reason_phrase or None, answer.headers, answer.body)
    exc = InvalidHandshake(f"request refused by a plugin with {answer.status_code} {answer.reason_phrase}",
                           status=answer.status_code, to_send=[data])
    exc.response = answer
    return exc



"""The client side of the opening handshake (RFC 6455 §4.1), sans-I/O.

:class:`ClientProtocol` builds the upgrade request (:meth:`connect`),
validates the server's response as it arrives through ``receive_data`` and
then behaves as a client :class:`~wskit.protocol.Protocol`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast
from typing import Protocol as TypingProtocol

from ._protocol import LoggerLike, Protocol, Side
from .defaults import MAX_SIZE, USER_AGENT
from .events import Event, Response
from .exceptions import InvalidHandshake, InvalidState, NegotiationError, ProtocolError
from .frames import CloseCode
from .handshake import build_request, check_response, generate_key, parse_uri
from .headers import Headers, parse_extension_header, serialize_extension_header
from .http11 import _DEFAULT_LIMITS, HTTPLimits, ResponseParser, serialize_request
from .statemachine import State, StateSpec, Trigger

if TYPE_CHECKING:
    from .extensions.base import ClientExtensionFactory, Extension
    from .plugin import PluginManager

__all__ = ["ClientProtocol", "ConfigSource"]

HeadersLike = Headers | Mapping[str, str] | Iterable[tuple[str, str]]

P = ParamSpec("P")
R = TypeVar("R")


class ConfigSource(TypingProtocol):
    """What the protocol classes accept as ``config=``.

    A loaded :class:`wskit.config.Config` is one. The sans-I/O core does not
    import the configuration layer: it only calls this method, so any object
    that has it will do.
    """

    def options_for(self, kind: str, given: Mapping[str, Any]) -> dict[str, Any]:
        """Return the keyword arguments for one consumer.

        Args:
            kind: ``"client_protocol"`` or ``"server_protocol"`` here.
            given: the arguments passed explicitly in the call (by keyword
                or by position); they win over the configuration's values.

        Returns:
            The keyword arguments to call the consumer with: the
            configuration's settings updated by ``given``.
        """
        ...


def takes_config(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a protocol class's ``__init__`` so that it takes ``config=``.

    Without ``config`` (or with ``None``) the call goes through unchanged.
    With one, ``__init__`` receives ``config.options_for(kind, given)``,
    where ``given`` holds the arguments of the call, positional ones
    included: they override the configuration even when equal to their
    default.

    Args:
        kind: the consumer name passed to :meth:`ConfigSource.options_for`.
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        # Parameters after ``self`` that may be passed by position.
        positional = [p.name for p in list(inspect.signature(func).parameters.values())[1:]
                      if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            config = kwargs.pop("config", None)
            if config is None:
                return func(*args, **kwargs)
            options_for = getattr(config, "options_for", None)
            if not callable(options_for):
                raise TypeError(f"config must be a wskit.config.Config (load one with wskit.config.load) or have "
                                f"an options_for(kind, given) method, got {type(config).__name__}")
            by_position = dict(zip(positional, args[1:]))
            merged = dict(options_for(kind, {**by_position, **kwargs}))
            for name in by_position:  # passed positionally already
                merged.pop(name, None)
            return func(*args, **merged)

        return wrapper

    return decorate


class ClientProtocol(Protocol):
    """A WebSocket client, from the upgrade request to the closing handshake.

    Args:
        uri: the ``ws://`` or ``wss://`` URI to connect to; user and password
            in it are sent as Basic authorization.
        subprotocols: subprotocols to offer, in preference order.
        origin: the ``Origin`` header to send, if any.
        extra_headers: more request headers (a :class:`Headers`, a mapping or
            ``(name, value)`` pairs).
        extensions: extension factories to offer, in preference order;
            ``None`` offers those the active plugins provide (permessage-deflate
            by default), ``[]`` offers none.
        limits: limits on the size of the server's HTTP response.
        user_agent: the ``User-Agent`` header (``None`` to send none).

        config: a loaded :class:`~wskit.config.Config` (``wskit.config.load``),
            or any :class:`ConfigSource`; arguments given explicitly override
            its settings.

    The other arguments are those of :class:`~wskit.protocol.Protocol`.

    Raises:
        InvalidURI: if ``uri`` is not a valid WebSocket URI.
    """

    __slots__ = ("wsuri", "request", "response", "_key", "_factories", "_offered_subprotocols",
                 "_origin", "_extra_headers", "_limits", "_parser", "_user_agent")

    @takes_config("client_protocol")
    def __init__(
        self,
        uri: str = "ws://localhost/",
        *,
        logger: LoggerLike | None = None,
        max_size: int | None = MAX_SIZE,
        extensions: Sequence[ClientExtensionFactory] | None = None,
        subprotocols: Sequence[str] | None = None,
        origin: str | None = None,
        extra_headers: HeadersLike | None = None,
        max_fragment_size: int | None = None,
        limits: HTTPLimits | None = None,
        user_agent: str | None = USER_AGENT,
        plugins: Sequence[object] | None = None,
        plugin_manager: PluginManager | None = None,
        spec: str | Path | StateSpec | None = None,
        state: State | None = None,
        config: ConfigSource | None = None,
    ) -> None:
        self.wsuri = parse_uri(uri)
        super().__init__(Side.CLIENT, logger=logger, max_size=max_size, state=state,
                         max_fragment_size=max_fragment_size, plugins=plugins,
                         plugin_manager=plugin_manager, spec=spec)
        if extensions is None:
            extensions = _plugin_factories(self.plugin_manager, "client")
        # Tuples: the empty ones are shared, so a plain connection pays nothing.
        self._factories: tuple[ClientExtensionFactory, ...] = tuple(extensions) if extensions else ()
        self._offered_subprotocols: tuple[str, ...] = tuple(subprotocols) if subprotocols else ()
        self._origin = origin
        self._extra_headers = extra_headers
        self._limits = limits or _DEFAULT_LIMITS
        self._user_agent = user_agent
        self._parser: ResponseParser | None = None
        self._key = ""
        self.request: Headers | None = None
        self.response: Response | None = None

    def _default_state(self) -> State:
        return State.CONNECTING

    def connect(self) -> list[bytes]:
        """Build the opening handshake request.

        Returns:
            The request's bytes, to write to the transport.

        Raises:
            InvalidState: if the handshake was already started or is over.
        """
        if not self._si.handshake or self._parser is not None:
            raise InvalidState(f"connect() can only be called once, in state CONNECTING (state {self.state.name})")
        self._key = generate_key()
        factories = self._factories
        headers, data = build_request(
            self.wsuri,
            self._key,
            origin=self._origin,
            subprotocols=self._offered_subprotocols or None,
            extensions_header=serialize_extension_header([(f.name, f.get_request_params()) for f in factories])
            if factories else None,
            extra_headers=self._extra_headers,
            user_agent=self._user_agent,
        )
        self._extra_headers = None  # sent: no need to keep them
        hook = self._plugins.handshake_request
        if hook is not None:
            hook(protocol=self, headers=headers)
            data = serialize_request("GET", self.wsuri.path, headers)
            headers._release()
        self.request = headers
        self._parser = ResponseParser(self._limits)
        if self._debug:
            self.logger.debug("> GET %s HTTP/1.1 [%d bytes]", self.wsuri.path, len(data))
        return [data]

    def _receive_handshake(self, data: bytes | bytearray | memoryview) -> list[Event]:
        parser = self._parser
        if parser is None:
            raise InvalidState("call connect() and send the request before receive_data()")
        try:
            response = parser.feed(data)
        except InvalidHandshake as exc:
            self._handshake_failed(exc)
            raise
        if response is None:
            return []
        return self._complete(response, parser.leftover())

    def receive_eof(self) -> list[Event]:
        """See :meth:`Protocol.receive_eof`.

        During the handshake, an EOF completes a response whose body runs
        until the connection closes (the result then carries the
        ``InvalidHandshake`` with that response).

        Raises:
            InvalidHandshake: the connection closed before a complete
                response head arrived (the state is then ``CLOSED``; a later
                call returns ``[ConnectionClosed(exception)]``).
        """
        if self._si.handshake and self._parser is not None:
            try:
                response = self._parser.feed_eof()
            except InvalidHandshake as exc:
                self._handshake_failed(exc)
                raise
            # Still in the handshake: feed() has not returned the response, so
            # the end of the stream completes it (a body that runs until EOF).
            try:
                self._complete(cast(Response, response), b"")
            except ProtocolError:
                pass
        return super().receive_eof()

    def _complete(self, response: Response, leftover: bytes) -> list[Event]:
        self.response = response
        if self._debug:
            self.logger.debug("< HTTP/1.1 %d %s", response.status_code, response.reason_phrase)
        try:
            subprotocol = check_response(response, self._key, subprotocols_offered=self._offered_subprotocols)
            extensions = self._negotiate(response)
        except InvalidHandshake as exc:
            exc.response = response
            self._handshake_failed(exc)
            raise
        self._subprotocol = subprotocol
        self._set_extensions(extensions)
        self._fire(Trigger.ACCEPT)
        # The handshake is over: drop the parser and the headers' lookup index
        # (rebuilt if the application reads them), keep request and response.
        self._parser = None
        response.headers._release()
        events: list[Event] = [response]
        if leftover:
            try:
                events.extend(self.receive_data(leftover))  # OPEN now: frames
            except ProtocolError as exc:
                exc.events = [response, *exc.events]
                raise
        return events

    def _negotiate(self, response: Response) -> list[Extension]:
        values = response.headers.get_all("Sec-WebSocket-Extensions")
        if not values:
            return []
        accepted: list[Extension] = []
        used: set[int] = set()
        for name, params in parse_extension_header(values):
            # RFC 6455 §9.1: the server may only accept extensions the client offered.
            for i, factory in enumerate(self._factories):
                if i in used or factory.name != name:
                    continue
                try:
                    ext = factory.process_response_params(params, accepted)
                except NegotiationError:
                    continue
                except Exception as exc:  # a factory's bug fails the handshake like a bad answer
                    raise NegotiationError(f"extension factory {name!r} ({type(factory).__qualname__}) raised "
                                           f"{type(exc).__name__}: {exc}") from exc
                used.add(i)
                accepted.append(ext)
                break
            else:
                offered = ", ".join(f.name for f in self._factories) or "none"
                raise NegotiationError(f"Sec-WebSocket-Extensions: the server accepted {name!r} with parameters "
                                       f"{params!r}, which does not match an offer (offered: {offered})")
        return accepted

    def _handshake_failed(self, exc: InvalidHandshake) -> None:
        self._close_code = CloseCode.ABNORMAL_CLOSURE  # the first failure: the handshake state ends here
        self._close_reason = ""
        self._failure = exc
        self._fire(Trigger.HANDSHAKE_FAILED)  # the spec gives every handshake state this transition
        if self._debug:
            self.logger.debug("! opening handshake failed: %s", exc)


def _plugin_factories(manager: PluginManager, side: str) -> list[Any]:
    """The extension factories the plugins of ``manager`` provide for ``side``."""
    return manager.extension_factories(side)

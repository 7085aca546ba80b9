"""One ASGI WebSocket connection (ASGI spec 2.4) on an asyncio transport.

:class:`ASGIConnection` is the asyncio layer's
:class:`~wskit.asyncio.connection.Connection` (reading, writing, the
receive queue, the write limit, keepalive, the close timer) with the ASGI
application's ``receive`` and ``send`` in place of ``recv`` and ``send``:

* the opening handshake is the core's :class:`~wskit.ServerProtocol`: it
  parses the upgrade request the HTTP server hands over, builds the 101 when
  the application sends ``websocket.accept``, or the HTTP response it denies
  the upgrade with (``websocket.close`` before accept: 403;
  ``websocket.http.response.*``: the application's own response);
* every close-handshake decision (answering or holding the peer's Close, who
  closes TCP first, the code the application is told) is the core's and
  :class:`wskit.duties.Duties`', through the asyncio layer; this module adds
  none;
* an application that sends a message that is invalid in the current state
  gets a ``RuntimeError`` naming it, the error is logged, and the connection
  ends: 500 before accept, close code 1011 after. An exception escaping the
  application ends it the same way.

The server-specific part (where the options come from, the server's
registries of connections and tasks) is a subclass's:
:class:`wskit.asgi.UvicornProtocol` for uvicorn.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

from ..asyncio.connection import Connection, make_logger
from ..defaults import CLOSE_TIMEOUT, WRITE_LIMIT
from ..events import Request
from ..exceptions import InvalidHandshake, ProtocolError, WebSocketClosed
from ..frames import CloseCode
from ..protocol import ServerProtocol

__all__ = ["ASGIApp", "ASGIConnection", "ClientDisconnected"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[Any]]
"""An ASGI 3 application: ``await app(scope, receive, send)``."""

SPEC_VERSION = "2.4"


class ClientDisconnected(OSError):
    """Raised by ``send`` once the connection is closed (ASGI spec: an ``OSError``).

    Attributes:
        code: the connection's close code (1006 when none was received).
        reason: the close reason.
    """

    def __init__(self, code: int | None, reason: str | None) -> None:
        self.code = CloseCode.ABNORMAL_CLOSURE if code is None else code
        self.reason = reason or ""
        super().__init__(f"the WebSocket connection is closed (code {self.code})")


class _Phase(enum.Enum):
    """Where the application is in the ASGI conversation."""

    CONNECTING = "connecting"  # websocket.connect delivered or pending; no answer yet
    RESPONDING = "responding"  # websocket.http.response.start received, the body not complete
    OPEN = "open"  # websocket.accept sent
    DONE = "done"  # the application closed, denied, or the connection was ended for it


_CONNECT: dict[str, Any] = {"type": "websocket.connect"}


def _disconnect(exc: WebSocketClosed) -> dict[str, Any]:
    code = exc.code
    return {"type": "websocket.disconnect", "code": CloseCode.ABNORMAL_CLOSURE if code is None else code,
            "reason": exc.reason or ""}


class ASGIConnection(Connection):
    """A WebSocket connection served to an ASGI application.

    A server's WebSocket protocol class derives from it, is made the
    transport's protocol once the HTTP server sees an upgrade request, and is
    given that request's bytes through ``data_received``.

    Args:
        app: the ASGI 3 application.
        protocol: the sans-I/O server protocol (limits, extensions).
        root_path: the ASGI ``root_path`` (a mount point the proxy strips).
        asgi_version: the scope's ``asgi["version"]``.
        app_state: the lifespan state; each scope gets a shallow copy.
        default_headers: called once per response, returns the headers the
            HTTP server adds to every response (``(name, value)`` bytes).
        connections: a registry of the server's open connections (the
            connection adds itself while its transport is open), or ``None``.
        tasks: a registry of the server's running tasks, or ``None``.
        error_logger: where application errors and access lines go.
        max_queue: as for :func:`wskit.asyncio.serve`.
        write_limit: as for :func:`wskit.asyncio.serve`.
        ping_interval: as for :func:`wskit.asyncio.serve`.
        ping_timeout: as for :func:`wskit.asyncio.serve`.
        close_timeout: as for :func:`wskit.asyncio.serve`.
    """

    protocol: ServerProtocol

    def __init__(
        self,
        app: ASGIApp,
        protocol: ServerProtocol,
        *,
        root_path: str = "",
        asgi_version: str = "3.0",
        app_state: dict[str, Any] | None = None,
        default_headers: Callable[[], list[tuple[bytes, bytes]]] | None = None,
        connections: set[Any] | None = None,
        tasks: set[asyncio.Task[None]] | None = None,
        error_logger: logging.Logger | None = None,
        max_queue: int | None = 32,
        write_limit: int = WRITE_LIMIT,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float | None = CLOSE_TIMEOUT,
    ) -> None:
        conn_id = uuid.uuid4()
        super().__init__(protocol, conn_id=conn_id, logger=make_logger(None, "wskit.asgi", conn_id),
                         max_queue=max_queue, write_limit=write_limit, ping_interval=ping_interval,
                         ping_timeout=ping_timeout, close_timeout=close_timeout)
        self.app = app
        self.root_path = root_path
        self.asgi_version = asgi_version
        self.app_state = app_state if app_state is not None else {}
        self._default_headers = default_headers
        self._connections: set[Any] = set() if connections is None else connections
        self._tasks: set[asyncio.Task[None]] = set() if tasks is None else tasks
        self.error_logger = error_logger or logging.getLogger("wskit.asgi")
        self.scope: dict[str, Any] | None = None
        self._phase = _Phase.CONNECTING
        self._connect_pending = True
        self._response: tuple[int, list[tuple[str, str]], list[bytes]] | None = None
        self._reported: BaseException | None = None
        self._app_task: asyncio.Task[None] | None = None

    # -- asyncio.Protocol callbacks ---------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._connections.discard(self)

    # -- the opening handshake ---------------------------------------------------

    def _opening_data(self, data: bytes) -> None:
        # Bytes that arrive once the request was answered (a denial) reach a
        # core in its CLOSED state, which discards them.
        try:
            events = self.protocol.receive_data(data)
        except InvalidHandshake as exc:
            # Not a valid upgrade (400, 426), or frames sent too early in bulk.
            if self._debug:
                self.logger.debug("! invalid opening request: %s", exc)
            self._phase = _Phase.DONE
            self._write(exc.to_send)
            self._close_transport()
            return
        if events and self._app_task is None:
            request = events[0]
            assert isinstance(request, Request)
            self.scope = self._build_scope(request)
            self._app_task = task = self._loop.create_task(self._run_app(self.scope))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _build_scope(self, request: Request) -> dict[str, Any]:
        target = request.path
        raw_path, _, query = target.partition("?")
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in request.headers]
        subprotocols: list[str] = []
        for value in request.headers.get_all("Sec-WebSocket-Protocol"):
            subprotocols.extend(token.strip() for token in value.split(",") if token.strip())
        transport = self._transport
        return {
            "type": "websocket",
            "asgi": {"version": self.asgi_version, "spec_version": SPEC_VERSION},
            "http_version": "1.1",
            "scheme": "wss" if transport is not None and transport.get_extra_info("sslcontext") else "ws",
            "server": _address(None if transport is None else transport.get_extra_info("sockname"), server=True),
            "client": _address(None if transport is None else transport.get_extra_info("peername")),
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path),
            "raw_path": self.root_path.encode("ascii") + raw_path.encode("ascii"),
            "query_string": query.encode("ascii"),
            "headers": headers,
            "subprotocols": subprotocols,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }

    def _close_transport(self) -> None:
        transport = self._transport
        assert transport is not None  # connection_made came before any data
        transport.close()  # nothing more if it is already closing
        self._start_close_timer()

    def _server_headers(self) -> list[tuple[str, str]]:
        if self._default_headers is None:
            return []
        return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self._default_headers()]

    def _deny(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> None:
        """Answer the upgrade request with an HTTP response and end the connection.

        Called while the connection is not lost and the application has
        neither accepted nor denied it: the core is still CONNECTING.
        """
        data = self.protocol.reject(status, body, self._server_headers() + (headers or []))
        self._phase = _Phase.DONE
        self._access(status)
        self._write(data)
        self._close_transport()

    def _access(self, status: int | str) -> None:
        scope = self.scope
        if scope is None or not self.error_logger.isEnabledFor(logging.INFO):
            return
        client = scope["client"]
        path = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            path += "?" + scope["query_string"].decode("latin-1")
        self.error_logger.info('%s - "WebSocket %s" %s', f"{client[0]}:{client[1]}" if client else "", path, status)

    def _accept(self, message: Message) -> None:
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and not isinstance(subprotocol, str):
            raise self._invalid(message, f"'subprotocol' must be a str or None, not {type(subprotocol).__name__}")
        try:
            app_headers = [(bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
                           for name, value in message.get("headers") or ()]
        except (TypeError, ValueError) as exc:
            raise self._invalid(message, f"'headers' must be an iterable of [name, value] byte strings ({exc})") \
                from None
        server_header: str | None = None
        extra: list[tuple[str, str]] = []
        for name, value in self._server_headers():
            if name.lower() == "server":
                server_header = value
            else:
                extra.append((name, value))
        extra += app_headers
        try:
            data = self.protocol.accept(subprotocol=subprotocol, extra_headers=extra, server_header=server_header)
        except InvalidHandshake as exc:  # the negotiation failed (an extension factory's bug): 500
            self.error_logger.error("WebSocket handshake failed: %s", exc)
            self._phase = _Phase.DONE
            self._write(exc.to_send)
            self._close_transport()
            raise ClientDisconnected(CloseCode.ABNORMAL_CLOSURE, "") from exc
        except ValueError as exc:  # a subprotocol the client did not offer, a bad header
            raise self._invalid(message, str(exc)) from None
        self._phase = _Phase.OPEN
        self._access("[accepted]")
        self._write(data)
        self._opened()
        self.data_received(b"")  # frames that followed the request

    def _opening_lost(self, error: ProtocolError | None) -> None:
        pass  # receive() tells the application: websocket.disconnect, code 1006

    # -- the application -----------------------------------------------------------

    async def _run_app(self, scope: dict[str, Any]) -> None:
        try:
            result = await self.app(scope, self.receive, self.send)
        except ClientDisconnected:
            pass  # the connection is closed and the application was told
        except asyncio.CancelledError:
            # The server gave up waiting for the application (graceful shutdown timeout).
            if self._phase is _Phase.OPEN and not self._lost:
                self._phase = _Phase.DONE
                self._fail(CloseCode.SERVICE_RESTART, "server shutting down")
            else:
                self._end_for_app(CloseCode.SERVICE_RESTART, "")
            raise
        except Exception as exc:
            if exc is not self._reported:
                self.error_logger.error("Exception in ASGI application", exc_info=True)
            self._end_for_app(CloseCode.INTERNAL_ERROR, "internal error")
        else:
            if result is not None:
                self.error_logger.error("ASGI application should return None, but returned %r", result)
            phase = self._phase
            if phase is _Phase.CONNECTING or phase is _Phase.RESPONDING:
                self.error_logger.error("ASGI application returned without %s",
                                        "accepting or denying the WebSocket connection" if phase is _Phase.CONNECTING
                                        else "completing its HTTP response (more_body was never False)")
                self._end_for_app(CloseCode.INTERNAL_ERROR, "internal error")
            elif phase is _Phase.OPEN:
                self._phase = _Phase.DONE
                await self.close(CloseCode.NORMAL_CLOSURE)
        if not self._lost:
            await self.wait_closed()

    def _end_for_app(self, code: int, reason: str) -> None:
        """End the connection for the application: 500 before accept, ``code`` after."""
        phase = self._phase
        self._phase = _Phase.DONE
        if self._lost:
            return
        if phase is _Phase.CONNECTING or phase is _Phase.RESPONDING:
            self._deny(500, b"Internal Server Error\n")
        else:
            self._spawn(self.close(code, reason))

    def _spawn(self, coro: Any) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _invalid(self, message: Any, problem: str) -> RuntimeError:
        """Log an application's invalid message, end the connection, return the error to raise."""
        kind = message.get("type") if isinstance(message, MutableMapping) else type(message).__name__
        error = RuntimeError(f"ASGI application sent an invalid message {kind!r} while the WebSocket connection "
                             f"is {self._phase.value}: {problem}")
        self.error_logger.error("%s", error)
        self._reported = error
        self._end_for_app(CloseCode.INTERNAL_ERROR, "internal error")
        return error

    async def receive(self) -> Message:
        """The ASGI ``receive``: connect, then each message, then disconnect (again on every later call)."""
        if self._connect_pending:
            self._connect_pending = False
            return _CONNECT.copy()
        try:
            data = await self._next_message(None, False)
        except WebSocketClosed as exc:
            return _disconnect(exc)
        if type(data) is str:
            return {"type": "websocket.receive", "text": data}
        return {"type": "websocket.receive", "bytes": data}

    async def send(self, message: Message) -> None:  # type: ignore[override]
        """The ASGI ``send``.

        Raises:
            ClientDisconnected: the connection is closed (or closing after the
                application's ``websocket.close``).
            RuntimeError: the message is invalid in the current state (the
                connection is ended: 500 before accept, 1011 after).
        """
        try:
            kind = message["type"]
        except (TypeError, KeyError, IndexError):
            raise self._invalid(message, "an ASGI message is a dict with a 'type' key") from None
        phase = self._phase
        if phase is _Phase.OPEN:
            if kind == "websocket.send":
                text = message.get("text")
                data = message.get("bytes")
                if data is None and type(text) is str:
                    payload: Any = text
                elif text is None and isinstance(data, (bytes, bytearray, memoryview)):
                    payload = data
                else:
                    raise self._invalid(message, "exactly one of 'bytes' (bytes) and 'text' (str) must be given")
                try:
                    await Connection.send(self, payload)
                except WebSocketClosed as exc:
                    raise ClientDisconnected(exc.code, exc.reason) from None
                return
            if kind == "websocket.close":
                code = message.get("code", CloseCode.NORMAL_CLOSURE)
                reason = message.get("reason") or ""
                # An int (an IntEnum too, like the default), not a bool.
                if not isinstance(code, int) or isinstance(code, bool) or not isinstance(reason, str):
                    raise self._invalid(message, "'code' must be an int and 'reason' a str")
                self._phase = _Phase.DONE
                try:
                    await self.close(code, reason)
                except ProtocolError as exc:  # a code that may not be sent, a reason too long
                    self._phase = _Phase.OPEN
                    raise self._invalid(message, str(exc)) from None
                return
            raise self._invalid(message, "expected 'websocket.send' or 'websocket.close'")
        if self._lost:
            raise ClientDisconnected(self._duties.close_code, self._duties.close_reason)
        if phase is _Phase.CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._deny(403)  # ASGI: a close before accept is a 403
            elif kind == "websocket.http.response.start":
                status = message.get("status")
                if type(status) is not int or not 200 <= status <= 599:
                    raise self._invalid(message, f"'status' must be an int from 200 to 599, got {status!r}")
                try:
                    headers = [(bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
                               for name, value in message.get("headers") or ()]
                except (TypeError, ValueError) as exc:
                    raise self._invalid(message, f"'headers' must be [name, value] byte strings ({exc})") from None
                self._response = (status, headers, [])
                self._phase = _Phase.RESPONDING
            else:
                raise self._invalid(message, "expected 'websocket.accept', 'websocket.close' or "
                                             "'websocket.http.response.start'")
            return
        if phase is _Phase.RESPONDING:
            if kind != "websocket.http.response.body":
                raise self._invalid(message, "expected 'websocket.http.response.body'")
            body = message.get("body", b"")
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise self._invalid(message, f"'body' must be bytes, not {type(body).__name__}")
            assert self._response is not None
            status, headers, parts = self._response
            parts.append(bytes(body))
            if not message.get("more_body", False):
                try:
                    self._deny(status, b"".join(parts), headers)
                except ValueError as exc:  # e.g. a body on a 204
                    self._phase = _Phase.RESPONDING
                    raise self._invalid(message, str(exc)) from None
            return
        raise ClientDisconnected(self._duties.close_code, self._duties.close_reason)

    # -- the server --------------------------------------------------------------

    def shutdown(self) -> None:
        """The server stops: close with 1012 (service restart); before accept, answer 503.

        Called for the connections in the server's registry, which holds a
        connection only while its transport is open.
        """
        phase = self._phase
        if phase is _Phase.CONNECTING or phase is _Phase.RESPONDING:
            self._deny(503, b"Service Unavailable: the server is shutting down\n")
        else:
            self._spawn(self.close(CloseCode.SERVICE_RESTART, "server shutting down"))


def _address(info: Any, server: bool = False) -> Any:
    """An ASGI ``client``/``server`` value from a socket address."""
    if isinstance(info, (list, tuple)) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    if server and isinstance(info, str) and info:
        return (info, None)
    return None

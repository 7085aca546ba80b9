"""asyncio WebSocket server: :func:`serve`, :func:`unix_serve` and :class:`Server`."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import ssl as ssl_module
import sys
import uuid
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._io import (
    ConnectionOptions,
    listening_address,
    loop_keywords,
    remove_unix_socket,
    resolve_logger,
    resolve_manager,
    set_server_header,
    with_config,
)
from ..auth import Credentials, credentials_check, request_credentials, unauthorized
from ..broadcast import Broadcast
from ..defaults import (
    CLOSE_TIMEOUT,
    MAX_QUEUE,
    MAX_SIZE,
    OPEN_TIMEOUT,
    PING_INTERVAL,
    PING_TIMEOUT,
    USER_AGENT,
    WRITE_LIMIT,
)
from ..duties import check_options
from ..events import Request, Response
from ..exceptions import InvalidHandshake, WebSocketClosed
from ..frames import CloseCode
from ..headers import Headers
from ..http11 import HTTPLimits, serialize_response
from ..plugins.deflate import io_extensions
from ..protocol import ServerProtocol, State
from ..routing import Match, Router
from .connection import Connection, Data, LoggerLike, create_server_function, make_logger

if TYPE_CHECKING:
    from ..config import Config
    from ..plugin import PluginManager
    from ..statemachine import StateSpec

__all__ = ["Server", "ServerConnection", "basic_auth", "broadcast", "route", "serve", "unix_serve"]

Handler = Callable[["ServerConnection"], Awaitable[Any]]
ProcessRequest = Callable[["ServerConnection", Request], "Response | Awaitable[Response | None] | None"]
ProcessResponse = Callable[["ServerConnection", Request, Response], "Response | Awaitable[Response | None] | None"]
SelectSubprotocol = Callable[["ServerConnection", Sequence[str]], "str | None"]


class ServerConnection(Connection):
    """A server-side connection, the argument of a :func:`serve` handler.

    See :class:`~wskit.asyncio.connection.Connection` for the messaging API.
    """

    protocol: ServerProtocol
    username: str | None = None
    """The user name the client authenticated with (see :func:`basic_auth`), or ``None``."""
    route: Match | None = None
    """The route the request matched (see :func:`route`), or ``None``."""

    def __init__(self, protocol: ServerProtocol, server: Server, *, open_timeout: float | None,
                 **kwargs: Any) -> None:
        super().__init__(protocol, **kwargs)
        self.server = server
        self._was_open = False
        self._open_timeout = open_timeout
        self._open_handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        http2 = self.server._http2
        if http2 is not None and http2.take_over(self, transport):
            return  # TLS ALPN chose h2: wskit.asyncio.http2 serves this TCP connection
        super().connection_made(transport)
        self.server._connections.add(self)
        if self._open_timeout is not None:
            # A client that never completes its request (slow loris) loses its slot.
            self._open_handle = self._loop.call_later(self._open_timeout, self._open_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._open_handle is not None:
            self._open_handle.cancel()
            self._open_handle = None
        super().connection_lost(exc)
        self.server._connections.discard(self)
        if self._was_open:
            self.logger.info("connection closed")

    def _open_expired(self) -> None:
        self._open_handle = None
        if self._debug:
            self.logger.debug("! opening handshake timed out")
        if self._transport is not None:
            self._transport.abort()
        if self._task is not None and self._opening:
            self._task.cancel()

    def _opening_data(self, data: bytes) -> None:
        if self._task is not None:  # request received: the core buffers what follows
            self.protocol.receive_data(data)
            return
        try:
            events = self.protocol.receive_data(data)
        except InvalidHandshake as exc:
            request = self.protocol.request
            if request is not None and self.server._process_request is not None:
                # Not a valid upgrade, but maybe a plain HTTP request the
                # application answers (a health check, ...).
                self._task = self._loop.create_task(self._answer_http(request, exc))
                self.server._tasks.add(self._task)
                self._task.add_done_callback(self.server._tasks.discard)
                return
            if self._debug:
                self.logger.debug("! invalid opening request: %s", exc)
            self._write(exc.to_send)
            self._end_opening()
            return
        if events:
            self._task = self._loop.create_task(self._run(events[0]))  # type: ignore[arg-type]
            self.server._tasks.add(self._task)
            self._task.add_done_callback(self.server._tasks.discard)

    def _end_opening(self) -> None:
        if self._open_handle is not None:
            self._open_handle.cancel()
            self._open_handle = None
        if self._transport is not None:
            self._transport.close()
        self._start_close_timer()

    async def _respond(self, request: Request | None, response: Response) -> None:
        """Send an HTTP response instead of the upgrade (after ``process_response``) and close."""
        if request is not None and self.server._process_response is not None:
            try:
                response = await self._call_process_response(request, response) or response
            except Exception:
                self.logger.error("process_response failed", exc_info=True)
                response = _error_response(500, "Failed to open a WebSocket connection.\n")
        self._send_response(response)

    def _send_response(self, response: Response) -> None:
        headers = response.headers.copy() if isinstance(response.headers, Headers) else Headers(response.headers)
        if "Connection" not in headers:
            headers["Connection"] = "close"
        set_server_header(headers, self.server._server_header)
        self._write([serialize_response(response.status_code, response.reason_phrase or None, headers,
                                        response.body)])
        self._response = response
        self._end_opening()

    async def _call_process_request(self, request: Request) -> Response | None:
        process_request = self.server._process_request
        if process_request is None:
            return None
        answer = process_request(self, request)
        if inspect.isawaitable(answer):
            answer = await answer
        if answer is not None and not isinstance(answer, Response):
            raise TypeError(f"process_request must return a wskit.Response or None, not {type(answer).__name__}")
        return answer

    async def _call_process_response(self, request: Request, response: Response) -> Response | None:
        process_response = self.server._process_response
        if process_response is None:
            return None
        answer = process_response(self, request, response)
        if inspect.isawaitable(answer):
            answer = await answer
        if answer is not None and not isinstance(answer, Response):
            raise TypeError(f"process_response must return a wskit.Response or None, not {type(answer).__name__}")
        return answer

    async def _answer_http(self, request: Request, exc: InvalidHandshake) -> None:
        try:
            answer = await self._call_process_request(request)
        except Exception:
            self.logger.error("process_request failed", exc_info=True)
            answer = _error_response(500, "Failed to open a WebSocket connection.\n")
        if answer is not None:
            await self._respond(request, answer)
        else:
            self._write(exc.to_send)
            self._end_opening()

    async def _run(self, request: Request) -> None:
        server = self.server
        try:
            answer = await self._call_process_request(request)
            if self._lost:
                return  # closed meanwhile (by the client, or by process_request itself)
            if answer is not None:
                if self.protocol.state is State.CONNECTING:
                    self.protocol.reject(answer.status_code, answer.body, answer.headers)
                await self._respond(request, answer)
                return
            data = self.protocol.accept(request)
            if server._server_header != USER_AGENT or server._process_response is not None:
                response = self.protocol.response
                assert response is not None
                set_server_header(response.headers, server._server_header)
                final = await self._call_process_response(request, response) or response
                if final.status_code != 101:
                    self._send_response(final)
                    return
                self._response = final
                data = [serialize_response(final.status_code, final.reason_phrase or None, final.headers,
                                           final.body)]
        except asyncio.CancelledError:
            raise
        except Exception:
            self.logger.error("opening handshake failed", exc_info=True)
            if self.protocol.state is State.CONNECTING:
                self.protocol.reject(500, "")
            self._send_response(_error_response(500, "Failed to open a WebSocket connection.\n"))
            return
        if self._lost:
            return
        if self._open_handle is not None:
            self._open_handle.cancel()
            self._open_handle = None
        self._write(data)
        self._opened()
        self._was_open = True
        self.logger.info("connection open")
        self.data_received(b"")  # frames that followed the request
        try:
            await server._handler(self)
        except WebSocketClosed:
            pass  # the connection is already closed; nothing to report
        except Exception:
            self.logger.error("connection handler failed", exc_info=True)
            await self.close(CloseCode.INTERNAL_ERROR, "internal error")
        else:
            await self.close(CloseCode.NORMAL_CLOSURE)

    @property
    def request(self) -> Request | None:
        """The client's upgrade request."""
        return self.protocol.request

    @property
    def response(self) -> Response | None:
        """The response sent: the 101, or what ``process_request`` returned."""
        return getattr(self, "_response", None) or self.protocol.response

    def respond(self, status: int, text: str) -> Response:
        """Build a plain-text HTTP response for ``process_request`` to return.

        Args:
            status: the HTTP status code.
            text: the body, sent as UTF-8 ``text/plain``.
        """
        return _error_response(status, text)


def _error_response(status: int, text: str) -> Response:
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    body = text.encode("utf-8")
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                       ("Connection", "close")])
    return Response(status, phrase, headers, body)


class Server:
    """A running WebSocket server, returned by :func:`serve`.

    Attributes:
        connections: the open connections (including those still in the
            opening handshake).
    """

    def __init__(self, handler: Handler, *, process_request: ProcessRequest | None, logger: logging.Logger,
                 close_timeout: float | None, process_response: ProcessResponse | None = None,
                 server_header: str | None = USER_AGENT) -> None:
        self._handler = handler
        self._process_request = process_request
        self._process_response = process_response
        self._server_header = server_header
        self._unix_path: str | None = None
        self.logger = logger
        self._close_timeout = close_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[ServerConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._close_task: asyncio.Task[None] | None = None
        self._close_requested: asyncio.Future[None] | None = None
        self._http2: Any = None  # set by wskit.asyncio.http2.serve: take_over(connection, transport), close()

    @property
    def connections(self) -> set[ServerConnection]:
        """The open connections (a copy): the opening handshake done, the closing one not.

        Pass it to :func:`broadcast` to send a message to every client.
        """
        return {c for c in self._connections if c.protocol.state is State.OPEN and not c._lost}

    @property
    def sockets(self) -> tuple[Any, ...]:
        """The listening sockets."""
        return () if self._server is None else tuple(self._server.sockets)

    def is_serving(self) -> bool:
        """Whether the server accepts new connections."""
        return self._server is not None and self._server.is_serving()

    def close(self, close_connections: bool = True) -> None:
        """Stop listening and (by default) close open connections with 1001.

        Returns at once; await :meth:`wait_closed` to wait for the end.

        Args:
            close_connections: close open connections with 1001 (going
                away), waiting at most ``close_timeout`` for each; else let
                them run until their handlers return.
        """
        if self._close_task is None:
            self._close_task = asyncio.get_running_loop().create_task(self._close(close_connections))
            if self._close_requested is not None and not self._close_requested.done():
                self._close_requested.set_result(None)

    async def _close(self, close_connections: bool) -> None:
        if self._server is not None:
            self._server.close()
        if self._http2 is not None:
            self._http2.close()  # GOAWAY on each HTTP/2 connection; it closes once its streams end
        if close_connections:
            conns = list(self._connections)
            for conn in conns:
                if conn._opening and conn.transport is not None:
                    conn.transport.close()
            await asyncio.gather(*(c.close(CloseCode.GOING_AWAY,
                                           "server shutting down") for c in conns if not c._opening),
                                 return_exceptions=True)
        if self._tasks:
            timeout = self._close_timeout if close_connections else None
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            waiting = asyncio.ensure_future(self._server.wait_closed())
            if close_connections and self._close_timeout is not None:
                # From Python 3.12.1 this waits for every transport to close too, and a TLS
                # transport closes only once the peer answered its close_notify (or after
                # ssl_shutdown_timeout, 30 s): transports still open after close_timeout are aborted.
                done, _ = await asyncio.wait({waiting}, timeout=self._close_timeout)
                if not done:
                    self._abort_transports()
            await waiting
        remove_unix_socket(self._unix_path, self.logger)

    def _abort_transports(self) -> None:
        for conn in self._connections:
            if conn.transport is not None:
                conn.transport.abort()
        if self._http2 is not None:
            self._http2.abort()

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` was called and finished: no socket, no connection, no handler left."""
        if self._close_task is None:
            if self._close_requested is None:
                self._close_requested = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._close_requested)
        assert self._close_task is not None
        await asyncio.shield(self._close_task)

    async def serve_forever(self) -> None:
        """Serve until :meth:`close` is called, or until cancelled (e.g. Ctrl-C
        under ``asyncio.run``), in which case close the server cleanly first."""
        try:
            await self.wait_closed()
        except asyncio.CancelledError:
            self.close()
            await self.wait_closed()
            raise

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()


class serve:  # lowercase: used like a function, as in python-websockets
    """Start a WebSocket server.

    Use it as ``server = await serve(handler, host, port)`` or
    ``async with serve(handler, host, port) as server:`` (closed on exit).

    ``handler(connection)`` is a coroutine run for each connection once the
    opening handshake succeeded; when it returns, the connection is closed
    with 1000; when it raises, the error is logged and the connection closed
    with 1011.

    Args:
        handler: the connection handler.
        host: the interface to listen on (e.g. ``"127.0.0.1"``).
        port: the TCP port (0: chosen by the OS; see ``server.sockets``).
        process_request: ``(connection, request) -> Response | None``, sync
            or async, called before the upgrade (also for plain HTTP
            requests): return a :class:`~wskit.events.Response` to answer
            with it instead (health checks, 401...).
        process_response: ``(connection, request, response) -> Response |
            None``, sync or async, called with the response about to be
            sent: the ``101`` (its headers may be changed in place), or the
            answer ``process_request`` returned. Return another
            :class:`~wskit.events.Response` to send it instead (one that is
            not a ``101`` refuses the upgrade).
        server_header: the ``Server`` header of every response
            (default ``wskit/<version>``); ``None`` sends none.
        origins: allowed ``Origin`` values (403 otherwise); ``None`` in the
            list allows requests without one.
        subprotocols: supported subprotocols in preference order.
        select_subprotocol: ``(connection, offered) -> str | None`` choosing one.
        compression: ``"deflate"`` (default) accepts permessage-deflate: a
            permessage-deflate factory (the plugin manager's settings) is added at the end of ``extensions`` unless one
            named ``permessage-deflate`` is there; with ``extensions=None``
            what is accepted is what the plugins provide (permessage-deflate,
            unless the plugin manager disables that plugin). ``None`` adds
            nothing.
        extensions: extension factories to accept, in preference order
            (``[]`` with ``compression=None``: accept none).
        open_timeout: seconds a client has to complete the opening handshake.
        ping_interval: as for :func:`~wskit.asyncio.connect`, and so are
            ``ping_timeout``, ``close_timeout``, ``max_size``, ``max_queue``,
            ``write_limit`` and ``max_fragment_size``.
        limits: :class:`~wskit.http11.HTTPLimits` for the request.
        logger: a logger (or its name) for the server and its connections.
        plugins: extra plugins for the core.
        ssl: an :class:`ssl.SSLContext` to serve TLS (``wss://``).
        unix: listen on this Unix socket path instead of ``host`` and ``port``
            (as :func:`unix_serve`).
        plugin_manager: the :class:`~wskit.plugin.PluginManager` of the core
            (default: the shared one).
        spec: the connection state-machine spec (a path or a loaded
            :class:`~wskit.statemachine.StateSpec`; default: the shipped one).
        config: a loaded :class:`wskit.config.Config`: every key it sets
            applies unless the same option is passed in the call (an
            explicit argument wins even when equal to its default). With
            ``config``, ``host`` and ``port`` not given in the call are the
            file's ``server.host``/``server.port`` (default
            ``127.0.0.1:8765``), or its ``server.unix``.
        **kwargs: passed to :meth:`asyncio.loop.create_server` (e.g. ``reuse_port=True``, ``sock=``).
    """

    @with_config("asyncio_server", passthrough=loop_keywords(
        "create_server", "create_unix_server", internal=["_unix", "_unix_path"]))
    def __init__(
        self,
        handler: Handler,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        unix: str | None = None,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        server_header: str | None = USER_AGENT,
        origins: Sequence[str | None] | None = None,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: SelectSubprotocol | None = None,
        compression: str | None = "deflate",
        extensions: Sequence[Any] | None = None,
        open_timeout: float | None = OPEN_TIMEOUT,
        ping_interval: float | None = PING_INTERVAL,
        ping_timeout: float | None = PING_TIMEOUT,
        close_timeout: float | None = CLOSE_TIMEOUT,
        max_size: int | None = MAX_SIZE,
        max_queue: int | None = MAX_QUEUE,
        write_limit: int = WRITE_LIMIT,
        max_fragment_size: int | None = None,
        limits: HTTPLimits | None = None,
        logger: LoggerLike | str | None = None,
        plugins: Sequence[object] | None = None,
        plugin_manager: PluginManager | None = None,
        spec: str | os.PathLike[str] | StateSpec | None = None,
        ssl: ssl_module.SSLContext | None = None,
        config: Config | None = None,
        **kwargs: Any,
    ) -> None:
        if unix is not None:
            if host is not None or port is not None or kwargs.get("_unix"):
                raise TypeError("serve(): give host and port, or unix=, not both")
            kwargs["_unix"], kwargs["_unix_path"] = True, unix
        if kwargs.get("_unix") and "reuse_port" in kwargs:
            if kwargs.pop("reuse_port"):
                raise ValueError("reuse_port applies to TCP servers, not to a Unix socket")
        if kwargs.get("reuse_port") and not hasattr(socket, "SO_REUSEPORT"):  # workers share a port with it
            raise ValueError(f"reuse_port=True needs SO_REUSEPORT, which this platform ({sys.platform}) does not have")
        logger = resolve_logger(logger, "wskit.server")
        base_logger = logger.logger if isinstance(logger, logging.LoggerAdapter) else logger
        self.server = Server(handler, process_request=process_request, logger=base_logger,
                             close_timeout=close_timeout, process_response=process_response,
                             server_header=server_header)
        # Built once (this validates ``compression`` now); each connection
        # negotiates its own extensions from the factories.
        manager = resolve_manager(plugins, plugin_manager)
        self._options = ConnectionOptions.build(
            extensions=io_extensions(compression, extensions, "server", manager), subprotocols=subprotocols,
            max_size=max_size, max_fragment_size=max_fragment_size, limits=limits,
            plugin_manager=manager, spec=spec, open_timeout=open_timeout, close_timeout=close_timeout,
            ping_interval=ping_interval, ping_timeout=ping_timeout, max_queue=max_queue, write_limit=write_limit)
        check_options(max_queue=max_queue, write_limit=write_limit, ping_interval=ping_interval,
                      ping_timeout=ping_timeout, close_timeout=close_timeout)
        self._origins = origins
        self._select = select_subprotocol
        self._logger = logger
        self._host = host
        self._port = port
        self._ssl = ssl
        self._unix_path: str | None = kwargs.pop("_unix_path", None)
        self._unix = kwargs.pop("_unix", False)
        if self._unix and self._unix_path is not None:
            self.server._unix_path = os.fspath(self._unix_path)
        self._kwargs = kwargs

    def _make_connection(self) -> ServerConnection:
        conn_id = uuid.uuid4()
        logger = make_logger(self._logger, "wskit.server", conn_id)
        holder: list[ServerConnection] = []
        selector = None
        if self._select is not None:
            user_select = self._select

            def selector(protocol: ServerProtocol, offered: Sequence[str]) -> str | None:
                return user_select(holder[0], offered)

        protocol = ServerProtocol(select_subprotocol=selector, origins=self._origins,
                                  **self._options.protocol_kwargs(logger))
        conn = ServerConnection(protocol, self.server, open_timeout=self._options.open_timeout, conn_id=conn_id,
                                logger=logger, **self._options.connection_kwargs())
        holder.append(conn)
        return conn

    async def _start(self) -> Server:
        loop = asyncio.get_running_loop()
        kwargs = dict(self._kwargs)
        if self._ssl is not None:
            kwargs["ssl"] = self._ssl
        if self._unix:
            server = await loop.create_unix_server(self._make_connection, self._unix_path, **kwargs)
        else:
            create_server = create_server_function(loop, kwargs)  # aiofastnet's when installed
            server = await create_server(self._make_connection, self._host, self._port, **kwargs)
        self.server._server = server
        for sock in server.sockets:
            self.server.logger.info("server listening on %s", listening_address(sock))
        return self.server

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    async def __aenter__(self) -> Server:
        return await self._start()

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.close()
        await self.server.wait_closed()


def unix_serve(handler: Handler, path: str | None = None, **kwargs: Any) -> serve:
    """Start a WebSocket server listening on a Unix socket.

    Args:
        handler: the connection handler, as for :func:`serve`.
        path: the socket's file system path (or pass ``sock=``).
        **kwargs: the options of :func:`serve`.
    """
    return serve(handler, _unix=True, _unix_path=path, **kwargs)


def broadcast(connections: Iterable[Connection], message: Data | bytearray | memoryview, *,
              compress: bool = True) -> list[Connection]:
    """Send a message to many connections at once, waiting for none of them.

    The message is written to each open connection's transport now; the
    call returns without waiting for any write to finish. The frame is built
    once for all the connections that negotiated no extension (each one with
    permessage-deflate compresses it with its own compressor). Connections
    that are not open (still in the opening handshake, closing, closed) are
    skipped silently.

    A slow client never holds the others up: a connection whose write
    buffer is over its ``write_limit`` (its client does not read fast
    enough), or that is sending a fragmented message, does not get the
    message; it is in the returned list, so that the caller can count, log,
    or close it (``await ws.close(1008)``), or send again later.

    Args:
        connections: the connections, e.g. ``server.connections``.
        message: a ``str`` (text message) or bytes-like (binary message).
        compress: ``False`` sends it uncompressed to the connections that
            negotiated permessage-deflate (their compression context is
            unchanged), e.g. for data that is already compressed.

    Returns:
        The open connections that did not get the message.

    Raises:
        TypeError: ``message`` is neither ``str`` nor bytes-like.
    """
    shared = Broadcast(message, compress=compress)
    frames_for = shared.frames_for
    skipped: list[Connection] = []
    for connection in connections:
        try:
            written = connection._write_nowait(frames_for)
        except Exception:
            connection.logger.error("broadcast: cannot send on this connection", exc_info=True)
            written = False
        if written is False:
            skipped.append(connection)
    return skipped


def route(routes: Any, host: str | Sequence[str] | None = None, port: int | None = None, *,
          process_request: ProcessRequest | None = None, **kwargs: Any) -> serve:
    """Start a server that dispatches each connection to a handler by its path.

    ``routes`` is a :class:`werkzeug.routing.Map` whose rules' endpoints are
    the handlers, or a ``{"/rooms/<name>": handler}`` dict. A request that
    matches a rule is accepted and its handler called as ``await
    handler(connection, **params)`` with the path parameters (``name=...``;
    converters such as ``<int:id>`` apply); ``connection.route`` holds the
    :class:`~wskit.routing.Match`. A request that matches none is answered
    with ``404 Not Found``, one that a rule redirects (a missing trailing
    slash) with ``308`` and ``Location``. A handler that raises is logged
    with its route and its connection closed with 1011.

    Use it as :func:`serve`: ``async with route(routes, "127.0.0.1", 8765)
    as server:``.

    Args:
        routes: the rules.
        host: as for :func:`serve`.
        port: as for :func:`serve`.
        process_request: called first, as for :func:`serve` (e.g.
            :func:`basic_auth`); a response it returns is sent instead.
        **kwargs: the other options of :func:`serve`.

    Raises:
        ImportError: werkzeug is not installed (``pip install 'wskit[router]'``).
        TypeError: ``routes`` is not a Map or a dict of handlers.
    """
    router = Router(routes, scheme="wss" if kwargs.get("ssl") is not None else "ws")

    async def match(connection: ServerConnection, request: Request) -> Response | None:
        if process_request is not None:
            answer = process_request(connection, request)
            if inspect.isawaitable(answer):
                answer = await answer
            if answer is not None:
                return answer
        found = router.match(request)
        if isinstance(found, Response):
            return found
        connection.route = found
        return None

    async def dispatch(connection: ServerConnection) -> None:
        found = connection.route
        assert found is not None
        try:
            await found.handler(connection, **found.params)
        except WebSocketClosed:
            raise
        except Exception:
            connection.logger.error("handler of route %s failed", found.rule, exc_info=True)
            await connection.close(CloseCode.INTERNAL_ERROR, "internal error")

    return serve(dispatch, host, port, process_request=match, **kwargs)


def basic_auth(
    realm: str = "",
    credentials: Credentials | None = None,
    check_credentials: Callable[[str, str], bool | Awaitable[bool]] | None = None,
) -> Callable[[ServerConnection, Request], Awaitable[Response | None]]:
    """Build a ``process_request`` that asks for HTTP Basic authentication.

    A request without valid credentials (no ``Authorization`` header, a
    malformed one, an unknown user, a wrong password) is answered with
    ``401 Unauthorized`` and ``WWW-Authenticate: Basic realm="<realm>"``;
    otherwise the connection is accepted and ``connection.username`` is the
    user name. Pass the result as ``serve(..., process_request=...)`` (or to
    :func:`route`).

    Args:
        realm: the protection space the client shows its user.
        credentials: the accepted ``(username, password)`` pair, a list of
            pairs, or a ``{username: password}`` dict; compared in
            constant time.
        check_credentials: instead of ``credentials``, a function
            ``(username, password) -> bool``, plain or async.

    Raises:
        TypeError: neither or both of ``credentials`` and
            ``check_credentials``, or ``credentials`` of another shape.
        ValueError: ``realm`` contains a quote, a backslash or a control character.
    """
    check = credentials_check(credentials, check_credentials)
    unauthorized(realm)  # checks the realm now

    async def process_request(connection: ServerConnection, request: Request) -> Response | None:
        given = request_credentials(request)
        if given is None:
            return unauthorized(realm)
        valid = check(*given)
        if inspect.isawaitable(valid):
            valid = await valid
        if not valid:
            connection.logger.info("authentication failed for user %r", given[0])
            return unauthorized(realm)
        connection.username = given[0]
        return None

    return process_request

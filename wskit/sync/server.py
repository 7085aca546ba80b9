"""Threaded WebSocket server: :func:`serve`, :func:`unix_serve` and :class:`Server`.

One thread accepts connections (the one calling :meth:`Server.serve_forever`);
every connection gets a thread that performs the opening handshake and then
runs the handler, plus the connection's reader (and keepalive) thread.
"""

from __future__ import annotations

import http
import logging
import os
import selectors
import socket
import ssl as ssl_module
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._io import (
    ConnectionOptions,
    listening_address,
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
from ..events import Event, Request, Response
from ..exceptions import InvalidHandshake, ProtocolError, WebSocketClosed
from ..frames import CloseCode
from ..headers import Headers
from ..http11 import HTTPLimits, serialize_response
from ..plugins.deflate import io_extensions
from ..protocol import State
from ..routing import Match, Router
from ..server import ServerProtocol
from .connection import Connection, Data, _shutdown, make_logger

if TYPE_CHECKING:
    from ..config import Config
    from ..plugin import PluginManager
    from ..statemachine import StateSpec

# After accept() failed (e.g. out of file descriptors): seconds before trying again.
_ACCEPT_RETRY_DELAY = 1.0

__all__ = ["ServerConnection", "Server", "serve", "unix_serve", "Handler", "ProcessRequest", "ProcessResponse",
           "basic_auth", "broadcast", "route"]


class ServerConnection(Connection):
    """A server connection; see :class:`~wskit.sync.connection.Connection`.

    ``request`` is the client's upgrade request and ``response`` our answer.
    """

    protocol: ServerProtocol
    username: str | None = None
    """The user name the client authenticated with (see :func:`basic_auth`), or ``None``."""
    route: Match | None = None
    """The route the request matched (see :func:`route`), or ``None``."""

    def respond(self, status: int, text: str) -> Response:
        """Build a plain-text HTTP response, for ``process_request`` to return.

        Args:
            status: the HTTP status code (e.g. 200, 401, 404).
            text: the body, sent as UTF-8.
        """
        body = text.encode("utf-8")
        headers = Headers([("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")])
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        return Response(status, phrase, headers, body)


Handler = Callable[[ServerConnection], Any]
"""The connection handler: runs in the connection's thread; when it returns
the connection is closed with 1000, when it raises with 1011."""

ProcessRequest = Callable[[ServerConnection, Request], "Response | None"]
"""Called with every request before the handshake; returning a Response sends it instead."""

ProcessResponse = Callable[[ServerConnection, Request, Response], "Response | None"]
"""Called with the response about to be sent; returning another Response sends it instead."""

class Server:
    """A running WebSocket server.

    Created by :func:`serve`; use it as a context manager (leaving it calls
    :meth:`shutdown`) and call :meth:`serve_forever`, usually in its own
    thread or as the main loop.

    Attributes:
        socket: the listening socket.
        logger: the server's logger.
    """

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        options: ConnectionOptions,
        *,
        ssl: ssl_module.SSLContext | None = None,
        logger: logging.Logger | None = None,
        origins: Sequence[str | None] | None = None,
        select_subprotocol: Callable[[ServerProtocol, Sequence[str]], str | None] | None = None,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        server_header: str | None = USER_AGENT,
        unix_path: str | None = None,
    ) -> None:
        self.socket = sock
        self._process_response = process_response
        self._server_header = server_header
        self._unix_path = unix_path
        self.handler = handler
        self.ssl = ssl
        self.options = options
        self._base_logger = logger
        self.logger: logging.Logger | logging.LoggerAdapter[Any] = resolve_logger(logger, "wskit.sync")
        self._origins = origins
        self._select_subprotocol = select_subprotocol
        self._process_request = process_request
        self._lock = threading.Lock()
        self._connections: set[ServerConnection] = set()
        self._handshaking: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._closing = False
        self._serving = threading.Lock()
        self._serving_thread: int | None = None  # the thread in serve_forever()
        self._wake_closed_by_loop = False  # shutdown() ran inside serve_forever(): it closes the wake pair
        self._wake_r, self._wake_w = socket.socketpair()

    # -- public API -------------------------------------------------------------

    @property
    def connections(self) -> set[ServerConnection]:
        """The open connections (a snapshot): the opening handshake done, the closing one not.

        Pass it to :func:`broadcast` to send a message to every client.
        """
        with self._lock:
            connections = list(self._connections)
        return {c for c in connections if c.state is State.OPEN}

    def fileno(self) -> int:
        """The listening socket's file descriptor."""
        return self.socket.fileno()

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown` is called.

        Each connection is handled in a new thread.
        """
        if not self._serving.acquire(blocking=False):
            raise RuntimeError("serve_forever() is already running")
        self._serving_thread = threading.get_ident()
        try:
            if self._closing:
                return
            self.socket.setblocking(False)
            with selectors.DefaultSelector() as selector, selectors.DefaultSelector() as pause:
                selector.register(self.socket, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                pause.register(self._wake_r, selectors.EVENT_READ)  # (made now: when accept() fails, fds may be out)
                self.logger.info("server listening on %s", listening_address(self.socket))
                while not self._closing:
                    for key, _ in selector.select():
                        if key.fileobj is self._wake_r or self._closing:
                            return
                    try:
                        client, address = self.socket.accept()
                    except OSError as exc:
                        # Gone before it was accepted, or another process took
                        # it (a socket shared after fork()): nothing to do.
                        if not isinstance(exc, (BlockingIOError, ConnectionAbortedError)):
                            # E.g. EMFILE: the listening socket stays readable, so
                            # retrying at once would spin. Pause accepting (the
                            # pending connections wait in the backlog); shutdown()
                            # still wakes the pause.
                            self.logger.error("accept() failed: %s; accepting again in %s s", exc,
                                              _ACCEPT_RETRY_DELAY)
                            pause.select(_ACCEPT_RETRY_DELAY)
                        continue
                    client.setblocking(True)
                    self._spawn(client, address)
        finally:
            self._serving_thread = None
            if self._wake_closed_by_loop:
                for sock in (self._wake_r, self._wake_w):
                    sock.close()
            self._serving.release()

    def shutdown(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down") -> None:
        """Stop accepting, close every connection and wait for their threads.

        Connections receive a Close with ``code`` (1001 "going away" by
        default); the whole shutdown takes at most about ``close_timeout``:
        connections whose peer does not finish the closing handshake in time
        are closed abruptly. Idempotent.
        """
        with self._lock:
            already = self._closing
            self._closing = True
            connections = list(self._connections)
            handshaking = list(self._handshaking)
        if not already:
            self._wake_w.send(b"\0")  # the socket pair is closed only at the end of the first shutdown()
        # Called inside serve_forever() (a signal handler on its thread, say): its
        # loop leaves when we return, reading the wake-up byte, and closes the pair.
        # Otherwise wait for serve_forever() to leave its loop, then close the listener.
        inside = self._serving_thread == threading.get_ident()
        if not inside and self._serving.acquire(timeout=5):
            self._serving.release()
        self.socket.close()
        for sock in handshaking:
            _shutdown(sock, socket.SHUT_RDWR)
        for connection in connections:
            connection._start_close(code, reason)
        timeout = self.options.close_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        for connection in connections:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not connection.wait_closed(remaining):
                connection._abort()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is threading.current_thread():
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining + 1.0 if remaining is not None else None)
            if thread.is_alive():
                self.logger.warning("a connection handler did not return after shutdown: %s", thread.name)
        if inside:
            self._wake_closed_by_loop = True
        else:
            for sock in (self._wake_r, self._wake_w):
                sock.close()
        if not already:
            remove_unix_socket(self._unix_path, self.logger)

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # -- per connection ---------------------------------------------------------

    def _spawn(self, client: socket.socket, address: Any) -> None:
        thread = threading.Thread(target=self._run_connection, args=(client, address), daemon=True)
        with self._lock:
            if self._closing:
                client.close()
                return
            self._handshaking.add(client)
            self._threads.add(thread)
        thread.name = f"wskit-conn-{address}"
        thread.start()

    def _run_connection(self, sock: socket.socket, address: Any) -> None:
        try:
            connection = self._open(sock)
        except Exception:
            self.logger.error("opening handshake failed with an unexpected error", exc_info=True)
            connection = None
        finally:
            with self._lock:
                self._handshaking.discard(sock)
        try:
            if connection is not None:
                self._run_handler(connection)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _run_handler(self, connection: ServerConnection) -> None:
        with self._lock:
            self._connections.add(connection)
            closing = self._closing
        connection.logger.info("connection open")
        try:
            if closing:  # shutdown() started after the handshake: it did not see us
                connection._start_close(CloseCode.GOING_AWAY, "server shutting down")
            try:
                self.handler(connection)
            except WebSocketClosed as exc:  # the connection ended under the handler: not a bug
                connection.logger.debug("handler stopped: %s", exc)
            except Exception:
                connection.logger.error("connection handler failed", exc_info=True)
                connection.close(CloseCode.INTERNAL_ERROR, "internal error")
            else:
                connection.close()
        finally:
            connection.close()  # no-op when already closed; guarantees the socket is closed
            with self._lock:
                self._connections.discard(connection)
            connection.logger.info("connection closed")

    def _open(self, sock: socket.socket) -> ServerConnection | None:
        """Run TLS and the opening handshake; return the open connection or ``None``."""
        opts = self.options
        timeout = opts.open_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        conn_id = uuid.uuid4()
        adapter = make_logger(self._base_logger, conn_id)

        def remaining() -> float | None:
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out during the opening handshake")
            return left

        try:
            sock.settimeout(remaining())
            if self.ssl is not None:
                sock = self.ssl.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                sock.settimeout(remaining())
                sock.do_handshake()
            protocol = ServerProtocol(select_subprotocol=self._select_subprotocol, origins=self._origins,
                                      **opts.protocol_kwargs(adapter))
            connection = ServerConnection(sock, protocol, logger=adapter, conn_id=conn_id,
                                          **opts.connection_kwargs())
            failure: InvalidHandshake | None = None
            request: Request | None = None
            while request is None and failure is None:
                sock.settimeout(remaining())
                data = sock.recv(65536)
                if not data:
                    adapter.debug("! connection closed during the opening handshake")
                    _close(sock)
                    return None
                try:
                    events = protocol.receive_data(data)
                except InvalidHandshake as exc:
                    failure = exc
                    request = protocol.request
                    break
                if events:
                    first = events[0]
                    assert isinstance(first, Request)
                    request = first
            connection.request = request
            if request is not None and self._process_request is not None:
                try:
                    answer = self._process_request(connection, request)
                    if answer is not None and not isinstance(answer, Response):
                        raise TypeError(f"process_request must return a wskit.Response or None, "
                                        f"not {type(answer).__name__}")
                except Exception:
                    adapter.error("process_request failed", exc_info=True)
                    answer = connection.respond(500, "Failed to open a WebSocket connection.\n")
                if answer is not None:
                    answer = self._final_response(connection, request, answer)
                    _send_response(sock, answer, self._server_header)
                    connection.response = answer
                    return None
            if failure is not None:
                adapter.debug("! opening handshake refused: %s", failure)
                for chunk in failure.to_send:
                    sock.sendall(chunk)
                _close(sock)
                return None
            assert request is not None
            try:
                to_send = protocol.accept(request)
            except ValueError:  # select_subprotocol chose something not offered
                adapter.error("cannot accept the request", exc_info=True)
                _send_response(sock, connection.respond(500, "Failed to open a WebSocket connection.\n"))
                return None
            connection.response = protocol.response
            if self._server_header != USER_AGENT or self._process_response is not None:
                response = protocol.response
                assert response is not None
                set_server_header(response.headers, self._server_header)
                final = self._final_response(connection, request, response)
                connection.response = final
                if final.status_code != 101:
                    _send_response(sock, final, self._server_header)
                    return None
                to_send = [serialize_response(final.status_code, final.reason_phrase or None, final.headers,
                                              final.body)]
            for chunk in to_send:
                sock.sendall(chunk)
            leftover: list[Event] = []
            error: ProtocolError | None = None
            try:
                leftover = protocol.receive_data(b"")
            except ProtocolError as exc:
                error = exc
            sock.settimeout(None)
        except (OSError, TimeoutError) as exc:
            adapter.debug("! opening handshake failed: %r", exc)
            _close(sock)
            return None
        except BaseException:
            _close(sock)
            raise
        connection._start(leftover, error)
        return connection

    def _final_response(self, connection: ServerConnection, request: Request, response: Response) -> Response:
        """What ``process_response`` makes of the response about to be sent."""
        if self._process_response is None:
            return response
        try:
            answer = self._process_response(connection, request, response)
            if answer is not None and not isinstance(answer, Response):
                raise TypeError(f"process_response must return a wskit.Response or None, not {type(answer).__name__}")
        except Exception:
            connection.logger.error("process_response failed", exc_info=True)
            return connection.respond(500, "Failed to open a WebSocket connection.\n")
        return response if answer is None else answer


def _send_response(sock: socket.socket, response: Response, server_header: str | None = USER_AGENT) -> None:
    headers = response.headers.copy() if isinstance(response.headers, Headers) else Headers(response.headers)
    if "Connection" not in headers:
        headers["Connection"] = "close"
    set_server_header(headers, server_header)
    try:
        sock.sendall(serialize_response(response.status_code, response.reason_phrase or None, headers,
                                        response.body))
    finally:
        _close(sock)


def _close(sock: socket.socket) -> None:
    _shutdown(sock, socket.SHUT_WR)
    sock.close()


@with_config("sync_server")
def serve(
    handler: Handler,
    host: str | None = None,
    port: int | None = None,
    *,
    sock: socket.socket | None = None,
    unix: str | None = None,
    reuse_port: bool = False,
    ssl: ssl_module.SSLContext | None = None,
    backlog: int = 100,
    origins: Sequence[str | None] | None = None,
    extensions: Sequence[Any] | None = None,
    subprotocols: Sequence[str] | None = None,
    select_subprotocol: Callable[[ServerProtocol, Sequence[str]], str | None] | None = None,
    process_request: ProcessRequest | None = None,
    process_response: ProcessResponse | None = None,
    server_header: str | None = USER_AGENT,
    compression: str | None = "deflate",
    open_timeout: float | None = OPEN_TIMEOUT,
    ping_interval: float | None = PING_INTERVAL,
    ping_timeout: float | None = PING_TIMEOUT,
    close_timeout: float | None = CLOSE_TIMEOUT,
    max_size: int | None = MAX_SIZE,
    max_queue: int | None = MAX_QUEUE,
    write_limit: int = WRITE_LIMIT,
    max_fragment_size: int | None = None,
    logger: logging.Logger | None = None,
    plugins: Sequence[object] | None = None,
    plugin_manager: PluginManager | None = None,
    spec: str | os.PathLike[str] | StateSpec | None = None,
    limits: HTTPLimits | None = None,
    config: Config | None = None,
) -> Server:
    """Create a WebSocket server listening on ``host``:``port``.

    ::

        def echo(ws):
            for message in ws:
                ws.send(message)

        with serve(echo, "127.0.0.1", 8765) as server:
            server.serve_forever()

    Args:
        handler: called with each :class:`ServerConnection` in its own thread;
            when it returns the connection is closed with 1000, when it raises
            with 1011 (and the error is logged).
        host: the address to bind (``None``: every interface).
        port: the TCP port (0 picks a free one: read ``server.socket.getsockname()``).
        sock: a listening socket to use instead of ``host`` and ``port``.
        unix: listen on this Unix socket path instead of ``host`` and ``port``
            (as :func:`unix_serve`).
        reuse_port: set ``SO_REUSEPORT`` on the TCP socket so that several
            processes share the port.
        ssl: a server-side TLS context.
        backlog: the listen backlog.
        origins: acceptable ``Origin`` values (``None`` in the list allows
            no Origin); others get 403.
        extensions: extension factories to accept, in preference order
            (``[]`` with ``compression=None``: accept none).
        subprotocols: supported subprotocols, in preference order.
        select_subprotocol: ``(protocol, offered) -> str | None`` picking the
            subprotocol instead of the preference order.
        process_request: ``(connection, request) -> Response | None`` called
            before the handshake (even for a plain HTTP request): return a
            Response (``connection.respond(status, text)``) to send it
            instead, e.g. a health check or a 401.
        process_response: ``(connection, request, response) -> Response |
            None`` called with the response about to be sent: the ``101``
            (its headers may be changed in place), or the answer
            ``process_request`` returned. Return another Response to send it
            instead (one that is not a ``101`` refuses the upgrade).
        server_header: the ``Server`` header of every response (default
            ``wskit/<version>``); ``None`` sends none.
        compression: ``"deflate"`` (default) accepts permessage-deflate: a
            permessage-deflate factory (the plugin manager's settings) is added at the end of ``extensions`` unless one
            named ``permessage-deflate`` is there; with ``extensions=None``
            what is accepted is what the plugins provide (permessage-deflate,
            unless the plugin manager disables that plugin). ``None`` adds
            nothing.
        open_timeout: seconds for TLS and the opening handshake.
        ping_interval: seconds between keepalive Pings (``None``: no keepalive).
        ping_timeout: seconds to wait for a keepalive Pong before failing
            with 1011 (``None``: never).
        close_timeout: seconds to wait for the closing handshake (per
            connection, and for :meth:`Server.shutdown` as a whole).
        max_size: largest incoming message, in bytes (``None``: no limit).
        max_queue: incoming messages buffered per connection before reading
            pauses (``None``: no limit).
        write_limit: accepted for symmetry with the asyncio layer.
        max_fragment_size: split outgoing messages in frames of this size.
        logger: base logger (default ``wskit.sync``).
        plugins: plugin objects to add for this server's protocols.
        plugin_manager: the :class:`~wskit.plugin.PluginManager` of the core
            (default: the shared one).
        spec: the connection state-machine spec (a path or a loaded
            :class:`~wskit.statemachine.StateSpec`; default: the shipped one).
        limits: limits on the HTTP request's size.
        config: a configuration loaded by ``wskit.config.load``: every key
            it sets applies unless the same argument is passed in the call
            (an explicit argument wins even when equal to its default).
            With ``config``, ``host`` and ``port`` not given in the call are
            the file's ``server.host``/``server.port`` (default
            ``127.0.0.1:8765``), or its ``server.unix``.

    Returns:
        The :class:`Server` (not yet accepting: call :meth:`Server.serve_forever`).
    """
    manager = resolve_manager(plugins, plugin_manager)
    options = ConnectionOptions.build(
        extensions=io_extensions(compression, extensions, "server", manager), subprotocols=subprotocols,
        max_size=max_size, max_fragment_size=max_fragment_size, limits=limits,
        plugin_manager=manager, spec=spec, open_timeout=open_timeout, close_timeout=close_timeout,
        ping_interval=ping_interval, ping_timeout=ping_timeout, max_queue=max_queue, write_limit=write_limit)
    check_options(max_queue=max_queue, write_limit=write_limit, ping_interval=ping_interval,
                  ping_timeout=ping_timeout, close_timeout=close_timeout)
    if sock is not None and (host is not None or port is not None or unix is not None):
        raise TypeError("serve(): give host and port, unix=, or sock=, not several")
    if unix is not None and (host is not None or port is not None):
        raise TypeError("serve(): give host and port, or unix=, not both")
    if reuse_port and (sock is not None or unix is not None):
        raise ValueError("reuse_port applies to the TCP socket serve() creates, not to sock= or unix=")
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):  # workers share a port with it
        raise ValueError(f"reuse_port=True needs SO_REUSEPORT, which this platform ({sys.platform}) does not have")
    if sock is None and unix is not None:
        sock = _unix_listener(os.fspath(unix), backlog)
    elif sock is None:
        if port is None:
            raise TypeError("serve() needs a port (or unix=, or sock=)")
        sock = socket.create_server((host or "", port), backlog=backlog, reuse_port=reuse_port)
    try:
        return Server(sock, handler, options, ssl=ssl, logger=logger, origins=origins,
                      select_subprotocol=select_subprotocol, process_request=process_request,
                      process_response=process_response, server_header=server_header,
                      unix_path=None if unix is None else os.fspath(unix))
    except BaseException:
        sock.close()
        raise


def unix_serve(handler: Handler, path: str, **kwargs: Any) -> Server:
    """Create a WebSocket server listening on the Unix socket ``path``.

    Args:
        handler: as for :func:`serve`.
        path: the socket's file system path (must not exist yet).
        kwargs: the other arguments of :func:`serve`.
    """
    return serve(handler, unix=path, **kwargs)


def _unix_listener(path: str, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def broadcast(connections: Iterable[Connection], message: Data | bytearray | memoryview, *,
              compress: bool = True) -> list[Connection]:
    """Send a message to many connections at once, waiting for none of them.

    The message goes to each open connection now, with a write that never
    blocks: what a socket does not take at once is finished by a
    short-lived thread, and a connection whose writer is busy (another
    thread is sending on it) gets the message right after. The frame is
    built once for all the connections that negotiated no extension.
    Connections that are not open are skipped silently. A connection whose
    extension (or a plugin) raises while the message is built for it is
    failed with close code 1011 (the error is logged) and is not returned.

    A slow client never holds the others up: a connection with about
    ``write_limit`` bytes already waiting for its socket does not get the
    message; it is in the returned list, so that the caller can count, log,
    or close it, or send again later.

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
    size = len(shared)
    skipped: list[Connection] = []
    for connection in connections:
        try:
            written = connection._write_nowait(frames_for, size)
        except Exception:
            connection.logger.error("broadcast: cannot send on this connection", exc_info=True)
            written = False
        if written is False:
            skipped.append(connection)
    return skipped


def route(routes: Any, host: str | None = None, port: int | None = None, *,
          process_request: ProcessRequest | None = None, **kwargs: Any) -> Server:
    """Create a server that dispatches each connection to a handler by its path.

    ``routes`` is a :class:`werkzeug.routing.Map` whose rules' endpoints are
    the handlers, or a ``{"/rooms/<name>": handler}`` dict. A request that
    matches a rule is accepted and its handler called as
    ``handler(connection, **params)`` with the path parameters
    (``name=...``; converters such as ``<int:id>`` apply);
    ``connection.route`` holds the :class:`~wskit.routing.Match`. A request
    that matches none is answered with ``404 Not Found``, one that a rule
    redirects (a missing trailing slash) with ``308`` and ``Location``. A
    handler that raises is logged with its route and its connection closed
    with 1011.

    Use it as :func:`serve`: ``with route(routes, "127.0.0.1", 8765) as
    server: server.serve_forever()``.

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

    def match(connection: ServerConnection, request: Request) -> Response | None:
        if process_request is not None:
            answer = process_request(connection, request)
            if answer is not None:
                return answer
        found = router.match(request)
        if isinstance(found, Response):
            return found
        connection.route = found
        return None

    def dispatch(connection: ServerConnection) -> None:
        found = connection.route
        assert found is not None
        try:
            found.handler(connection, **found.params)
        except WebSocketClosed:
            raise
        except Exception:
            connection.logger.error("handler of route %s failed", found.rule, exc_info=True)
            connection.close(CloseCode.INTERNAL_ERROR, "internal error")

    return serve(dispatch, host, port, process_request=match, **kwargs)


def basic_auth(
    realm: str = "",
    credentials: Credentials | None = None,
    check_credentials: Callable[[str, str], bool] | None = None,
) -> Callable[[ServerConnection, Request], Response | None]:
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
            ``(username, password) -> bool`` (a plain function: this layer
            runs no event loop).

    Raises:
        TypeError: neither or both of ``credentials`` and
            ``check_credentials``, ``credentials`` of another shape, or a
            coroutine function as ``check_credentials``.
        ValueError: ``realm`` contains a quote, a backslash or a control character.
    """
    check = credentials_check(credentials, check_credentials, layer="wskit.sync")
    unauthorized(realm)  # checks the realm now

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        given = request_credentials(request)
        if given is None:
            return unauthorized(realm)
        if not check(*given):
            connection.logger.info("authentication failed for user %r", given[0])
            return unauthorized(realm)
        connection.username = given[0]
        return None

    return process_request

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
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._io import ConnectionOptions, resolve_logger, resolve_manager, with_config
from ..defaults import CLOSE_TIMEOUT, MAX_QUEUE, MAX_SIZE, OPEN_TIMEOUT, PING_INTERVAL, PING_TIMEOUT, WRITE_LIMIT
from ..duties import check_options
from ..events import Event, Request, Response
from ..exceptions import InvalidHandshake, ProtocolError, WebSocketClosed
from ..headers import Headers
from ..http11 import HTTPLimits, serialize_response
from ..plugins.deflate import io_extensions
from ..server import ServerProtocol
from .connection import Connection, _shutdown, make_logger

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Config
    from ..plugin import PluginManager
    from ..statemachine import StateSpec

__all__ = ["ServerConnection", "Server", "serve", "unix_serve", "Handler", "ProcessRequest"]


class ServerConnection(Connection):
    """A server connection; see :class:`~wskit.sync.connection.Connection`.

    ``request`` is the client's upgrade request and ``response`` our answer.
    """

    protocol: ServerProtocol

    def __enter__(self) -> ServerConnection:
        return self

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
    ) -> None:
        self.socket = sock
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
        self._wake_r, self._wake_w = socket.socketpair()

    # -- public API -------------------------------------------------------------

    @property
    def connections(self) -> set[ServerConnection]:
        """The open connections (a snapshot)."""
        with self._lock:
            return set(self._connections)

    def fileno(self) -> int:
        """The listening socket's file descriptor."""
        return self.socket.fileno()

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown` is called.

        Each connection is handled in a new thread.
        """
        if not self._serving.acquire(blocking=False):
            raise RuntimeError("serve_forever() is already running")
        try:
            if self._closing:
                return
            self.socket.setblocking(False)
            with selectors.DefaultSelector() as selector:
                selector.register(self.socket, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self._closing:
                    for key, _ in selector.select():
                        if key.fileobj is self._wake_r or self._closing:
                            return
                    try:
                        client, address = self.socket.accept()
                    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                        continue
                    except OSError as exc:
                        if self._closing:
                            return
                        self.logger.error("accept() failed: %s", exc)
                        continue
                    client.setblocking(True)
                    self._spawn(client, address)
        finally:
            self._serving.release()

    def shutdown(self, code: int = 1001, reason: str = "server shutting down") -> None:
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
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass
        # Wait for serve_forever() to leave its loop, then close the listener.
        if self._serving.acquire(timeout=5):
            self._serving.release()
        try:
            self.socket.close()
        except OSError:
            pass
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
        for sock in (self._wake_r, self._wake_w):
            sock.close()

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
        try:
            if closing:  # shutdown() started after the handshake: it did not see us
                connection._start_close(1001, "server shutting down")
            try:
                self.handler(connection)
            except WebSocketClosed as exc:  # the connection ended under the handler: not a bug
                connection.logger.debug("handler stopped: %s", exc)
            except Exception:
                connection.logger.error("connection handler failed", exc_info=True)
                connection.close(1011, "internal error")
            else:
                connection.close()
        finally:
            connection.close()  # no-op when already closed; guarantees the socket is closed
            with self._lock:
                self._connections.discard(connection)

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
                except Exception:
                    adapter.error("process_request failed", exc_info=True)
                    answer = connection.respond(500, "Failed to open a WebSocket connection.\n")
                if answer is not None:
                    _send_response(sock, answer)
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
            for chunk in to_send:
                sock.sendall(chunk)
            connection.response = protocol.response
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


def _send_response(sock: socket.socket, response: Response) -> None:
    headers = response.headers if isinstance(response.headers, Headers) else Headers(response.headers)
    if "Connection" not in headers:
        headers = headers.copy()
        headers["Connection"] = "close"
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
    if sock is None and unix is not None:
        sock = _unix_listener(os.fspath(unix), backlog)
    elif sock is None:
        if port is None:
            raise TypeError("serve() needs a port (or unix=, or sock=)")
        sock = socket.create_server((host or "", port), backlog=backlog, reuse_port=reuse_port)
    try:
        return Server(sock, handler, options, ssl=ssl, logger=logger, origins=origins,
                      select_subprotocol=select_subprotocol, process_request=process_request)
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
    sock = _unix_listener(os.fspath(path), kwargs.pop("backlog", 100))
    return serve(handler, sock=sock, **kwargs)


def _unix_listener(path: str, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock

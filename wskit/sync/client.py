"""Blocking WebSocket client: :func:`connect` and :func:`unix_connect`."""

from __future__ import annotations

import logging
import os
import socket
import ssl as ssl_module
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, cast

from .._io import (
    ClientOptions,
    ConnectionOptions,
    describe_failure,
    proxy_error,
    resolve_logger,
    resolve_manager,
    socks_arguments,
    socks_failure,
    socks_proxy,
    with_config,
)
from ..client import ClientProtocol, HeadersLike
from ..defaults import (
    BACKOFF_FACTOR,
    BACKOFF_INITIAL,
    BACKOFF_JITTER,
    BACKOFF_MAX,
    CLOSE_TIMEOUT,
    MAX_QUEUE,
    MAX_REDIRECTS,
    MAX_SIZE,
    OPEN_TIMEOUT,
    PING_INTERVAL,
    PING_TIMEOUT,
    USER_AGENT,
    WRITE_LIMIT,
)
from ..duties import check_options
from ..events import Event, Request, Response
from ..exceptions import ConnectionClosedError, InvalidHandshake, ProtocolError, ProxyError
from ..frames import CloseCode
from ..handshake import WSURI
from ..headers import Headers
from ..http11 import HTTPLimits
from ..plugins.deflate import io_extensions
from ..proxy import ConnectHandshake
from ..redirects import strip_credentials
from .connection import Connection, make_logger

if TYPE_CHECKING:
    from ..config import Config
    from ..plugin import PluginManager
    from ..statemachine import StateSpec

__all__ = ["ClientConnection", "Connect", "Reconnecting", "connect", "unix_connect"]


class ClientConnection(Connection):
    """A client connection; see :class:`~wskit.sync.connection.Connection`.

    Created by :func:`connect`. ``request`` is the request we sent and
    ``response`` the server's 101 response.
    """

    protocol: ClientProtocol

    def __enter__(self) -> ClientConnection:
        return self

    def _finish(self, cause: BaseException | None) -> None:
        super()._finish(cause)
        self.logger.info("connection closed (code %s)", self.close_code)


class Connect:
    """What :func:`connect` returns: one connection, or a new one after each loss.

    :func:`connect` opens the connection at once, as python-websockets'
    does; then use what it returns in one of these ways:

    - ``with connect(uri) as ws:`` gives that connection and closes it at
      the end of the block;
    - ``for ws in connect(uri):`` reconnects for ever: each iteration gives
      an open connection (the first one is the one just opened; the previous
      one is closed before the next is opened). A failed attempt, the first
      one included, is tried again after a backoff delay; a failure that
      retrying cannot fix is raised (see ``process_exception`` in
      :func:`connect`)::

          for ws in connect("ws://127.0.0.1:8765/"):
              try:
                  for message in ws:
                      ...
              except ConnectionClosed:
                  continue  # lost: reconnect

    - ``ws = connect(uri)`` then ``ws.send(...)``: ``ws`` stands for the
      connection (every attribute of :class:`ClientConnection`; once used so,
      iterating over ``ws`` gives its messages); :meth:`open` returns the
      :class:`ClientConnection` itself.

    A failure that retrying cannot fix (a 4xx answer, a bad URI, a refused
    subprotocol...) is raised by :func:`connect` itself. One that a retry may
    fix (refused, timed out, a 5xx answer...) is kept for the iteration to
    retry, and raised by the first other use (``with``, :meth:`open`, an
    attribute).
    """

    def __init__(self, client: _Client) -> None:
        self._client = client
        self._connection: ClientConnection | None = None
        self._failure: Exception | None = None  # a transient failure of the first attempt, not yet raised
        self._used = False  # used as one connection (with, open(), an attribute)
        self._lock = threading.Lock()

    def _first_attempt(self) -> None:
        try:
            self._connection = self._client.open()
        except Exception as exc:
            self._failure = self._transient(exc)

    def _transient(self, exc: Exception) -> Exception:
        """Return ``exc`` if a retry may fix it; raise what ``process_exception`` says otherwise."""
        error = self._client.options.retry(exc)
        if error is exc:
            raise exc
        if error is not None:
            raise error from exc
        return exc

    def open(self) -> ClientConnection:
        """Return the open connection (opening it if the first attempt failed).

        A failure raises one of the exceptions listed in :func:`connect`:
        first the one of the attempt :func:`connect` made, if it failed.
        """
        with self._lock:
            self._used = True
            if self._connection is None:
                failure, self._failure = self._failure, None
                if failure is not None:
                    raise failure
                self._connection = self._client.open()
            return self._connection

    def __enter__(self) -> ClientConnection:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._connection is not None:  # as the connection's own: 1000, or 1011 when the block raised
            self._connection.__exit__(exc_type, exc, tb)

    def __iter__(self) -> Iterator[ClientConnection]:
        if self._used:  # used as one connection: iterate over its messages
            return cast(Iterator[ClientConnection], iter(self.open()))
        if self._client.sock is not None:
            raise ValueError("reconnecting opens its own sockets: connect(sock=...) cannot be iterated over; "
                             "use `with connect(uri, sock=sock) as ws:`")
        return self._reconnect()

    def _reconnect(self) -> Iterator[ClientConnection]:
        client = self._client
        logger = resolve_logger(client.logger, "wskit.sync")
        delays = None
        with self._lock:  # the iteration takes over what the first attempt left
            conn, failure = self._connection, self._failure
            self._connection = self._failure = None
        while True:
            if failure is not None:
                if delays is None:
                    delays = client.options.delays()
                delay = next(delays)
                logger.info("connecting to %s failed; retrying in %.2f s: %s",
                            strip_credentials(client.options.uri), delay, describe_failure(failure))
                failure = None
                time.sleep(delay)
            if conn is None:
                try:
                    conn = client.open()
                except Exception as exc:
                    failure = self._transient(exc)
                    continue
            delays = None
            try:
                yield conn
            finally:
                conn.close()
            conn = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle and friends probe for these: never open for them
            raise AttributeError(name)
        return getattr(self.open(), name)

    def __repr__(self) -> str:
        if self._connection is not None:
            state = repr(self._connection)
        else:
            state = "not open" if self._failure is None else f"first attempt failed: {self._failure!r}"
        return f"<wskit.sync.Connect {strip_credentials(self._client.options.uri)}: {state}>"


# The name of this class before every connect() could be iterated over.
Reconnecting = Connect


@with_config("sync_client")
def connect(
    uri: str | None = None,
    *,
    sock: socket.socket | None = None,
    ssl: ssl_module.SSLContext | None = None,
    server_hostname: str | None = None,
    origin: str | None = None,
    extensions: Sequence[Any] | None = None,
    subprotocols: Sequence[str] | None = None,
    extra_headers: HeadersLike | None = None,
    additional_headers: HeadersLike | None = None,
    auth: tuple[str, str] | None = None,
    user_agent: str | None = USER_AGENT,
    compression: str | None = "deflate",
    proxy: str | Literal[True] | None = True,
    proxy_ssl: ssl_module.SSLContext | None = None,
    max_redirects: int = MAX_REDIRECTS,
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
    reconnect: bool = False,
    backoff_initial: float = BACKOFF_INITIAL,
    backoff_factor: float = BACKOFF_FACTOR,
    backoff_max: float = BACKOFF_MAX,
    backoff_jitter: float = BACKOFF_JITTER,
    process_exception: Callable[[Exception], Exception | None] | None = None,
    config: Config | None = None,
) -> Connect:
    """Connect to the WebSocket server at ``uri``: one connection, or a new one after each loss.

    The connection opens at once. As a context manager, the returned
    :class:`Connect` gives it and closes it at the end::

        with connect("ws://127.0.0.1:8765/") as ws:
            ws.send("hello")
            print(ws.recv())

    Iterated over, it reconnects with backoff: ``for ws in connect(uri):``
    gets an open connection at each iteration, trying again after a
    backoff delay when an attempt fails (the first one too) or a connection
    is lost. See :class:`Connect` for the other ways to use it, and for
    when a failure of the first attempt is raised.

    Redirects (301, 302, 303, 307, 308) in the opening handshake are
    followed, up to ``max_redirects``, within ``open_timeout``.

    Args:
        uri: the ``ws://`` or ``wss://`` URI; ``ws://user:password@host/``
            sends Basic credentials.
        sock: an already connected socket to use instead of opening one.
        ssl: the TLS context (``wss://`` without one uses
            :func:`ssl.create_default_context`).
        server_hostname: the TLS server name (defaults to the URI's host).
        origin: the ``Origin`` header.
        extensions: extension factories to offer, in preference order
            (``[]`` with ``compression=None``: offer none).
        subprotocols: subprotocols to offer, in preference order.
        extra_headers: more request headers.
        additional_headers: the same as ``extra_headers`` (python-websockets' name).
        auth: ``(user, password)`` for HTTP Basic authentication (instead of
            putting them in the URI). Dropped on a redirect to another host.
        user_agent: the ``User-Agent`` header (``None`` for none).
        compression: ``"deflate"`` (default) offers permessage-deflate: a
            permessage-deflate factory (the plugin manager's settings) is added at the end of ``extensions`` unless one
            named ``permessage-deflate`` is there; with ``extensions=None``
            the offer is what the plugins provide (permessage-deflate,
            unless the plugin manager disables that plugin). ``None`` adds
            nothing.
        proxy: a proxy URL (``http://``, ``https://``, ``socks4://``,
            ``socks4a://``, ``socks5://``, ``socks5h://``; credentials in it
            are sent to the proxy); ``True`` (default): the one the
            environment sets (``https_proxy`` for ``wss://``, ``http_proxy``
            for ``ws://``, ``all_proxy``, ``no_proxy``); ``None``: no proxy.
            SOCKS needs ``pip install 'wskit[socks]'``. ``wss://`` through
            an ``https://`` proxy (TLS inside TLS) needs :mod:`wskit.asyncio`.
        proxy_ssl: the TLS context for an ``https://`` proxy.
        max_redirects: redirects followed in one opening handshake (``0``:
            none; a redirect is then an ``InvalidHandshake``).
        open_timeout: seconds for TCP connect, proxy, TLS and the opening
            handshake together, redirects included; ``None`` waits forever.
        ping_interval: seconds between keepalive Pings (``None``: no keepalive).
        ping_timeout: seconds to wait for a keepalive Pong before failing
            the connection with 1011 (``None``: never).
        close_timeout: seconds :meth:`~Connection.close` waits for the
            closing handshake and the end of TCP.
        max_size: largest incoming message, in bytes (``None``: no limit).
        max_queue: incoming messages buffered before reading pauses
            (``None``: no limit).
        write_limit: accepted for symmetry with the asyncio layer (blocking
            writes have no user-space buffer).
        max_fragment_size: split outgoing messages in frames of this size.
        logger: base logger (default ``wskit.sync``): ``connection open``
            and ``connection closed`` at INFO, retries at INFO.
        plugins: plugin objects to add for this connection's protocol.
        plugin_manager: the :class:`~wskit.plugin.PluginManager` of the core
            (default: the shared one).
        spec: the connection state-machine spec (a path or a loaded
            :class:`~wskit.statemachine.StateSpec`; default: the shipped one).
        limits: limits on the HTTP response's size.
        reconnect: open nothing now: the :class:`Connect` returned is
            meant to be iterated over (iterating reconnects with or without
            this flag).
        backoff_initial: when reconnecting, seconds before the first retry.
        backoff_factor: each further retry waits this many times longer...
        backoff_max: ...up to this many seconds.
        backoff_jitter: the fraction of each delay drawn at random (``0``:
            exact delays).
        process_exception: when reconnecting, called with the exception of
            a failed attempt: return ``None`` to retry, or the exception to
            raise. Default: retry network errors, timeouts, lost
            connections and 408/429/5xx answers
            (:func:`wskit.reconnect.is_transient`), raise the rest.
        config: a configuration loaded by ``wskit.config.load``: every key
            it sets applies unless the same argument is passed in the call
            (an explicit argument wins even when equal to its default);
            ``client.uri`` is used when ``uri`` is not given.

    Returns:
        A :class:`Connect` holding the open connection: use it with
        ``with``, iterate over it, or call :meth:`Connect.open`. Of the
        exceptions below, those a retry may fix (``OSError``,
        ``TimeoutError``, a 5xx answer, a lost connection) are raised by
        that first use instead, so that iterating can retry them.

    Raises:
        InvalidURI: ``uri`` (or ``proxy``) is not a valid URI.
        InvalidHandshake: the server refused or answered badly (``.response``
            holds its response, e.g. a 401 or 403).
        ProxyError: the proxy refused or failed; the message names it and
            what it answered.
        RedirectError: a redirect that cannot be followed, or too many.
        TimeoutError: ``open_timeout`` expired (the message says at which step).
        ConnectionClosedError: the connection was lost during the handshake (1006).
        OSError: the TCP connection or the TLS handshake failed.
    """
    if uri is None:
        raise TypeError("connect() needs a URI (or client.uri in the configuration file)")
    client_options = ClientOptions.build(
        uri, extra_headers=extra_headers, additional_headers=additional_headers, auth=auth, proxy=proxy,
        proxy_ssl=proxy_ssl, ssl=ssl, server_hostname=server_hostname, max_redirects=max_redirects,
        backoff_initial=backoff_initial, backoff_factor=backoff_factor, backoff_max=backoff_max,
        backoff_jitter=backoff_jitter, process_exception=process_exception)
    manager = resolve_manager(plugins, plugin_manager)
    options = ConnectionOptions.build(
        extensions=io_extensions(compression, extensions, "client", manager), subprotocols=subprotocols,
        max_size=max_size, max_fragment_size=max_fragment_size, limits=limits,
        plugin_manager=manager, spec=spec, open_timeout=open_timeout, close_timeout=close_timeout,
        ping_interval=ping_interval, ping_timeout=ping_timeout, max_queue=max_queue, write_limit=write_limit)
    check_options(max_queue=max_queue, write_limit=write_limit, ping_interval=ping_interval,
                  ping_timeout=ping_timeout, close_timeout=close_timeout)
    client = _Client(client_options, options, sock=sock, origin=origin, user_agent=user_agent, logger=logger)
    handle = Connect(client)
    if not reconnect:
        handle._first_attempt()
    return handle


class _Client:
    """One ``connect`` call's options; :meth:`open` opens a connection, following redirects."""

    def __init__(self, client_options: ClientOptions, options: ConnectionOptions, *, sock: socket.socket | None,
                 origin: str | None, user_agent: str | None, logger: logging.Logger | None) -> None:
        self.options = client_options
        self.connection_options = options
        self.sock = sock
        self.unix_path: str | None = None  # set by unix_connect
        self.origin = origin
        self.user_agent = user_agent
        self.logger = logger
        self.step = ""

    def open(self) -> ClientConnection:
        deadline = _deadline(self.connection_options.open_timeout)
        uri = self.options.uri
        redirects = 0
        try:
            while True:
                try:
                    return self._open(uri, deadline)
                except InvalidHandshake as exc:
                    if self.sock is not None or self.unix_path is not None:
                        raise  # a given socket or a Unix socket: nowhere else to go
                    uri = self.options.follow(uri, exc, redirects)
                    redirects += 1
        except TimeoutError as exc:
            step = f" ({self.step})" if self.step else ""
            raise TimeoutError(f"timed out after {self.connection_options.open_timeout} s opening "
                               f"{strip_credentials(self.options.uri)}{step}") from exc

    def _open(self, uri: str, deadline: float | None) -> ClientConnection:
        options = self.connection_options
        conn_id = uuid.uuid4()
        adapter = make_logger(self.logger, conn_id)
        protocol = ClientProtocol(uri, origin=self.origin, extra_headers=self.options.extra_headers,
                                  user_agent=self.user_agent, **options.protocol_kwargs(adapter))
        wsuri = protocol.wsuri
        ssl = self.options.ssl_for(wsuri)
        self.step = "connecting"
        sock = self.sock if self.sock is not None else self._socket(wsuri, ssl, deadline)
        try:
            if ssl is not None:
                self.step = f"TLS handshake with {wsuri.host}"
                sock.settimeout(_remaining(deadline))
                sock = ssl.wrap_socket(sock, server_hostname=self.options.server_hostname_for(wsuri),
                                       do_handshake_on_connect=False)
                sock.settimeout(_remaining(deadline))
                sock.do_handshake()
            self.step = "waiting for the server's answer to the opening handshake"
            leftover, error = _handshake(sock, protocol, deadline)
            sock.settimeout(None)
            connection = ClientConnection(sock, protocol, logger=adapter, conn_id=conn_id,
                                          **options.connection_kwargs())
        except BaseException:
            sock.close()
            raise
        self.step = ""
        connection.response = protocol.response
        connection.request = Request(protocol.wsuri.path, cast(Headers, protocol.request))  # sent by connect()
        connection.logger.info("connection open")
        connection._start(leftover, error)
        return connection

    def _socket(self, wsuri: WSURI, ssl: ssl_module.SSLContext | None, deadline: float | None) -> socket.socket:
        if self.unix_path is not None:
            unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                unix.settimeout(_remaining(deadline))
                unix.connect(self.unix_path)
            except BaseException:
                unix.close()
                raise
            return unix
        proxy = self.options.proxy_for(wsuri)
        if proxy is None:
            return socket.create_connection((wsuri.host, wsuri.port), timeout=_remaining(deadline))
        target = f"{wsuri.host}:{wsuri.port}"
        if proxy.is_socks:
            self.step = f"connecting through SOCKS proxy {proxy}"
            proxy_class = socks_proxy("sync")
            try:
                sock: socket.socket = proxy_class(**socks_arguments(proxy)).connect(
                    wsuri.host, wsuri.port, timeout=_remaining(deadline))
            except Exception as exc:
                error = socks_failure(proxy, exc, target)
                if error is None:
                    raise
                raise error from exc
            return sock
        if proxy.secure and ssl is not None:
            raise ProxyError(f"wss:// through the https:// proxy {proxy} needs TLS inside TLS, which wskit.sync does "
                             "not do: use wskit.asyncio (Python 3.11+) or an http:// proxy", proxy=str(proxy))
        self.step = f"connecting to proxy {proxy}"
        try:
            sock = socket.create_connection((proxy.host, proxy.port), timeout=_remaining(deadline))
        except TimeoutError:
            raise
        except OSError as exc:
            raise proxy_error(proxy, exc, target) from exc
        try:
            if proxy.secure:
                self.step = f"TLS handshake with proxy {proxy}"
                sock.settimeout(_remaining(deadline))
                sock = self.options.proxy_ssl_for(proxy).wrap_socket(sock, server_hostname=proxy.host)
            handshake = ConnectHandshake(proxy, wsuri, user_agent=self.user_agent,
                                         limits=self.connection_options.limits)
            self.step = f"waiting for proxy {proxy} to answer CONNECT {handshake.target}"
            sock.settimeout(_remaining(deadline))
            sock.sendall(handshake.request())
            while True:
                sock.settimeout(_remaining(deadline))
                data = sock.recv(65536)
                if not data:
                    handshake.receive_eof()
                if handshake.receive_data(data):
                    return sock
        except BaseException:
            sock.close()
            raise


def unix_connect(path: str, uri: str | None = None, **kwargs: Any) -> Connect:
    """Connect to a WebSocket server listening on a Unix socket.

    Returns a :class:`Connect`, used like the one :func:`connect` returns
    (``with``, iteration to reconnect, :meth:`Connect.open`); each
    connection opens a new socket to ``path``.

    Args:
        path: the socket's file system path.
        uri: the URI to put in the request (default: ``client.uri`` of
            ``config=`` if it sets one, else ``ws://localhost/``; ``wss://``
            enables TLS).
        kwargs: the other arguments of :func:`connect`.
    """
    config = kwargs.get("config")
    if uri is None and config is not None and config.is_set("client.uri"):
        uri = config.get("client.uri")
    if uri is None:
        uri = "wss://localhost/" if kwargs.get("ssl") is not None else "ws://localhost/"
    if kwargs.get("sock") is not None:
        raise TypeError("unix_connect() opens its own socket; use connect(sock=...) for a connected one")
    reconnect = kwargs.pop("reconnect", False)
    handle = connect(uri, reconnect=True, **kwargs)
    handle._client.unix_path = path
    if not reconnect:
        handle._first_attempt()
    return handle


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out during the opening handshake")
    return remaining


def _handshake(
    sock: socket.socket, protocol: ClientProtocol, deadline: float | None
) -> tuple[list[Event], ProtocolError | None]:
    """Send the request, read the response; return the events that followed it."""
    sock.settimeout(_remaining(deadline))
    for data in protocol.connect():
        sock.sendall(data)
    while True:
        sock.settimeout(_remaining(deadline))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("timed out during the opening handshake") from None
        except ConnectionError as exc:
            raise ConnectionClosedError(CloseCode.ABNORMAL_CLOSURE, "",
                                        f"connection lost during the opening handshake: {exc}") from exc
        if not data:
            try:
                protocol.receive_eof()
            except InvalidHandshake as exc:
                if exc.response is None:
                    raise ConnectionClosedError(
                        CloseCode.ABNORMAL_CLOSURE, "", "connection closed during the opening handshake") from exc
                raise
            # Not raised: the EOF ended a response whose body ran until it
            # (a 101 has no body: it came complete out of receive_data).
            raise _rejected(cast(Response, protocol.response))
        try:
            events = protocol.receive_data(data)
        except InvalidHandshake as exc:
            if exc.response is not None and exc.response.status_code != 101:
                raise _rejected(exc.response) from exc
            raise
        except ProtocolError as exc:  # a bad frame right after a good 101
            return [e for e in exc.events if not isinstance(e, Response)], exc
        if events:
            return events[1:], None


def _rejected(response: Response) -> InvalidHandshake:
    exc = InvalidHandshake(
        f"server rejected the WebSocket connection: HTTP {response.status_code} {response.reason_phrase}",
        response=response, status=response.status_code)
    return exc

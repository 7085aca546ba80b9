"""asyncio WebSocket client: :func:`connect` and :func:`unix_connect`."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl as ssl_module
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

from .._io import (
    ClientOptions,
    ConnectionOptions,
    describe_failure,
    loop_keywords,
    proxy_error,
    resolve_logger,
    resolve_manager,
    socks_arguments,
    socks_failure,
    socks_proxy,
    with_config,
)
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
from ..events import Request, Response
from ..exceptions import ConnectionClosedError, InvalidHandshake, ProtocolError, ProxyError
from ..frames import CloseCode
from ..handshake import WSURI
from ..http11 import HTTPLimits
from ..plugins.deflate import io_extensions
from ..protocol import ClientProtocol
from ..proxy import ConnectHandshake, ProxyURL
from ..redirects import strip_credentials
from .connection import Connection, LoggerLike, make_logger

if TYPE_CHECKING:
    from ..config import Config
    from ..plugin import PluginManager
    from ..statemachine import StateSpec

__all__ = ["ClientConnection", "connect", "unix_connect"]


class ClientConnection(Connection):
    """A client connection returned by :func:`connect`.

    See :class:`~wskit.asyncio.connection.Connection` for the messaging API.
    """

    protocol: ClientProtocol

    def __init__(self, protocol: ClientProtocol, **kwargs: Any) -> None:
        super().__init__(protocol, **kwargs)
        self._handshake: asyncio.Future[None] = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._write(self.protocol.connect())

    def _opening_data(self, data: bytes) -> None:
        try:
            events = self.protocol.receive_data(data)
        except InvalidHandshake as exc:
            self._handshake_failed(exc)
            return
        except ProtocolError as exc:  # frames right after the 101 were invalid
            self._opened()
            self._protocol_error(exc)
            return
        if not events:
            return
        self._opened()
        if len(events) > 1:
            self._handle_events(events[1:])

    def _opened(self) -> None:
        super()._opened()
        self.logger.info("connection open")
        if not self._handshake.done():
            self._handshake.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        was_open = not self._opening
        super().connection_lost(exc)
        if was_open:
            self.logger.info("connection closed (code %s)", self.close_code)

    def _handshake_failed(self, exc: BaseException) -> None:
        if self._debug:
            self.logger.debug("! opening handshake failed: %s", exc)
        if not self._handshake.done():
            self._handshake.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()

    def _opening_lost(self, error: ProtocolError | None) -> None:
        if self._handshake.done():
            return
        exc: BaseException = error if error is not None else ConnectionClosedError(
            CloseCode.ABNORMAL_CLOSURE, "", "connection closed during the opening handshake")
        self._handshake.set_exception(exc)

    @property
    def request(self) -> Request | None:
        """The opening handshake's request (``path`` and ``headers``)."""
        headers = self.protocol.request
        return None if headers is None else Request(self.protocol.wsuri.path, headers)

    @property
    def response(self) -> Response | None:
        """The server's handshake response."""
        return self.protocol.response


class connect:  # lowercase: used like a function, as in python-websockets
    """Open a WebSocket client connection.

    Use it as ``ws = await connect(uri)`` or ``async with connect(uri) as ws:``
    (the connection is closed on exit), or as ``async for ws in
    connect(uri):`` to reconnect: each iteration gets a new open connection
    (the previous one is closed first); a failed attempt or a lost
    connection is tried again after a backoff delay, and a failure that
    retrying cannot fix is raised (see ``process_exception``).

    Redirects (301, 302, 303, 307, 308) in the opening handshake are
    followed, up to ``max_redirects``, within ``open_timeout``.

    Args:
        uri: the ``ws://`` or ``wss://`` URI; ``ws://user:password@host/``
            sends Basic credentials.
        origin: the ``Origin`` header.
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
        extensions: extension factories to offer, in preference order
            (``[]`` with ``compression=None``: offer none).
        proxy: a proxy URL (``http://``, ``https://``, ``socks4://``,
            ``socks4a://``, ``socks5://``, ``socks5h://``; credentials in it
            are sent to the proxy); ``True`` (default): the one the
            environment sets (``https_proxy`` for ``wss://``, ``http_proxy``
            for ``ws://``, ``all_proxy``, ``no_proxy``); ``None``: no proxy.
            SOCKS needs ``pip install 'wskit[socks]'``.
        proxy_ssl: the TLS context for an ``https://`` proxy (default: the
            default context).
        max_redirects: redirects followed in one opening handshake (``0``:
            none; a redirect is then an ``InvalidHandshake``).
        open_timeout: seconds for TCP connect + proxy + TLS + opening
            handshake, redirects included.
        ping_interval: seconds between keepalive pings (``None`` disables).
        ping_timeout: seconds to wait for a keepalive pong before failing
            the connection with 1011 (``None`` disables).
        close_timeout: seconds to wait for the closing handshake and the
            TCP close before aborting.
        max_size: largest message accepted (1009 beyond), ``None`` for no limit.
        max_queue: received messages buffered before reading pauses.
        write_limit: write buffer high-water mark; ``send`` waits above it.
        max_fragment_size: split sent messages into frames of this size.
        limits: :class:`~wskit.http11.HTTPLimits` for the HTTP response.
        logger: a logger (or its name) for this connection's lines
            (``connection open`` and ``connection closed`` at INFO, retries
            at INFO, the rest at DEBUG); default ``wskit.client``.
        plugins: extra plugins for the core.
        ssl: an :class:`ssl.SSLContext` (``wss://`` without it uses the default context).
        server_hostname: the TLS server name (default: the URI's host).
        sock: an already connected socket to use.
        plugin_manager: the :class:`~wskit.plugin.PluginManager` of the core
            (default: the shared one).
        spec: the connection state-machine spec (a path or a loaded
            :class:`~wskit.statemachine.StateSpec`; default: the shipped one).
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
        config: a loaded :class:`wskit.config.Config`: every key it sets
            applies unless the same option is passed in the call (an
            explicit argument wins even when equal to its default);
            ``client.uri`` is used when ``uri`` is not given.
        **kwargs: passed to :meth:`asyncio.loop.create_connection` (to the
            proxy's when there is one).

    Raises:
        InvalidURI: ``uri`` (or ``proxy``) is not a valid URI.
        InvalidHandshake: the server refused the upgrade (``.response`` holds
            its answer, e.g. status 401 or 403).
        ProxyError: the proxy refused or failed; the message names it and
            what it answered.
        RedirectError: a redirect that cannot be followed, or too many.
        TimeoutError: ``open_timeout`` elapsed (the message says at which step).
        OSError: the TCP connection failed.
    """

    @with_config("asyncio_client", passthrough=loop_keywords(
        "create_connection", "create_unix_connection", internal=["_unix_path"]))
    def __init__(
        self,
        uri: str | None = None,
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] | None = None,
        extra_headers: Any = None,
        additional_headers: Any = None,
        auth: tuple[str, str] | None = None,
        user_agent: str | None = USER_AGENT,
        compression: str | None = "deflate",
        extensions: Sequence[Any] | None = None,
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
        limits: HTTPLimits | None = None,
        logger: LoggerLike | str | None = None,
        plugins: Sequence[object] | None = None,
        plugin_manager: PluginManager | None = None,
        spec: str | os.PathLike[str] | StateSpec | None = None,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        sock: socket.socket | None = None,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_factor: float = BACKOFF_FACTOR,
        backoff_max: float = BACKOFF_MAX,
        backoff_jitter: float = BACKOFF_JITTER,
        process_exception: Callable[[Exception], Exception | None] | None = None,
        config: Config | None = None,
        **kwargs: Any,
    ) -> None:
        if uri is None:
            raise TypeError("connect() needs a URI (or client.uri in the configuration file)")
        self._client = ClientOptions.build(
            uri, extra_headers=extra_headers, additional_headers=additional_headers, auth=auth, proxy=proxy,
            proxy_ssl=proxy_ssl, ssl=ssl, server_hostname=server_hostname, max_redirects=max_redirects,
            backoff_initial=backoff_initial, backoff_factor=backoff_factor, backoff_max=backoff_max,
            backoff_jitter=backoff_jitter, process_exception=process_exception)
        # Built now: a bad ``compression`` fails here, not at connection time.
        manager = resolve_manager(plugins, plugin_manager)
        self._options = ConnectionOptions.build(
            extensions=io_extensions(compression, extensions, "client", manager), subprotocols=subprotocols,
            max_size=max_size, max_fragment_size=max_fragment_size, limits=limits,
            plugin_manager=manager, spec=spec, open_timeout=open_timeout, close_timeout=close_timeout,
            ping_interval=ping_interval, ping_timeout=ping_timeout, max_queue=max_queue, write_limit=write_limit)
        check_options(max_queue=max_queue, write_limit=write_limit, ping_interval=ping_interval,
                      ping_timeout=ping_timeout, close_timeout=close_timeout)
        self._origin = origin
        self._user_agent = user_agent
        self._logger = logger
        self._sock = sock
        self._kwargs = kwargs
        self._unix_path: str | None = kwargs.pop("_unix_path", None)
        self._step = ""
        self.connection: ClientConnection | None = None

    def _make(self, uri: str) -> ClientConnection:
        conn_id = uuid.uuid4()
        logger = make_logger(self._logger, "wskit.client", conn_id)
        protocol = ClientProtocol(
            uri, origin=self._origin, extra_headers=self._client.extra_headers, user_agent=self._user_agent,
            **self._options.protocol_kwargs(logger),
        )
        return ClientConnection(protocol, conn_id=conn_id, logger=logger, **self._options.connection_kwargs())

    async def _open(self, conn: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        kwargs = dict(self._kwargs)
        wsuri = conn.protocol.wsuri
        ssl = self._client.ssl_for(wsuri)
        if ssl is not None:
            kwargs["ssl"] = ssl
            kwargs["server_hostname"] = self._client.server_hostname_for(wsuri)
        self._step = "connecting"
        if self._unix_path is not None or (self._sock is not None and self._sock.family == socket.AF_UNIX):
            await loop.create_unix_connection(lambda: conn, self._unix_path, sock=self._sock, **kwargs)
        elif self._sock is not None:
            await loop.create_connection(lambda: conn, sock=self._sock, **kwargs)
        else:
            proxy = self._client.proxy_for(wsuri)
            if proxy is None:
                await loop.create_connection(lambda: conn, wsuri.host, wsuri.port, **kwargs)
            elif proxy.is_socks:
                sock = await self._socks(proxy, wsuri)
                self._step = f"TLS handshake with {wsuri.host} through proxy {proxy}" if ssl else ""
                await loop.create_connection(lambda: conn, sock=sock, **kwargs)
            else:
                await self._tunnel(conn, proxy, wsuri, ssl, kwargs)
        self._step = "waiting for the server's answer to the opening handshake"
        await conn._handshake

    async def _socks(self, proxy: ProxyURL, wsuri: WSURI) -> socket.socket:
        target = f"{wsuri.host}:{wsuri.port}"
        self._step = f"connecting through SOCKS proxy {proxy}"
        proxy_class = socks_proxy("asyncio")
        try:
            sock: socket.socket = await proxy_class(**socks_arguments(proxy)).connect(
                wsuri.host, wsuri.port, timeout=self._options.open_timeout)
        except Exception as exc:
            error = socks_failure(proxy, exc, target)
            if error is None:
                raise
            raise error from exc
        return sock

    async def _tunnel(self, conn: ClientConnection, proxy: ProxyURL, wsuri: WSURI,
                      ssl: ssl_module.SSLContext | None, kwargs: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        handshake = ConnectHandshake(proxy, wsuri, user_agent=self._user_agent, limits=self._options.limits)
        tunnel = _Tunnel(handshake, loop)
        for key in ("ssl", "server_hostname"):
            kwargs.pop(key, None)
        if proxy.secure:
            kwargs["ssl"] = self._client.proxy_ssl_for(proxy)
            kwargs["server_hostname"] = proxy.host
            if ssl is not None and sys.version_info < (3, 11):
                raise ProxyError(f"wss:// through the https:// proxy {proxy} needs TLS inside TLS, which asyncio "
                                 "supports from Python 3.11 on (use wskit.sync, or an http:// proxy)",
                                 proxy=str(proxy))
        self._step = f"connecting to proxy {proxy}"
        try:
            transport, _ = await loop.create_connection(lambda: tunnel, proxy.host, proxy.port, **kwargs)
        except OSError as exc:
            raise proxy_error(proxy, exc, handshake.target) from exc
        try:
            self._step = f"waiting for proxy {proxy} to answer CONNECT {handshake.target}"
            await tunnel.done
            if ssl is not None:
                self._step = f"TLS handshake with {wsuri.host} through proxy {proxy}"
                # The TLS transport once the handshake succeeded; a failure, or
                # the tunnel closing meanwhile, raises (the typeshed's ``None`` is never returned).
                transport = cast(asyncio.Transport, await loop.start_tls(
                    transport, tunnel, ssl, server_hostname=self._client.server_hostname_for(wsuri)))
        except BaseException:
            transport.abort()
            raise
        transport.set_protocol(conn)
        conn.connection_made(transport)

    async def _open_following_redirects(self) -> ClientConnection:
        uri = self._client.uri
        redirects = 0
        while True:
            conn = self._make(uri)
            try:
                await self._open(conn)
                return conn
            except InvalidHandshake as exc:
                _abort(conn)
                if self._sock is not None or self._unix_path is not None:
                    raise  # the socket is spent: nowhere else to go
                uri = self._client.follow(uri, exc, redirects)
                redirects += 1
                conn.logger.debug("= following a redirect to %s", strip_credentials(uri))
            except BaseException:
                _abort(conn)
                raise

    async def _connect(self) -> ClientConnection:
        try:
            conn = await asyncio.wait_for(self._open_following_redirects(), self._options.open_timeout)
        except asyncio.TimeoutError:
            step = f" ({self._step})" if self._step else ""
            raise TimeoutError(f"timed out after {self._options.open_timeout} s opening "
                               f"{strip_credentials(self._client.uri)}{step}") from None
        self.connection = conn
        return conn

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._connect().__await__()

    async def __aenter__(self) -> ClientConnection:
        return await self._connect()

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.connection is not None  # __aenter__ returned it
        await self.connection.close()

    async def __aiter__(self) -> AsyncIterator[ClientConnection]:
        """Reconnect for ever: yield a new open connection each time the previous one is done with.

        Raises:
            Exception: a failure ``process_exception`` says not to retry.
        """
        logger = resolve_logger(self._logger, "wskit.client")
        delays = None
        while True:
            try:
                conn = await self._connect()
            except Exception as exc:
                error = self._client.retry(exc)
                if error is exc:
                    raise
                if error is not None:
                    raise error from exc
                if delays is None:
                    delays = self._client.delays()
                delay = next(delays)
                logger.info("connecting to %s failed; retrying in %.2f s: %s",
                            strip_credentials(self._client.uri), delay, describe_failure(exc))
                await asyncio.sleep(delay)
                continue
            delays = None
            try:
                yield conn
            finally:
                await conn.close()


class _Tunnel(asyncio.Protocol):
    """The transport's protocol while an HTTP proxy opens the tunnel (and during TLS inside it)."""

    def __init__(self, handshake: ConnectHandshake, loop: asyncio.AbstractEventLoop) -> None:
        self.handshake = handshake
        self.done: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(self.handshake.request())

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        try:
            if self.handshake.receive_data(data):
                self.done.set_result(None)
        except ProxyError as exc:
            self.done.set_exception(exc)

    def eof_received(self) -> bool | None:
        self._ended()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended()

    def _ended(self) -> None:
        if not self.done.done():
            try:
                self.handshake.receive_eof()
            except ProxyError as error:
                self.done.set_exception(error)


def _abort(conn: ClientConnection) -> None:
    if conn.transport is not None and not conn.transport.is_closing():
        conn.transport.abort()


def unix_connect(path: str | None = None, uri: str | None = None, **kwargs: Any) -> connect:
    """Open a WebSocket client connection over a Unix socket.

    Args:
        path: the socket's file system path (or pass ``sock=``).
        uri: the URI sent in the handshake (default: ``client.uri`` of
            ``config=`` if it sets one, else ``ws://localhost/``, or
            ``wss://localhost/`` with ``ssl=``).
        **kwargs: the options of :func:`connect`.
    """
    config = kwargs.get("config")
    if uri is None and config is not None and config.is_set("client.uri"):
        uri = config.get("client.uri")
    if uri is None:
        uri = "wss://localhost/" if kwargs.get("ssl") is not None else "ws://localhost/"
    return connect(uri, _unix_path=path, **kwargs)

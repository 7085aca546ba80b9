"""Blocking WebSocket client: :func:`connect` and :func:`unix_connect`."""

from __future__ import annotations

import functools
import inspect
import logging
import socket
import ssl as ssl_module
import time
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ..client import ClientProtocol, HeadersLike
from ..events import Event, Request, Response
from ..exceptions import ConnectionClosedError, InvalidHandshake, ProtocolError
from ..handshake import parse_uri
from ..http11 import HTTPLimits
from ..protocol import Side
from .connection import Connection, build_extensions, make_logger

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Config
    from ..plugin import PluginManager

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["ClientConnection", "connect", "unix_connect"]

def factories(compression: str | None, extensions: Sequence[Any] | None, side: Side) -> list[Any] | None:
    """Map ``compression`` and ``extensions`` to the core's ``extensions`` argument.

    ``compression="deflate"`` without ``extensions`` gives ``None``: what the
    plugins provide (permessage-deflate, unless the plugin manager leaves the
    ``permessage-deflate`` plugin out). Otherwise see
    :func:`~wskit.sync.connection.build_extensions`.

    Raises:
        ValueError: for an unknown ``compression`` value.
    """
    if compression == "deflate" and extensions is None:
        return None
    return build_extensions(compression, extensions, side)


_LOCATION_IN_CODE = frozenset({"sock", "unix", "_unix", "_unix_path"})


def with_config(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a consumer (:func:`connect`, :func:`~wskit.sync.serve`) so that it takes ``config=``.

    The keyword arguments actually passed in the call, and the parameters
    given positionally, are explicit and win over the file, even when equal
    to their default; every other key the file sets fills in (see
    :func:`wskit.config.merge_options`). Then:

    * the file's ``compression`` section is the complete extension list
      (``compression`` is set to ``None`` so the layer adds nothing), unless
      ``compression`` or ``extensions`` was given in code;
    * on clients, the file's ``tls`` section applies to ``wss://`` URIs only;
    * for servers, a location given in code (``host``/``port``, or a socket
      or Unix path) wins over the file's; a file's ``server.unix`` wins over
      the file's ``host``/``port``; otherwise ``host`` and ``port`` not given
      in code are the configuration's (default ``127.0.0.1:8765``).

    Args:
        kind: ``"sync_client"`` or ``"sync_server"`` (a
            :data:`wskit.config.KINDS` value).
    """

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        params = inspect.signature(func).parameters.values()
        positional = [p.name for p in params
                      if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            config = kwargs.pop("config", None)
            if config is None:
                return func(*args, **kwargs)
            merged = resolve_config(config, kind, dict(zip(positional, args)), kwargs)
            return func(*args, **merged)

        return wrapper

    return decorate


def resolve_config(config: Any, kind: str, positional: dict[str, Any], keywords: dict[str, Any]) -> dict[str, Any]:
    """Return the keyword arguments to call a consumer with: ``keywords`` plus what ``config`` adds.

    Args:
        config: a :class:`wskit.config.Config`.
        kind: the consumer kind.
        positional: the parameters given positionally, by name (explicit,
            not returned).
        keywords: the keyword arguments given (explicit, returned as is).

    Raises:
        TypeError: ``config`` is not a :class:`wskit.config.Config`.
    """
    from ..config import Config, merge_options

    if not isinstance(config, Config):
        raise TypeError(f"config must be a wskit.config.Config (from wskit.config.load), "
                        f"got {type(config).__name__}")
    given = {**positional, **keywords}
    merged = merge_options(config, kind, given)
    for name in positional:
        merged.pop(name, None)
    if "extensions" in merged and "extensions" not in given and "compression" not in given:
        merged["compression"] = None  # the file's factories are the complete list
    uri = merged.get("uri", positional.get("uri"))
    if "ssl" in merged and "ssl" not in given and isinstance(uri, str) and not uri.lower().startswith("wss:"):
        del merged["ssl"]  # the file's TLS settings apply to wss:// URIs only
    if kind.endswith("_server"):
        in_code = any(given.get(k) is not None for k in _LOCATION_IN_CODE)
        if merged.get("unix") is None and "unix" not in given:
            merged.pop("unix", None)  # `server.unix: null` in the file: TCP
        from_file = [k for k in ("host", "port", "unix") if k in merged and k not in given]
        if in_code:
            drop = from_file  # a socket or Unix path given in code: the file's address is moot
        elif "host" in given or "port" in given:
            drop = [k for k in from_file if k == "unix"]
        elif merged.get("unix") is not None:
            drop = [k for k in from_file if k != "unix"]
        else:
            drop = []
        for key in drop:
            merged.pop(key, None)
        if (in_code or merged.get("unix") is not None) and "reuse_port" not in given:
            merged.pop("reuse_port", None)  # the file's SO_REUSEPORT is for the TCP socket it describes
        if merged.get("unix") is None and not in_code:
            # Listening on TCP: the configuration's address, unless given in code.
            for key in ("host", "port"):
                if key not in given:
                    merged.setdefault(key, config.get(f"server.{key}"))
    return merged


class ClientConnection(Connection):
    """A client connection; see :class:`~wskit.sync.connection.Connection`.

    Created by :func:`connect`. ``request`` is the request we sent and
    ``response`` the server's 101 response.
    """

    protocol: ClientProtocol

    def __enter__(self) -> ClientConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc, tb)


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
    compression: str | None = "deflate",
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    max_size: int | None = 2**20,
    max_queue: int | None = 16,
    write_limit: int = 32768,
    max_fragment_size: int | None = None,
    logger: logging.Logger | None = None,
    plugins: Sequence[object] | None = None,
    plugin_manager: PluginManager | None = None,
    limits: HTTPLimits | None = None,
    config: Config | None = None,
) -> ClientConnection:
    """Open a WebSocket connection to ``uri`` and return it once the handshake succeeded.

    Use it as a context manager to close the connection at the end::

        with connect("ws://127.0.0.1:8765/") as ws:
            ws.send("hello")
            print(ws.recv())

    Args:
        uri: the ``ws://`` or ``wss://`` URI.
        sock: an already connected socket to use instead of opening one.
        ssl: the TLS context (``wss://`` without one uses
            :func:`ssl.create_default_context`).
        server_hostname: the TLS server name (defaults to the URI's host).
        origin: the ``Origin`` header.
        extensions: extension factories to offer (before permessage-deflate).
        subprotocols: subprotocols to offer, in preference order.
        extra_headers: more request headers.
        compression: ``"deflate"`` offers permessage-deflate; ``None`` does not.
        open_timeout: seconds for TCP connect, TLS and the opening handshake
            together; ``None`` waits forever.
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
        logger: base logger (default ``wskit.sync``).
        plugins: plugin objects to add for this connection's protocol.
        plugin_manager: the :class:`~wskit.plugin.PluginManager` of the core
            (default: the shared one).
        limits: limits on the HTTP response's size.
        config: a configuration loaded by ``wskit.config.load``: every key
            it sets applies unless the same argument is passed in the call
            (an explicit argument wins even when equal to its default);
            ``client.uri`` is used when ``uri`` is not given.

    Returns:
        The open connection.

    Raises:
        InvalidURI: ``uri`` is not a valid WebSocket URI.
        InvalidHandshake: the server refused or answered badly (``.response``
            holds its response, e.g. a 401 or 403).
        TimeoutError: ``open_timeout`` expired.
        ConnectionClosedError: the connection was lost during the handshake (1006).
        OSError: the TCP connection or the TLS handshake failed.
    """
    if uri is None:
        raise TypeError("connect() needs a URI (or client.uri in the configuration file)")
    given: dict[str, Any] = {
        "origin": origin, "extensions": extensions, "subprotocols": subprotocols,
        "extra_headers": extra_headers, "compression": compression, "open_timeout": open_timeout,
        "ping_interval": ping_interval, "ping_timeout": ping_timeout, "close_timeout": close_timeout,
        "max_size": max_size, "max_queue": max_queue, "write_limit": write_limit,
        "max_fragment_size": max_fragment_size, "logger": logger, "plugins": plugins, "limits": limits,
        "plugin_manager": plugin_manager,
    }
    return _connect(uri, sock=sock, ssl=ssl, server_hostname=server_hostname, options=given)


def unix_connect(path: str, uri: str | None = None, **kwargs: Any) -> ClientConnection:
    """Connect to a WebSocket server listening on a Unix socket.

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
    if "open_timeout" in kwargs:
        open_timeout = kwargs["open_timeout"]
    else:
        open_timeout = config.get("timeouts.open") if config is not None else 10
    deadline = _deadline(open_timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(_remaining(deadline))
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return connect(uri, sock=sock, **kwargs)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out during the opening handshake")
    return remaining


def _connect(
    uri: str,
    *,
    sock: socket.socket | None,
    ssl: ssl_module.SSLContext | None,
    server_hostname: str | None,
    options: dict[str, Any],
) -> ClientConnection:
    wsuri = parse_uri(uri)
    if ssl is not None and not wsuri.secure:
        raise ValueError(f"ssl= was given for the non-TLS URI {uri!r}: use wss://")
    if wsuri.secure and ssl is None:
        ssl = ssl_module.create_default_context()
    conn_id = uuid.uuid4()
    adapter = make_logger(options["logger"], conn_id)
    protocol = ClientProtocol(
        uri,
        logger=adapter,
        max_size=options["max_size"],
        extensions=factories(options["compression"], options["extensions"], Side.CLIENT),
        subprotocols=options["subprotocols"],
        origin=options["origin"],
        extra_headers=options["extra_headers"],
        max_fragment_size=options["max_fragment_size"],
        limits=options["limits"],
        plugins=options["plugins"],
        plugin_manager=options["plugin_manager"],
    )
    deadline = _deadline(options["open_timeout"])
    if sock is None:
        sock = socket.create_connection((wsuri.host, wsuri.port), timeout=_remaining(deadline))
    try:
        if ssl is not None:
            sock.settimeout(_remaining(deadline))
            sock = ssl.wrap_socket(sock, server_hostname=server_hostname or wsuri.host,
                                   do_handshake_on_connect=False)
            sock.settimeout(_remaining(deadline))
            sock.do_handshake()
        leftover, error = _handshake(sock, protocol, deadline)
        sock.settimeout(None)
        connection = ClientConnection(
            sock,
            protocol,
            max_queue=options["max_queue"],
            write_limit=options["write_limit"],
            close_timeout=options["close_timeout"],
            ping_interval=options["ping_interval"],
            ping_timeout=options["ping_timeout"],
            logger=adapter,
            conn_id=conn_id,
        )
    except BaseException:
        sock.close()
        raise
    connection.response = protocol.response
    if protocol.request is not None:
        connection.request = Request(protocol.wsuri.path, protocol.request)
    connection._start(leftover, error)
    return connection


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
            raise ConnectionClosedError(1006, "", f"connection lost during the opening handshake: {exc}") from exc
        if not data:
            try:
                protocol.receive_eof()
            except InvalidHandshake as exc:
                if exc.response is None:
                    raise ConnectionClosedError(
                        1006, "", "connection closed during the opening handshake") from exc
                raise
            response = protocol.response
            if response is not None and response.status_code != 101:
                raise _rejected(response)
            raise ConnectionClosedError(1006, "", "connection closed during the opening handshake")
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

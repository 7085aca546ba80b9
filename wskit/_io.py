"""Options and helpers shared by the asyncio and sync layers.

Both layers take the same options with the same meaning; what they share
beyond the signatures (which stay explicit in each ``connect``/``serve``,
for users and type checkers) lives here: the check of the keywords and of
the main options' types when ``connect``/``serve`` is called, how
``config=`` combines with the call (:func:`with_config`), which plugin
manager the connections use (:func:`resolve_manager`), and the options
each connection passes to its sans-I/O protocol and to its I/O object
(:class:`ConnectionOptions`).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import ssl as ssl_module
import stat
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from ._suggest import did_you_mean
from .config import accepts_config
from .exceptions import InvalidHandshake, ProxyError
from .handshake import WSURI, parse_uri
from .headers import Headers
from .http11 import HTTPLimits
from .plugin import PluginManager, default_manager
from .proxy import ProxyURL, parse_proxy, proxy_from_environment
from .reconnect import backoff_delays, check_backoff, is_transient
from .redirects import redirect_target, strip_credentials, too_many_redirects, with_credentials
from .statemachine import StateSpec, load_spec

if TYPE_CHECKING:
    from .config import Config

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["ClientOptions", "ConnectionOptions", "adjust_config", "check_call", "describe_failure", "loop_keywords",
           "proxy_error", "resolve_logger", "resolve_manager", "set_server_header", "socks_arguments", "socks_failure",
           "socks_proxy", "with_config"]

# Arguments that say where a server listens (or which socket a client uses) in code.
_LOCATION_IN_CODE = frozenset({"sock", "unix", "_unix", "_unix_path"})


def with_config(
    kind: str, *, passthrough: Callable[[], Iterable[str]] | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate an I/O consumer (``connect``, ``serve``) so that it takes ``config=`` and checks its call.

    :func:`wskit.config.accepts_config` with the I/O layers' rules
    (:func:`adjust_config`): the arguments actually passed in the call,
    positionally or by keyword, win over the file even when equal to their
    default; every other key the file sets fills in. Before anything else
    (no I/O has started), the call's keywords are checked
    (:func:`check_call`).

    Args:
        kind: ``"asyncio_client"``, ``"asyncio_server"``, ``"sync_client"``
            or ``"sync_server"`` (a :data:`wskit.config.KINDS` value).
        passthrough: for a consumer with ``**kwargs``, returns the names it
            passes on (to :meth:`asyncio.loop.create_connection`, ...);
            called once, at the first call.
    """
    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        configured = accepts_config(kind, adjust=adjust_config)(func)
        name = func.__qualname__.removesuffix(".__init__")
        params = inspect.signature(func).parameters.values()
        named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}

        @functools.cache
        def accepted() -> frozenset[str]:
            return frozenset(named).union(passthrough() if passthrough is not None else ())

        @functools.wraps(configured)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            check_call(name, kwargs, accepted())
            return configured(*args, **kwargs)

        return wrapper

    return decorate


def loop_keywords(*methods: str, internal: Iterable[str] = ()) -> Callable[[], frozenset[str]]:
    """Return a ``passthrough`` for :func:`with_config`: the keyword-only
    parameters of these :class:`asyncio.AbstractEventLoop` methods (as this
    Python version has them), plus ``internal`` names.

    Args:
        methods: method names (``"create_connection"``, ...).
        internal: private keywords the layer passes itself (``"_unix_path"``).
    """
    def names() -> frozenset[str]:
        import asyncio

        out = set(internal)
        for method in methods:
            params = inspect.signature(getattr(asyncio.AbstractEventLoop, method)).parameters.values()
            out.update(p.name for p in params if p.kind is p.KEYWORD_ONLY)
        return frozenset(out)

    return names


def _int_or_none(value: object) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _seconds(value: object) -> bool:
    return value is None or (isinstance(value, Real) and not isinstance(value, bool))


def _names(value: object) -> bool:
    return value is None or (isinstance(value, Sequence) and not isinstance(value, str | bytes)
                             and all(isinstance(v, str) for v in value))


def _sequence(value: object) -> bool:
    return value is None or (isinstance(value, Sequence) and not isinstance(value, str | bytes))


# The options both layers take, what each accepts, and how to say it.
_OPTION_TYPES: dict[str, tuple[Callable[[object], bool], str]] = {
    "max_size": (_int_or_none, "an int (bytes, the limit of a whole message) or None"),
    "max_fragment_size": (_int_or_none, "an int (bytes) or None"),
    "max_queue": (_int_or_none, "an int (messages) or None"),
    "write_limit": (lambda v: _int_or_none(v) and v is not None, "an int (bytes)"),
    "open_timeout": (_seconds, "a number of seconds or None"),
    "close_timeout": (_seconds, "a number of seconds or None"),
    "ping_interval": (_seconds, "a number of seconds or None"),
    "ping_timeout": (_seconds, "a number of seconds or None"),
    "subprotocols": (_names, "a list of strings or None"),
    "extensions": (_sequence, "a list of extension factories or None"),
    "plugins": (_sequence, "a list of plugin objects or None"),
    "limits": (lambda v: v is None or isinstance(v, HTTPLimits), "a wskit.http11.HTTPLimits or None"),
    "plugin_manager": (lambda v: v is None or isinstance(v, PluginManager), "a wskit.plugin.PluginManager or None"),
    "server_header": (lambda v: v is None or (isinstance(v, str) and v.isprintable() and v.strip() == v and bool(v)),
                      "a non-empty str without control characters or surrounding spaces, or None"),
    "process_request": (lambda v: v is None or callable(v), "a function or None"),
    "process_response": (lambda v: v is None or callable(v), "a function or None"),
    "proxy": (lambda v: v is None or v is True or isinstance(v, str), "a proxy URL (str), True (the environment's) "
              "or None (no proxy)"),
    "proxy_ssl": (lambda v: v is None or isinstance(v, ssl_module.SSLContext), "an ssl.SSLContext or None"),
    "max_redirects": (lambda v: _int_or_none(v) and v is not None and v >= 0, "an int >= 0"),  # type: ignore[operator]
    "backoff_initial": (lambda v: _seconds(v) and v is not None, "a number of seconds"),
    "backoff_max": (lambda v: _seconds(v) and v is not None, "a number of seconds"),
    "backoff_factor": (lambda v: _seconds(v) and v is not None, "a number (>= 1)"),
    "backoff_jitter": (lambda v: _seconds(v) and v is not None, "a number between 0 and 1"),
    "auth": (lambda v: v is None or (isinstance(v, tuple) and len(v) == 2 and all(isinstance(p, str) for p in v)),
             "a (user, password) tuple of str or None"),
    "process_exception": (lambda v: v is None or callable(v), "a function (exception -> exception or None) or None"),
}


def _show(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def check_call(name: str, kwargs: Mapping[str, Any], accepted: Iterable[str]) -> None:
    """Check the keyword arguments of a ``connect``/``serve`` call before it does anything.

    Args:
        name: the function's name, for messages (``"connect"``).
        kwargs: the keyword arguments of the call.
        accepted: every keyword the function takes (its own and those it
            passes on).

    Raises:
        TypeError: for an unknown keyword (``connect() got an unexpected
            keyword argument 'open_timout'; did you mean 'open_timeout'?``,
            the suggestion the configuration loader makes for a misspelled
            key), or a main option of the wrong type (``max_size must be an
            int ... or None, got tuple (1048576, 65536)``).
    """
    names = set(accepted)
    for key, value in kwargs.items():
        if key not in names:
            public = sorted(n for n in names if not n.startswith("_"))
            raise TypeError(f"{name}() got an unexpected keyword argument {key!r}{did_you_mean(key, public)}")
        rule = _OPTION_TYPES.get(key)
        if rule is not None and not rule[0](value):
            raise TypeError(f"{name}(): {key} must be {rule[1]}, got {_show(value)}")


def set_server_header(headers: Headers, value: str | None) -> None:
    """Make a server response's ``Server`` header say ``value`` (``None``: no such header), in place.

    Args:
        headers: the response's headers.
        value: the ``server_header`` option of ``serve``.
    """
    if value is None:
        if "Server" in headers:
            del headers["Server"]
    elif headers.get("Server") != value:
        if "Server" in headers:
            del headers["Server"]
        headers["Server"] = value


def resolve_manager(plugins: Sequence[object] | None, plugin_manager: PluginManager | None) -> PluginManager:
    """Return the plugin manager the connections of a ``connect``/``serve`` call use.

    ``plugin_manager`` if given; else a manager with the default set plus
    ``plugins`` (one per distinct list, shared with the sans-I/O protocols
    given the same list); else the process-wide default.
    """
    if plugin_manager is not None:
        return plugin_manager
    if plugins:
        from ._protocol import _manager_for

        return _manager_for(plugins)
    return default_manager()


def adjust_config(config: Config, kind: str, given: Mapping[str, Any], merged: dict[str, Any]) -> None:
    """Apply the I/O layers' rules to the keyword arguments ``config`` gives a consumer.

    * on clients, the file's ``tls`` section applies to ``wss://`` URIs only;
    * for servers, a location given in code (``host``/``port``, or a socket
      or Unix path) wins over the file's; a file's ``server.unix`` wins over
      the file's ``host``/``port``; otherwise ``host`` and ``port`` not given
      in code are the configuration's (default ``127.0.0.1:8765``).

    Args:
        config: the loaded configuration.
        kind: the consumer kind.
        given: the arguments passed in the call, by name.
        merged: the keyword arguments the consumer will get; edited in place.
    """
    uri = merged.get("uri", given.get("uri"))
    if "ssl" in merged and "ssl" not in given and isinstance(uri, str) and not uri.lower().startswith("wss:"):
        del merged["ssl"]  # the file's TLS settings apply to wss:// URIs only
    if kind.endswith("_server"):
        _adjust_location(config, given, merged)


def _adjust_location(config: Config, given: Mapping[str, Any], merged: dict[str, Any]) -> None:
    """Where a server listens: code first, then the file's ``server.unix``, then its host and port."""
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


def resolve_logger(
    logger: logging.Logger | logging.LoggerAdapter[Any] | str | None, default: str
) -> logging.Logger | logging.LoggerAdapter[Any]:
    """Return the logger the ``logger`` option names: itself, the logger of that name, or ``default``'s.

    Each connection then wraps it in an adapter carrying its id.

    Args:
        logger: a logger, an adapter, a logger name, or ``None``.
        default: the logger name used when ``logger`` is ``None``.
    """
    if logger is None:
        return logging.getLogger(default)
    if isinstance(logger, str):
        return logging.getLogger(logger)
    return logger


@dataclass(frozen=True)
class ConnectionOptions:
    """The options every connection of a consumer gets, for its protocol and its I/O object.

    Built once per ``connect`` or ``serve`` call; each connection then
    builds its own protocol from :meth:`protocol_kwargs` and its I/O object
    from :meth:`connection_kwargs`.

    Attributes:
        extensions: the extension factories, or ``None`` for those the
            plugins of :attr:`plugin_manager` provide.
        plugin_manager: the connections' plugin manager (:func:`resolve_manager`).
    """

    extensions: list[Any] | None
    subprotocols: Sequence[str] | None
    max_size: int | None
    max_fragment_size: int | None
    limits: HTTPLimits | None
    plugin_manager: PluginManager
    open_timeout: float | None
    close_timeout: float | None
    ping_interval: float | None
    ping_timeout: float | None
    max_queue: int | None
    write_limit: int
    spec: StateSpec | None = None

    @classmethod
    def build(
        cls,
        *,
        extensions: Sequence[Any] | None,
        subprotocols: Sequence[str] | None,
        max_size: int | None,
        max_fragment_size: int | None,
        limits: HTTPLimits | None,
        plugin_manager: PluginManager,
        open_timeout: float | None,
        close_timeout: float | None,
        ping_interval: float | None,
        ping_timeout: float | None,
        max_queue: int | None,
        write_limit: int,
        spec: str | os.PathLike[str] | StateSpec | None = None,
    ) -> ConnectionOptions:
        """Gather the options of a ``connect``/``serve`` call.

        Args:
            extensions: the extension factories (after the layer applied its
                own rules to them), or ``None`` for the plugins'.
            subprotocols: as for ``connect``/``serve``.
            max_size: as for ``connect``/``serve``.
            max_fragment_size: as for ``connect``/``serve``.
            limits: as for ``connect``/``serve``.
            plugin_manager: the manager :func:`resolve_manager` chose.
            open_timeout: as for ``connect``/``serve``.
            close_timeout: as for ``connect``/``serve``.
            ping_interval: as for ``connect``/``serve``.
            ping_timeout: as for ``connect``/``serve``.
            max_queue: as for ``connect``/``serve``.
            write_limit: as for ``connect``/``serve``.
            spec: as for ``connect``/``serve``; a path is loaded (and
                validated) here, once.

        Raises:
            ConfigError: for an invalid ``spec``.
        """
        return cls(
            None if extensions is None else list(extensions), subprotocols, max_size, max_fragment_size, limits,
            plugin_manager, open_timeout, close_timeout, ping_interval, ping_timeout, max_queue, write_limit,
            spec if spec is None or isinstance(spec, StateSpec) else load_spec(spec),
        )

    def protocol_kwargs(self, logger: Any) -> dict[str, Any]:
        """The keyword arguments of a new :class:`~wskit.client.ClientProtocol` or
        :class:`~wskit.server.ServerProtocol` that both sides share.

        Args:
            logger: the connection's logger.
        """
        return {
            "logger": logger, "max_size": self.max_size,
            # A fresh list per connection: a protocol may keep it.
            "extensions": None if self.extensions is None else list(self.extensions),
            "subprotocols": self.subprotocols, "max_fragment_size": self.max_fragment_size,
            "limits": self.limits, "plugin_manager": self.plugin_manager, "spec": self.spec,
        }

    def connection_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of a new connection object of either layer (buffers and timers)."""
        return {
            "max_queue": self.max_queue, "write_limit": self.write_limit, "close_timeout": self.close_timeout,
            "ping_interval": self.ping_interval, "ping_timeout": self.ping_timeout,
        }


def _default_process_exception(exc: Exception) -> Exception | None:
    return None if is_transient(exc) else exc


@dataclass(frozen=True)
class ClientOptions:
    """What a client of either layer decides the same way: where to connect and through what.

    Built once per ``connect`` call (:meth:`build`); each attempt asks it
    for the proxy (:meth:`proxy_for`), the TLS context (:meth:`ssl_for`),
    the next URI after a redirect (:meth:`follow`) and, when reconnecting,
    whether and when to try again (:meth:`retry`, :meth:`delays`).

    Attributes:
        uri: the URI to open, with the ``auth`` credentials put in it.
        extra_headers: the extra request headers (``extra_headers`` or its
            alias ``additional_headers``).
    """

    uri: str
    extra_headers: Any
    proxy: str | Literal[True] | None
    proxy_ssl: ssl_module.SSLContext | None
    ssl: ssl_module.SSLContext | None
    server_hostname: str | None
    max_redirects: int
    backoff: tuple[float, float, float, float]
    process_exception: Callable[[Exception], Exception | None]

    @classmethod
    def build(
        cls,
        uri: str,
        *,
        extra_headers: Any,
        additional_headers: Any,
        auth: tuple[str, str] | None,
        proxy: str | Literal[True] | None,
        proxy_ssl: ssl_module.SSLContext | None,
        ssl: ssl_module.SSLContext | None,
        server_hostname: str | None,
        max_redirects: int,
        backoff_initial: float,
        backoff_factor: float,
        backoff_max: float,
        backoff_jitter: float,
        process_exception: Callable[[Exception], Exception | None] | None,
    ) -> ClientOptions:
        """Check and gather the client options of a ``connect`` call (see ``connect`` for each).

        Raises:
            InvalidURI: ``uri`` or ``proxy`` is not a valid URI.
            TypeError: both ``extra_headers`` and ``additional_headers``.
            ValueError: ``ssl`` for a ``ws://`` URI, ``proxy_ssl`` without
                an ``https://`` proxy, a bad backoff option.
        """
        if additional_headers is not None:
            if extra_headers is not None:
                raise TypeError("connect() got both extra_headers and additional_headers: they are the same "
                                "option (additional_headers is python-websockets' name); pass one")
            extra_headers = additional_headers
        if auth is not None:
            uri = with_credentials(uri, auth)
        wsuri = parse_uri(uri)
        if ssl is not None and not wsuri.secure:
            raise ValueError(f"ssl= was given for the non-TLS URI {strip_credentials(uri)!r}: use wss://")
        if isinstance(proxy, str):
            parsed = parse_proxy(proxy)
            if proxy_ssl is not None and not parsed.secure:
                raise ValueError(f"proxy_ssl= was given for the proxy {parsed}: it is for https:// proxies")
        check_backoff(backoff_initial, backoff_factor, backoff_max, backoff_jitter)
        return cls(uri, extra_headers, proxy, proxy_ssl, ssl, server_hostname, max_redirects,
                   (backoff_initial, backoff_factor, backoff_max, backoff_jitter),
                   process_exception or _default_process_exception)

    def proxy_for(self, wsuri: WSURI) -> ProxyURL | None:
        """The proxy to reach ``wsuri`` through: the ``proxy`` option, else the environment's (read now)."""
        proxy = self.proxy
        if proxy is True:
            proxy = proxy_from_environment(wsuri, os.environ)
        return None if proxy is None else parse_proxy(proxy)

    def ssl_for(self, wsuri: WSURI) -> ssl_module.SSLContext | None:
        """The TLS context for ``wsuri``: ``ssl``, or the default one for ``wss://``, ``None`` for ``ws://``."""
        if not wsuri.secure:
            return None
        return self.ssl if self.ssl is not None else ssl_module.create_default_context()

    def server_hostname_for(self, wsuri: WSURI) -> str:
        """The TLS server name for ``wsuri``: ``server_hostname`` if given, else the URI's host."""
        return self.server_hostname or wsuri.host

    def proxy_ssl_for(self, proxy: ProxyURL) -> ssl_module.SSLContext:
        """The TLS context for an ``https://`` proxy: ``proxy_ssl`` or the default one."""
        return self.proxy_ssl if self.proxy_ssl is not None else ssl_module.create_default_context()

    def follow(self, uri: str, exc: InvalidHandshake, redirects: int) -> str:
        """Return where to go after ``uri`` failed with ``exc``, or raise ``exc`` (or a redirect error).

        Args:
            uri: the URI just requested.
            exc: how its handshake failed.
            redirects: how many redirects were already followed.

        Raises:
            InvalidHandshake: ``exc`` when it is not a redirect (or
                ``max_redirects`` is 0); a
                :class:`~wskit.exceptions.RedirectError` for a redirect
                that cannot be followed or one too many.
        """
        response = exc.response
        if self.max_redirects == 0 or response is None or isinstance(exc, ProxyError):
            raise exc
        target = redirect_target(uri, response)
        if target is None:
            raise exc
        if redirects >= self.max_redirects:
            raise too_many_redirects(uri, self.max_redirects, response) from exc
        return target

    def retry(self, exc: Exception) -> Exception | None:
        """``None`` to try again after ``exc``, or the exception to raise (``process_exception``'s answer)."""
        try:
            return self.process_exception(exc)
        except Exception as raised:
            return raised

    def delays(self) -> Iterator[float]:
        """The backoff delays of one series of failed attempts."""
        return backoff_delays(*self.backoff)


def describe_failure(exc: BaseException) -> str:
    """One line telling how an attempt failed (for the retry log)."""
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def socks_proxy(layer: str) -> Any:
    """Import python-socks' proxy class for ``layer`` (``"asyncio"`` or ``"sync"``).

    Raises:
        ImportError: python-socks is missing; the message names the extra
            to install.
    """
    try:
        if layer == "asyncio":
            from python_socks.async_.asyncio import Proxy as AsyncioProxy

            return AsyncioProxy
        from python_socks.sync import Proxy as SyncProxy

        return SyncProxy
    except ImportError as exc:
        raise ImportError("SOCKS proxies need the python-socks package: pip install 'wskit[socks]'") from exc


def socks_arguments(proxy: ProxyURL) -> dict[str, Any]:
    """The arguments of python-socks' ``Proxy(...)`` for ``proxy``."""
    from python_socks import ProxyType

    kind = ProxyType.SOCKS5 if proxy.scheme.startswith("socks5") else ProxyType.SOCKS4
    user, password = proxy.user_info if proxy.user_info is not None else (None, None)
    return {"proxy_type": kind, "host": proxy.host, "port": proxy.port, "username": user, "password": password,
            "rdns": proxy.remote_dns}


def proxy_error(proxy: ProxyURL, exc: BaseException, target: str) -> ProxyError:
    """A :class:`~wskit.exceptions.ProxyError` naming ``proxy`` for ``exc``, a failure reaching or using it.

    Raise it ``from exc``: when ``exc`` is an :class:`OSError` (the proxy
    could not be reached), a reconnecting client tries again.
    """
    return ProxyError(f"proxy {proxy} could not be reached to open a tunnel to {target}: {exc}", proxy=str(proxy))


def socks_failure(proxy: ProxyURL, exc: BaseException, target: str) -> ProxyError | None:
    """A :class:`~wskit.exceptions.ProxyError` naming ``proxy`` for one of python-socks' errors; ``None`` for others.

    Raise it ``from exc``: python-socks' connection errors are
    :class:`OSError` (a reconnecting client tries again), its refusals not.
    """
    if not type(exc).__module__.startswith("python_socks"):
        return None
    return ProxyError(f"proxy {proxy} failed to open a tunnel to {target}: {exc}", proxy=str(proxy))



def listening_address(sock: Any) -> str:
    """A listening socket's address as a server logs it: ``host:port``, ``[v6]:port`` or a path."""
    name = sock.getsockname()
    if isinstance(name, tuple):
        host, port = name[0], name[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(name)


def remove_unix_socket(path: str | None, logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    """Remove the Unix socket file a server listened on (if it is still a socket)."""
    if path is None:
        return
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("could not remove the Unix socket %s: %s", path, exc)

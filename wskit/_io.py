"""Options and helpers shared by the asyncio and sync layers.

Both layers take the same options with the same meaning; what they share
beyond the signatures (which stay explicit in each ``connect``/``serve``,
for users and type checkers) lives here: how ``config=`` combines with the
call (:func:`with_config`), how ``compression`` and ``extensions`` become
the core's factory list (:func:`extension_factories`), and the options each
connection passes to its sans-I/O protocol and to its I/O object
(:class:`ConnectionOptions`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from .config import accepts_config
from .protocol import Side
from .statemachine import StateSpec, load_spec

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config
    from .http11 import HTTPLimits
    from .plugin import PluginManager

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["ConnectionOptions", "adjust_config", "extension_factories", "resolve_logger", "with_config"]

# Arguments that say where a server listens (or which socket a client uses) in code.
_LOCATION_IN_CODE = frozenset({"sock", "unix", "_unix", "_unix_path"})


def with_config(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate an I/O consumer (``connect``, ``serve``) so that it takes ``config=``.

    :func:`wskit.config.accepts_config` with the I/O layers' rules
    (:func:`adjust_config`): the arguments actually passed in the call,
    positionally or by keyword, win over the file even when equal to their
    default; every other key the file sets fills in.

    Args:
        kind: ``"asyncio_client"``, ``"asyncio_server"``, ``"sync_client"``
            or ``"sync_server"`` (a :data:`wskit.config.KINDS` value).
    """
    return accepts_config(kind, adjust=adjust_config)


def adjust_config(config: Config, kind: str, given: Mapping[str, Any], merged: dict[str, Any]) -> None:
    """Apply the I/O layers' rules to the keyword arguments ``config`` gives a consumer.

    * the file's ``compression`` section is the complete extension list
      (``compression`` is set to ``None`` so the layer adds nothing), unless
      ``compression`` or ``extensions`` was given in code;
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
    if "extensions" in merged and "extensions" not in given and "compression" not in given:
        merged["compression"] = None  # the file's factories are the complete list
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


def extension_factories(compression: str | None, extensions: Sequence[Any] | None, side: Side) -> list[Any] | None:
    """Map the ``compression`` and ``extensions`` options to the core's ``extensions`` argument.

    The rules of both layers (those of python-websockets):

    * ``compression="deflate"`` adds a permessage-deflate factory (RFC 7692,
      default settings) at the end of ``extensions``, unless a factory of
      that name is already there;
    * ``compression="deflate"`` with ``extensions=None`` gives ``None``:
      "what the plugins provide" (permessage-deflate by default; a plugin
      manager that disables the ``permessage-deflate`` plugin turns it off);
    * ``compression=None`` adds nothing: ``extensions`` as given (``None``
      and ``[]`` both negotiate no extension).

    Args:
        compression: ``"deflate"`` or ``None``.
        extensions: extension factories, in preference order.
        side: which permessage-deflate factory to add.

    Returns:
        A new list of factories, or ``None`` for the plugins' factories.

    Raises:
        ValueError: for an unknown ``compression`` value.
    """
    if compression is not None and compression != "deflate":
        raise ValueError(f"compression must be 'deflate' or None, got {compression!r}")
    if compression is None or extensions is None:
        return None if compression is not None else list(extensions or ())
    factories = list(extensions)
    if not any(getattr(f, "name", None) == "permessage-deflate" for f in factories):
        from .extensions import permessage_deflate as pmd

        factories.append(pmd.ClientPerMessageDeflateFactory() if side is Side.CLIENT
                         else pmd.ServerPerMessageDeflateFactory())
    return factories


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

    Built once per ``connect`` or ``serve`` call (so a bad ``compression``
    fails there, not at connection time); each connection then builds its
    own protocol from :meth:`protocol_kwargs` and its I/O object from
    :meth:`connection_kwargs`.

    Attributes:
        extensions: the factories (see :func:`extension_factories`).
    """

    extensions: list[Any] | None
    subprotocols: Sequence[str] | None
    max_size: int | None
    max_fragment_size: int | None
    limits: HTTPLimits | None
    plugins: Sequence[object] | None
    plugin_manager: PluginManager | None
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
        side: Side,
        *,
        compression: str | None,
        extensions: Sequence[Any] | None,
        subprotocols: Sequence[str] | None,
        max_size: int | None,
        max_fragment_size: int | None,
        limits: HTTPLimits | None,
        plugins: Sequence[object] | None,
        plugin_manager: PluginManager | None,
        open_timeout: float | None,
        close_timeout: float | None,
        ping_interval: float | None,
        ping_timeout: float | None,
        max_queue: int | None,
        write_limit: int,
        spec: str | os.PathLike[str] | StateSpec | None = None,
    ) -> ConnectionOptions:
        """Check the options and build the extension factories once.

        Args:
            side: the consumer's side.
            compression: see :func:`extension_factories`.
            extensions: see :func:`extension_factories`.
            subprotocols: as for ``connect``/``serve``.
            max_size: as for ``connect``/``serve``.
            max_fragment_size: as for ``connect``/``serve``.
            limits: as for ``connect``/``serve``.
            plugins: as for ``connect``/``serve``.
            plugin_manager: as for ``connect``/``serve``.
            open_timeout: as for ``connect``/``serve``.
            close_timeout: as for ``connect``/``serve``.
            ping_interval: as for ``connect``/``serve``.
            ping_timeout: as for ``connect``/``serve``.
            max_queue: as for ``connect``/``serve``.
            write_limit: as for ``connect``/``serve``.
            spec: as for ``connect``/``serve``; a path is loaded (and
                validated) here, once.

        Raises:
            ValueError: for an unknown ``compression`` value.
            ConfigError: for an invalid ``spec``.
        """
        return cls(
            extension_factories(compression, extensions, side), subprotocols, max_size, max_fragment_size,
            limits, plugins, plugin_manager, open_timeout, close_timeout, ping_interval, ping_timeout,
            max_queue, write_limit, spec if spec is None or isinstance(spec, StateSpec) else load_spec(spec),
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
            "limits": self.limits, "plugins": self.plugins, "plugin_manager": self.plugin_manager,
            "spec": self.spec,
        }

    def connection_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of a new connection object of either layer (buffers and timers)."""
        return {
            "max_queue": self.max_queue, "write_limit": self.write_limit, "close_timeout": self.close_timeout,
            "ping_interval": self.ping_interval, "ping_timeout": self.ping_timeout,
        }

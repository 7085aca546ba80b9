"""YAML configuration for clients and servers.

One YAML file configures a client or a server: size limits, HTTP limits of
the opening handshake, plugins, timeouts, where to listen or connect, TLS
files, and the sections plugins declare. wskit's own keys are one table, :data:`SCHEMA`; each
plugin adds its section through the ``wskit_add_config`` hook
(:class:`ConfigSchema`). Everything else derives from these declarations:
validation, the effective settings that ``wskit config check`` prints, the
keyword arguments of each consumer (:func:`merge_options`) and the
reference page ``docs/configuration.md`` (:func:`reference_markdown`). The
values of a plugin's section reach the plugin through the
:class:`~wskit.plugin.PluginManager` the file describes
(:meth:`Config.plugin_manager`): its extension factory hooks receive them
as ``options[section]``.

Loading is ``yaml.safe_load``-safe and stricter: the file is *composed*
with PyYAML's ``SafeLoader`` (which builds no objects) so that every key
keeps its line number, and only plain YAML values are accepted; any other
tag (``!!python/object``, ``!custom``...) is an error naming its line.

Every problem found is reported, not just the first, in one
:class:`~wskit.exceptions.ConfigError` whose ``errors`` read
``FILE:LINE: key.path: message``.

Example:
    >>> from wskit.config import loads, merge_options
    >>> config = loads("max_size: 65536\\nsubprotocols: [chat]\\n")
    >>> merge_options(config, "server_protocol", {})
    {'max_size': 65536, 'subprotocols': ['chat']}
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, ParamSpec, TypeVar

import yaml

from ._suggest import closest
from .configschema import KINDS, ConfigSchema, Key, PluginConfig, SectionSchema
from .defaults import CLOSE_TIMEOUT, MAX_QUEUE, MAX_SIZE, OPEN_TIMEOUT, PING_INTERVAL, PING_TIMEOUT, WRITE_LIMIT
from .exceptions import ConfigError, InvalidURI, PluginError

if TYPE_CHECKING:
    import ssl

    from .plugin import PluginManager

__all__ = [
    "Config",
    "Section",
    "Key",
    "ConfigSchema",
    "SectionSchema",
    "PluginConfig",
    "SCHEMA",
    "KINDS",
    "load",
    "loads",
    "from_dict",
    "merge_options",
    "accepts_config",
    "reference_markdown",
]

P = ParamSpec("P")
R = TypeVar("R")

# -- consumers -----------------------------------------------------------------

"""The consumers :func:`merge_options` builds keyword arguments for."""

_CLIENTS = frozenset({"client_protocol", "asyncio_client", "sync_client"})
_SERVERS = frozenset({"server_protocol", "asyncio_server", "sync_server"})
_IO = frozenset({"asyncio_client", "asyncio_server", "sync_client", "sync_server"})
_ALL = _CLIENTS | _SERVERS
_IO_CLIENTS = _IO & _CLIENTS
_IO_SERVERS = _IO & _SERVERS


# -- the schema ----------------------------------------------------------------


SECTIONS: dict[str, str] = {
    "handshake": "Limits on the HTTP/1.1 opening handshake (requests a server parses, responses a client parses). "
    "A request over a limit is answered with 431 (or 400).",
    "plugins": "Which pluggy plugins the protocols use. Built-in plugins are registered by name; third-party "
    "plugins come from the `wskit` entry-point group. Names are checked against what is installed.",
    "timeouts": "Timeouts of the asyncio and sync layers, in seconds; null disables one.",
    "server": "Where a server listens.",
    "client": "Where a client connects.",
    "tls": "TLS files. Relative paths are relative to the configuration file. A server needs `certfile` "
    "(and `keyfile` unless the certificate file holds the key); `cafile` on a server requires client "
    "certificates signed by it. On a client, `cafile` replaces the system's trusted certificates and "
    "`certfile` is a client certificate.",
}
"""Sections and their description, in the order of the reference page."""

_F = frozenset

SCHEMA: tuple[Key, ...] = (
    Key("max_size", "int", MAX_SIZE, "Largest message received, in bytes, after extensions decoded it "
        "(a larger one fails the connection with 1009). null: no limit.", _ALL, nullable=True, min=0),
    Key("max_fragment_size", "int", None, "Split outgoing messages into frames of at most this many "
        "payload bytes. null: one frame per message.", _ALL, nullable=True, min=1),
    Key("max_queue", "int", MAX_QUEUE, "Incoming messages buffered before reading from the socket pauses.", _IO, min=1),
    Key("write_limit", "int", WRITE_LIMIT, "High-water mark of the write buffer, in bytes: sending waits above it.",
        _IO, min=0),
    Key("subprotocols", "tokens", (), "Subprotocols offered (client) or supported (server), in preference "
        "order (RFC 6455 §1.9).", _ALL),
    Key("origin", "str", None, "The `Origin` header a client sends (RFC 6455 §4.1).", _CLIENTS, nullable=True),
    Key("origins", "origins", None, "Origins a server accepts (RFC 6455 §10.2); a null item accepts requests "
        "without Origin. null: accept any.", _SERVERS, nullable=True),
    Key("handshake.max_line", "int", 8192, "Longest request/status line or header line, in bytes.", _ALL, min=1),
    Key("handshake.max_headers", "int", 128, "Most header lines.", _ALL, min=1),
    Key("handshake.max_header_bytes", "int", 65536, "Largest head (start line and header lines), in bytes.",
        _ALL, min=1),
    Key("handshake.max_body", "int", 65536, "Largest body of an HTTP error response a client keeps, in bytes.",
        _ALL, min=1),
    Key("plugins.enable", "builtin_plugins", (), "Optional built-in plugins to turn on (`logging`: frame "
        "logging). Built-ins that are on by default (`permessage-deflate`) need no entry.", _ALL),
    Key("plugins.disable", "plugins", (), "Plugins (built-in or from entry points) to leave out.", _ALL),
    Key("plugins.entry_points", "bool", True, "Load third-party plugins from the `wskit` entry-point group "
        "(unless WSKIT_DISABLE_PLUGIN_AUTOLOAD is set).", _ALL),
    Key("timeouts.open", "number", OPEN_TIMEOUT, "Time allowed for the opening handshake.", _IO, nullable=True,
        min=0, exclusive_min=True),
    Key("timeouts.close", "number", CLOSE_TIMEOUT, "Time allowed for the closing handshake and the TCP close.", _IO,
        nullable=True, min=0, exclusive_min=True),
    Key("timeouts.ping_interval", "number", PING_INTERVAL, "Send a keepalive ping this often.", _IO, nullable=True,
        min=0, exclusive_min=True),
    Key("timeouts.ping_timeout", "number", PING_TIMEOUT, "Fail the connection with 1011 when a keepalive ping gets no "
        "pong within this time.", _IO, nullable=True, min=0, exclusive_min=True),
    Key("server.host", "str", "127.0.0.1", "Address to listen on.", _IO_SERVERS, nullable=True),
    Key("server.port", "int", 8765, "TCP port to listen on (0: any free port).", _IO_SERVERS, min=0, max=65535),
    Key("server.unix", "path", None, "Listen on this Unix socket instead of host and port.", _IO_SERVERS,
        nullable=True),
    Key("server.reuse_port", "bool", False, "Set SO_REUSEPORT so that several processes share the port.",
        _IO_SERVERS),
    Key("client.uri", "uri", None, "The URI to connect to (RFC 6455 §3).", _CLIENTS, nullable=True),
    Key("tls.certfile", "file", None, "Certificate chain in PEM format.", _IO, nullable=True),
    Key("tls.keyfile", "file", None, "Private key in PEM format.", _IO, nullable=True),
    Key("tls.cafile", "file", None, "Certificates of the authorities to trust, in PEM format.", _IO,
        nullable=True),
)
"""Every configuration key, in the order of the reference page."""

_BY_PATH: dict[str, Key] = {k.path: k for k in SCHEMA}
_TOP_KEYS = [k.path for k in SCHEMA if "." not in k.path] + list(SECTIONS)
_SECTION_KEYS: dict[str, list[str]] = {s: [k.name for k in SCHEMA if k.path.startswith(s + ".")] for s in SECTIONS}


# -- plugin sections: declared through the wskit_add_config hook ------------------


class _Catalog(NamedTuple):
    """Every plugin section that can be configured, and where each plugin comes from."""

    sections: dict[str, SectionSchema]
    origins: dict[str, str]  # plugin name -> "default", "optional" or "entry point"
    configure: list[tuple[str, Callable[..., object], tuple[str, ...]]]  # wskit_configure implementations


_catalogs: dict[tuple[object, ...], _Catalog] = {}
_catalog_lock = threading.Lock()


def _catalog(*, entry_points: bool = True) -> _Catalog:
    """Ask every built-in plugin and (with ``entry_points``) every entry-point plugin for its sections.

    Cached per set of installed entry points. A plugin whose entry point
    cannot be loaded declares nothing here; building a plugin manager that
    uses it reports the error.

    Raises:
        PluginError: if a plugin's declaration is invalid or two plugins
            declare the same section.
    """
    from importlib.metadata import entry_points as metadata_entry_points

    from .hookspecs import PROJECT
    from .plugin import AUTOLOAD_ENV, PluginManager
    from .plugins import BUILTIN_MODULES, OPTIONAL_MODULES

    eps = []
    if entry_points and not os.environ.get(AUTOLOAD_ENV):
        eps = [ep for ep in metadata_entry_points(group=PROJECT) if ep.name not in BUILTIN_MODULES
               and ep.name not in OPTIONAL_MODULES]
    cache_key = tuple((ep.name, ep.value) for ep in eps)
    with _catalog_lock:
        if cache_key in _catalogs:
            return _catalogs[cache_key]
        manager = PluginManager(enable=list(OPTIONAL_MODULES), entry_points=False)
        origins = {name: "default" for name in BUILTIN_MODULES}
        origins.update((name, "optional") for name in OPTIONAL_MODULES)
        for ep in eps:
            try:
                manager.register(ep.load(), name=ep.name)
            except Exception:  # a broken plugin: the manager that loads it for real says why
                continue
            origins[ep.name] = "entry point"
        sections: dict[str, SectionSchema] = {}
        for impl in reversed(manager.pm.hook.wskit_add_config.get_hookimpls()):
            schema = ConfigSchema(impl.plugin_name, reserved=set(_BY_PATH) | set(SECTIONS))
            try:
                impl.function(*[{"schema": schema}[a] for a in impl.argnames])
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(f"plugin {impl.plugin_name!r} raised {type(exc).__name__} in "
                                  f"wskit_add_config: {exc}") from exc
            for section in schema.sections:
                other = sections.get(section.name)
                if other is not None:
                    raise PluginError(f"plugins {other.plugin!r} and {section.plugin!r} both declare the "
                                      f"configuration section {section.name!r}")
                sections[section.name] = section
        configure = [(impl.plugin_name, impl.function, tuple(impl.argnames))
                     for impl in reversed(manager.pm.hook.wskit_configure.get_hookimpls())]
        catalog = _Catalog(sections, origins, configure)
        _catalogs[cache_key] = catalog
        return catalog

# RFC 7230 §3.2.6: token = 1*tchar
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


# -- located values: what the YAML composer or a dict gives ----------------------


class _Item(NamedTuple):
    """A value with the line it was found on (``None`` for dicts)."""

    value: Any  # dict[str, tuple[int | None, _Item]] | list[_Item] | scalar
    line: int | None


_SAFE_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


def _tag_name(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag


class _Composer:
    """Turn a composed YAML node graph into :class:`_Item` trees, constructing
    scalars with PyYAML's safe constructor and rejecting every other tag."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        self.constructor = yaml.SafeLoader("")
        self.memo: dict[int, _Item] = {}  # aliases share nodes: convert each once
        self.active: set[int] = set()

    def err(self, line: int, path: str, message: str) -> None:
        self.errors.append(_fmt(self.source, line, path, message))

    def convert(self, node: yaml.Node, path: str) -> _Item:
        line = node.start_mark.line + 1
        key = id(node)
        if key in self.memo:
            return self.memo[key]
        if key in self.active:
            self.err(line, path, "recursive YAML alias")
            return _Item(None, line)
        self.active.add(key)
        try:
            item = self._convert(node, path, line)
        finally:
            self.active.discard(key)
        self.memo[key] = item
        return item

    def _convert(self, node: yaml.Node, path: str, line: int) -> _Item:
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
            out: dict[str, tuple[int | None, _Item]] = {}
            for knode, vnode in node.value:
                kline = knode.start_mark.line + 1
                kitem = self.convert(knode, path)
                name = kitem.value
                if not isinstance(name, str):
                    self.err(kline, path or "<top>", f"keys must be strings, got {_show(name)}")
                    continue
                sub = f"{path}.{name}" if path else name
                if name in out:
                    self.err(kline, sub, f"duplicate key (first set on line {out[name][0]})")
                    continue
                out[name] = (kline, self.convert(vnode, sub))
            return _Item(out, line)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
            return _Item([self.convert(n, f"{path}[{i}]") for i, n in enumerate(node.value)], line)
        if isinstance(node, yaml.ScalarNode) and node.tag in _SAFE_TAGS:
            try:
                return _Item(self.constructor.construct_object(node, deep=True), line)
            except Exception:  # PyYAML's constructors raise ValueError, KeyError... (2024-13-45, !!bool maybe)
                self.err(line, path or "<top>", f"{node.value!r} is not a valid {_tag_name(node.tag)} value")
                return _Item(None, line)
        self.err(line, path or "<top>", f"YAML tag {_tag_name(node.tag)} is not allowed (plain values only)")
        return _Item(_Rejected(), line)


class _Rejected:
    """Placeholder for a value already reported as an error."""


def _from_python(value: Any) -> _Item:
    if isinstance(value, Mapping):
        return _Item({k: (None, _from_python(v)) if isinstance(k, str) else (None, _Item(_BadKey(k), None))
                      for k, v in value.items()}, None)
    if isinstance(value, list | tuple):
        return _Item([_from_python(v) for v in value], None)
    return _Item(value, None)


class _BadKey:
    def __init__(self, key: object) -> None:
        self.key = key


def _fmt(source: str, line: int | None, path: str, message: str) -> str:
    where = f"{source}:{line}" if line is not None else source
    return f"{where}: {path}: {message}"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


# -- validation -------------------------------------------------------------------


class _Validator:
    def __init__(self, source: str, base: Path) -> None:
        self.source = source
        self.base = base
        self.errors: list[str] = []
        self.values: dict[str, Any] = {k.path: k.default for k in SCHEMA}
        self.explicit: set[str] = set()
        self.lines: dict[str, int | None] = {}
        self.keys: list[Key] = list(SCHEMA)
        self.by_path: dict[str, Key] = dict(_BY_PATH)
        self.active: list[str] = []  # the plugin sections this configuration has
        self._catalog: _Catalog | None = None

    @property
    def catalog(self) -> _Catalog:
        if self._catalog is None:
            self._catalog = _catalog()
        return self._catalog

    def err(self, line: int | None, path: str, message: str) -> None:
        self.errors.append(_fmt(self.source, line, path, message))

    def unknown(self, line: int | None, path: str, name: str, siblings: list[str]) -> None:
        close = closest(name, siblings)
        if close is not None:
            self.err(line, path, f"unknown key; did you mean '{close}'?")
            return
        every = [*SCHEMA, *(k for section in self.catalog.sections.values() for k in section.keys)]
        elsewhere = [k.path for k in every if k.name == name and k.path != path]
        if elsewhere:
            self.err(line, path, f"unknown key; did you mean '{elsewhere[0]}'?")
            return
        self.err(line, path, f"unknown key (valid keys: {', '.join(siblings)})")

    def run(self, root: _Item) -> None:
        if root.value is None:  # an empty file: every default
            self.plugin_sections([])
            return
        if not isinstance(root.value, dict):
            self.err(root.line, "<top>", f"expected a mapping of configuration keys, got {_show(root.value)}")
            return
        deferred: list[tuple[str, int | None, _Item]] = []
        for name, (kline, item) in root.value.items():
            if isinstance(item.value, _BadKey):
                self.err(kline, "<top>", f"keys must be strings, got {_show(item.value.key)}")
            elif name in SECTIONS:
                self.section(name, kline, item, _SECTION_KEYS[name])
            elif name in _BY_PATH:
                self.key(_BY_PATH[name], kline, item)
            else:  # a plugin's section: once `plugins` says which plugins are on
                deferred.append((name, kline, item))
        self.plugin_sections(deferred)
        self.cross_checks()
        if not self.errors:
            self.configure_plugins()

    def plugin_sections(self, items: list[tuple[str, int | None, _Item]]) -> None:
        sections = self.catalog.sections
        for declared in sections.values():
            if self.inactive(declared.plugin) is None:
                self.active.append(declared.name)
                self.keys += declared.keys
                for key in declared.keys:
                    self.by_path[key.path] = key
                    self.values[key.path] = key.default
        for name, kline, item in items:
            section = sections.get(name)
            if section is None:
                self.unknown(kline, name, name, _TOP_KEYS + list(sections))
            elif name in self.active:
                self.section(name, kline, item, [k.name for k in section.keys])
            else:
                self.contradiction(section, kline, item)

    def inactive(self, plugin: str) -> tuple[str, str] | None:
        """Why the configuration leaves ``plugin`` out (and which key says so), or ``None``."""
        if plugin in self.values["plugins.disable"]:
            return "turns off", "plugins.disable"
        origin = self.catalog.origins.get(plugin)
        if origin == "optional" and plugin not in self.values["plugins.enable"]:
            return "does not turn on (an optional plugin)", "plugins.enable"
        if origin == "entry point" and not self.values["plugins.entry_points"]:
            return "turns off (false: no entry-point plugins)", "plugins.entry_points"
        return None

    def contradiction(self, section: SectionSchema, kline: int | None, item: _Item) -> None:
        """A section of a plugin the file leaves out: fine if it turns the plugin off too, else an error."""
        has_switch = any(k.name == "enabled" and k.kind == "bool" for k in section.keys)
        value = item.value
        if has_switch:
            if value is False:
                return
            if isinstance(value, dict) and "enabled" in value and value["enabled"][1].value is False:
                return
        verb, key = self.inactive(section.plugin) or ("turns off", "plugins")
        said = self.lines.get(key)
        where = f" (line {said})" if said is not None else ""
        fix = f"remove the section, or set '{section.name}: false'" if has_switch else "remove the section"
        self.err(kline, section.name, f"configures the plugin {section.plugin!r}, which {key}{where} {verb}: "
                 f"{fix}")

    def section(self, section: str, kline: int | None, item: _Item, names: list[str]) -> None:
        value = item.value
        self.lines[section] = kline
        switch = self.by_path.get(f"{section}.enabled")
        if isinstance(value, bool) and switch is not None and switch.kind == "bool":  # `section: false`
            self.set(switch.path, value, item.line)
            return
        if value is None:  # `tls:` with nothing under it
            return
        if not isinstance(value, dict):
            extra = " or true/false" if switch is not None else ""
            self.err(item.line, section, f"expected a mapping{extra}, got {_show(value)}")
            return
        for name, (line, sub) in value.items():
            path = f"{section}.{name}"
            if isinstance(sub.value, _BadKey):
                self.err(line, section, f"keys must be strings, got {_show(sub.value.key)}")
            elif path in self.by_path:
                self.key(self.by_path[path], line, sub)
            else:
                self.unknown(line, path, name, names)

    def configure_plugins(self) -> None:
        """Call ``wskit_configure`` of the plugins whose sections this configuration has."""
        plugins = {self.catalog.sections[name].plugin for name in self.active}
        for plugin, function, argnames in self.catalog.configure:
            if plugin not in plugins:
                continue
            view = PluginConfig(plugin, self.source, self.values, self.explicit, self.lines, self.err)
            try:
                function(*[{"config": view}[a] for a in argnames])
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(f"plugin {plugin!r} raised {type(exc).__name__} in wskit_configure: {exc}") from exc

    def set(self, path: str, value: Any, line: int | None) -> None:
        self.values[path] = value
        self.explicit.add(path)
        self.lines[path] = line

    def key(self, key: Key, kline: int | None, item: _Item) -> None:
        value = item.value
        line = item.line if item.line is not None else kline
        if isinstance(value, _Rejected):
            return
        if value is None:
            if key.nullable:
                self.set(key.path, None, line)
            else:
                self.bad(key, line, value)
            return
        checked = getattr(self, f"check_{key.kind}")(key, line, item)
        if checked is not _INVALID and key.check is not None:
            try:
                key.check(checked)
            except ValueError as exc:
                self.err(line, key.path, str(exc))
                return
        if checked is not _INVALID:
            self.set(key.path, checked, line)

    def bad(self, key: Key, line: int | None, value: Any) -> object:
        self.err(line, key.path, f"expected {key.expected()}, got {_show(value)}")
        return _INVALID

    def check_int(self, key: Key, line: int | None, item: _Item) -> object:
        v = item.value
        if isinstance(v, bool) or not isinstance(v, int):
            return self.bad(key, line, v)
        return self._range(key, line, v)

    def check_number(self, key: Key, line: int | None, item: _Item) -> object:
        v = item.value
        if isinstance(v, bool) or not isinstance(v, int | float) or v != v:  # v != v: NaN
            return self.bad(key, line, v)
        return self._range(key, line, v)

    def _range(self, key: Key, line: int | None, v: float) -> object:
        if key.min is not None and (v < key.min or (key.exclusive_min and v == key.min)):
            return self.bad(key, line, v)
        if key.max is not None and v > key.max:
            return self.bad(key, line, v)
        return v

    def check_bool(self, key: Key, line: int | None, item: _Item) -> object:
        return item.value if isinstance(item.value, bool) else self.bad(key, line, item.value)

    def check_str(self, key: Key, line: int | None, item: _Item) -> object:
        v = item.value
        if not isinstance(v, str):
            return self.bad(key, line, v)
        if key.path == "origin" and not _header_safe(v):
            self.err(line, key.path, f"an origin cannot contain whitespace or control characters, got {v!r}")
            return _INVALID
        return v

    def check_path(self, key: Key, line: int | None, item: _Item) -> object:
        v = item.value
        if not isinstance(v, str) or not v:
            return self.bad(key, line, v)
        return str(self.base / Path(v).expanduser())

    def check_file(self, key: Key, line: int | None, item: _Item) -> object:
        path = self.check_path(key, line, item)
        if path is _INVALID:
            return path
        if not Path(str(path)).is_file():
            self.err(line, key.path, f"file not found: {path}")
            return _INVALID
        return path

    def check_uri(self, key: Key, line: int | None, item: _Item) -> object:
        from .handshake import parse_uri

        v = item.value
        if not isinstance(v, str):
            return self.bad(key, line, v)
        try:
            parse_uri(v)
        except InvalidURI as exc:
            self.err(line, key.path, str(exc))
            return _INVALID
        return v

    def _items(self, key: Key, line: int | None, item: _Item) -> list[tuple[int | None, Any]] | None:
        if not isinstance(item.value, list):
            self.bad(key, line, item.value)
            return None
        return [(sub.line if sub.line is not None else line, sub.value) for sub in item.value]

    def check_strlist(self, key: Key, line: int | None, item: _Item) -> object:
        items = self._items(key, line, item)
        if items is None:
            return _INVALID
        ok = True
        for i, (sline, v) in enumerate(items):
            if not isinstance(v, str):
                self.err(sline, f"{key.path}[{i}]", f"expected a string, got {_show(v)}")
                ok = False
        return tuple(v for _, v in items) if ok else _INVALID

    def check_tokens(self, key: Key, line: int | None, item: _Item) -> object:
        values = self.check_strlist(key, line, item)
        if values is _INVALID:
            return values
        ok = True
        for i, sub in enumerate(item.value):
            if not _TOKEN.match(sub.value):
                self.err(sub.line if sub.line is not None else line, f"{key.path}[{i}]",
                         f"{sub.value!r} is not a valid token (RFC 7230 §3.2.6: letters, digits, !#$%&'*+-.^_`|~)")
                ok = False
        return values if ok else _INVALID

    def check_origins(self, key: Key, line: int | None, item: _Item) -> object:
        items = self._items(key, line, item)
        if items is None:
            return _INVALID
        ok = True
        for i, (sline, v) in enumerate(items):
            if v is not None and not isinstance(v, str):
                self.err(sline, f"{key.path}[{i}]", f"expected an origin string or null, got {_show(v)}")
                ok = False
            elif isinstance(v, str) and not _header_safe(v):
                self.err(sline, f"{key.path}[{i}]",
                         f"an origin cannot contain whitespace or control characters, got {v!r}")
                ok = False
        return tuple(v for _, v in items) if ok else _INVALID

    def check_plugins(self, key: Key, line: int | None, item: _Item) -> object:
        return self._names(key, line, item, builtin=False)

    def check_builtin_plugins(self, key: Key, line: int | None, item: _Item) -> object:
        return self._names(key, line, item, builtin=True)

    def _names(self, key: Key, line: int | None, item: _Item, *, builtin: bool) -> object:
        from .plugin import check_plugin_names  # the rule the command line applies too

        values = self.check_strlist(key, line, item)
        if values is _INVALID:
            return values
        ok = True
        for i, (sub, name) in enumerate(zip(item.value, values)):  # type: ignore[call-overload]
            try:
                check_plugin_names([name], builtin=builtin)
            except ConfigError as exc:
                self.err(sub.line if sub.line is not None else line, f"{key.path}[{i}]", exc.errors[0])
                ok = False
        return values if ok else _INVALID

    def cross_checks(self) -> None:
        v, e = self.values, self.explicit
        if "tls.keyfile" in e and v["tls.keyfile"] is not None and v["tls.certfile"] is None:
            self.err(self.lines["tls.keyfile"], "tls.keyfile", "a keyfile needs a certfile")


_INVALID = object()


def _header_safe(value: str) -> bool:
    return all(" " < c != "\x7f" for c in value)


# -- the Config object ----------------------------------------------------------


class Section:
    """A read-only view of one section of a :class:`Config` (``config.timeouts``).

    Keys are attributes (``config.timeouts.open``) and items
    (``config.timeouts["open"]``).
    """

    __slots__ = ("_name", "_values")

    def __init__(self, name: str, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"configuration section {self._name!r} has no key {name!r}") from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("configuration sections are read-only")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Section) and (self._name, self._values) == (other._name, other._values)

    def __hash__(self) -> int:
        return hash(self._name)

    def __repr__(self) -> str:
        return f"Section({self._name!r}, {self._values!r})"

    def as_dict(self) -> dict[str, Any]:
        """Return the section's values as a plain dict (tuples become lists)."""
        return {k: _plain(v) for k, v in self._values.items()}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class Config:
    """A validated configuration (immutable).

    Top-level keys and sections are attributes: ``config.max_size``,
    ``config.timeouts.open``, and the sections of the plugins the file
    leaves on (``config.<section>.<key>``). Every key has a value (the
    file's, or the default).

    Attributes:
        source: where the configuration came from (a path, ``"<string>"``,
            ``"<dict>"``).
        plugin_sections: the plugins' sections this configuration has
            (those of the plugins it leaves on), in reference-page order.
    """

    __slots__ = ("source", "plugin_sections", "_values", "_explicit", "_cache", "_lock")

    source: str
    plugin_sections: tuple[str, ...]

    def __init__(self, values: Mapping[str, Any], explicit: Iterable[str], source: str,
                 plugin_sections: Iterable[str] = ()) -> None:
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "plugin_sections", tuple(plugin_sections))
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_explicit", frozenset(explicit))
        object.__setattr__(self, "_cache", {})
        object.__setattr__(self, "_lock", threading.Lock())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in SECTIONS or name in self.plugin_sections:
            prefix = name + "."
            return Section(name, {p[len(prefix):]: v for p, v in self._values.items() if p.startswith(prefix)})
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"configuration has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config objects are read-only")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._values == other._values and self._explicit == other._explicit

    def __hash__(self) -> int:
        return hash(self._explicit)

    def __repr__(self) -> str:
        return f"<Config from {self.source}: {len(self._explicit)} keys set>"

    def get(self, path: str) -> Any:
        """Return the value of a dotted key path (``"timeouts.open"``).

        Raises:
            KeyError: if ``path`` is not a configuration key.
        """
        return self._values[path]

    def options_for(self, kind: str, given: Mapping[str, Any]) -> dict[str, Any]:
        """Return the keyword arguments this configuration gives one consumer.

        The sans-I/O protocol classes call it for their ``config=`` argument
        (:class:`wskit.client.ConfigSource`): they take any object with this
        method and never import the configuration layer.

        Args:
            kind: one of :data:`KINDS`.
            given: the arguments passed explicitly; they win over the file.

        Returns:
            ``merge_options(self, kind, given)``.
        """
        return merge_options(self, kind, given)

    def is_set(self, path: str) -> bool:
        """Return whether the configuration sets ``path`` itself (rather than
        leaving the default); ``path`` may also be a section name."""
        return path in self._explicit or any(p.startswith(path + ".") for p in self._explicit)

    def as_dict(self) -> dict[str, Any]:
        """Return the effective settings as plain data, in the file layout."""
        out: dict[str, Any] = {}
        for path, value in self._values.items():
            section, _, name = path.rpartition(".")
            target = out.setdefault(section, {}) if section else out
            target[name] = _plain(value)
        return out

    def plugin_options(self) -> dict[str, dict[str, Any]]:
        """Return the values of the plugins' sections, by section: what the plugins receive as ``options``."""
        return {name: getattr(self, name).as_dict() for name in self.plugin_sections}

    def _cached(self, key: Any, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = build()
            return self._cache[key]

    def plugin_manager(self, plugins: Iterable[object] = (),
                       switches: Mapping[str, bool] | None = None) -> PluginManager:
        """Return the :class:`~wskit.plugin.PluginManager` the file describes, built once per configuration.

        The ``plugins`` section says which plugins it registers; the values
        of the plugins' sections (:meth:`plugin_options`) are its
        ``options``, which the extension factory hooks receive.

        Args:
            plugins: plugin objects to register too (``plugins=[...]``
                given in code); one manager per distinct list.
            switches: ``{section: on}``: replaces the ``enabled`` key of
                these sections (a keyword argument named after a section,
                given in code to ``connect``/``serve``).
        """
        from .plugin import PluginManager

        extra = tuple(plugins)
        switched = tuple(sorted((switches or {}).items()))

        def build() -> PluginManager:
            options = self.plugin_options()
            for section, on in switched:
                options[section] = {**options[section], "enabled": on}
            return PluginManager(
                extra,
                enable=self._values["plugins.enable"],
                entry_points=self._values["plugins.entry_points"],
                disable=self._values["plugins.disable"],
                options=options,
            )

        # The key holds the objects themselves: an id is not reused while they live here.
        manager: PluginManager = self._cached(("plugin_manager", switched, *extra), build)
        return manager

    def ssl_context(self, side: str) -> ssl.SSLContext | None:
        """Return an :class:`ssl.SSLContext` built from the ``tls`` section,
        once per configuration and side, or ``None`` when no TLS file is set.

        Args:
            side: ``"client"`` or ``"server"``.

        Raises:
            ConfigError: if a server has no certificate, or a file cannot be
                loaded (not PEM, key not matching the certificate...).
        """
        if side not in ("client", "server"):
            raise ValueError(f"side must be 'client' or 'server', got {side!r}")
        certfile, keyfile, cafile = (self._values[f"tls.{n}"] for n in ("certfile", "keyfile", "cafile"))
        if certfile is None and cafile is None:
            return None

        def build() -> ssl.SSLContext:
            import ssl

            if side == "server":
                if certfile is None:
                    raise ConfigError(f"{self.source}: tls.certfile: a server needs a certificate")
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            else:
                context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            try:
                if certfile is not None:
                    what = "tls.certfile"
                    context.load_cert_chain(certfile, keyfile)
                if cafile is not None:
                    what = "tls.cafile"
                    context.load_verify_locations(cafile)
                    if side == "server":
                        context.verify_mode = ssl.CERT_REQUIRED
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(f"{self.source}: {what}: cannot load: {exc}") from None
            return context

        context: ssl.SSLContext = self._cached(f"ssl:{side}", build)
        return context


# -- loading --------------------------------------------------------------------


def load(path: str | Path) -> Config:
    """Load and validate a YAML configuration file.

    Relative paths in the file (``tls.*``, ``server.unix``) are relative to
    the file's directory.

    Args:
        path: the file.

    Returns:
        The :class:`Config`; its ``source`` is ``path`` as given.

    Raises:
        ConfigError: if the file cannot be read or is invalid; one
            ``FILE:LINE: key.path: message`` per problem.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the configuration: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: the configuration is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return _loads(text, source, Path(path).resolve().parent)


def loads(text: str, source: str = "<string>") -> Config:
    """Load and validate a YAML configuration from a string.

    Args:
        text: the YAML document.
        source: the name errors start with.

    Raises:
        ConfigError: if the text is not YAML or not a valid configuration.
    """
    return _loads(text, source, Path.cwd())


def _loads(text: str, source: str, base: Path) -> Config:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = exc.problem or exc.context or "syntax error"
        if exc.context and problem.startswith("but "):  # "expected a single document..., but found ..."
            problem = f"{exc.context}, {problem}"
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (it has no mark)
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(f"{source}:{line}: invalid YAML: character U+{char:04X} is not allowed in YAML text "
                          "(nor is any control character other than tab, line feed and carriage return)") from None
    errors: list[str] = []
    root = _Item(None, 1) if node is None else _Composer(source, errors).convert(node, "")
    return _build(root, source, base, errors)


def from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Validate a configuration given as Python data (as ``yaml.safe_load`` returns).

    Raises:
        ConfigError: as :func:`load`, without line numbers.
    """
    return _build(_from_python(data), source, Path.cwd(), [])


def _build(root: _Item, source: str, base: Path, errors: list[str]) -> Config:
    validator = _Validator(source, base)
    validator.errors.extend(errors)
    validator.run(root)
    if validator.errors:
        raise ConfigError(_sort_errors(validator.errors))
    return Config(validator.values, validator.explicit, source, validator.active)


def _sort_errors(errors: list[str]) -> list[str]:
    def line_of(message: str) -> int:
        m = re.match(r"[^\n]*?:(\d+): ", message)
        return int(m.group(1)) if m else 0

    return sorted(dict.fromkeys(errors), key=line_of)


# -- consumers -------------------------------------------------------------------


def merge_options(config: Config, kind: str, explicit: Mapping[str, Any]) -> dict[str, Any]:
    """Return the keyword arguments ``config`` gives one consumer, updated by ``explicit``.

    Only what the file sets is returned (the consumer's own defaults apply
    to the rest), so a file that says nothing about plugins leaves the
    shared plugin manager in place. Derived objects:

    * ``handshake`` → ``limits`` (an :class:`~wskit.http11.HTTPLimits`);
    * ``plugins`` and the plugins' sections →
      ``plugin_manager`` (built once per configuration, with the sections'
      values as its ``options``; with ``plugins=[...]`` given in code, a
      manager that registers them too; a keyword argument named after a
      section with an ``enabled`` key, given in code, sets that key: ``None``
      or ``False`` turns the plugin's section off, anything else on);
    * ``tls`` → ``ssl`` (an :class:`ssl.SSLContext`, I/O kinds only);
    * ``timeouts.X`` → ``X_timeout`` / ``ping_interval`` / ``ping_timeout``;
    * ``server.*`` → ``host``, ``port``, ``unix``, ``reuse_port``; ``client.uri`` → ``uri``.

    Args:
        config: a loaded configuration.
        kind: one of :data:`KINDS`.
        explicit: keyword arguments given in code; they override the file.

    Raises:
        ValueError: for an unknown ``kind``.
        ConfigError: if TLS files cannot be loaded.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown consumer kind {kind!r} (expected one of {', '.join(KINDS)})")
    side = "client" if kind in _CLIENTS else "server"
    opts: dict[str, Any] = {}

    def copy(path: str, kwarg: str) -> None:
        if path in config._explicit and kwarg not in explicit:
            opts[kwarg] = _plain(config.get(path))

    copy("max_size", "max_size")
    copy("max_fragment_size", "max_fragment_size")
    copy("subprotocols", "subprotocols")
    if config.is_set("handshake") and "limits" not in explicit:
        from .http11 import HTTPLimits

        opts["limits"] = HTTPLimits(**config.handshake.as_dict())
    configures_plugins = config.is_set("plugins") or any(config.is_set(s) for s in config.plugin_sections)
    if configures_plugins and "plugin_manager" not in explicit:
        # A keyword named after a plugin's section, given in code, turns the section on or off.
        switches = {s: explicit[s] is not None and explicit[s] is not False for s in config.plugin_sections
                    if s in explicit and f"{s}.enabled" in config._values}
        opts["plugin_manager"] = config.plugin_manager(explicit.get("plugins") or (), switches)
    if side == "client":
        copy("origin", "origin")
        copy("client.uri", "uri")
    else:
        copy("origins", "origins")
    if kind in _IO:
        copy("max_queue", "max_queue")
        copy("write_limit", "write_limit")
        copy("timeouts.open", "open_timeout")
        copy("timeouts.close", "close_timeout")
        copy("timeouts.ping_interval", "ping_interval")
        copy("timeouts.ping_timeout", "ping_timeout")
        if side == "server":
            copy("server.host", "host")
            copy("server.port", "port")
            copy("server.unix", "unix")
            copy("server.reuse_port", "reuse_port")
        if config.is_set("tls") and "ssl" not in explicit:
            context = config.ssl_context(side)
            if context is not None:
                opts["ssl"] = context
    opts.update(explicit)
    return opts


Adjust = Callable[[Config, str, Mapping[str, Any], dict[str, Any]], None]
"""``adjust(config, kind, given, merged)``: a consumer's own rules on top of :func:`merge_options`."""


def accepts_config(kind: str, *, adjust: Adjust | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function (or ``__init__``) so that it takes ``config=``.

    The wrapper takes ``config=None`` plus the function's own arguments; when
    ``config`` is a :class:`Config`, it calls the function with
    ``merge_options(config, kind, given)``, where ``given`` holds the
    keyword arguments of the call and the parameters given positionally:
    they are explicit and override the file, even when equal to their
    default. Declare ``config: Config | None = None`` in the decorated
    signature so that type checkers accept the argument; the wrapper
    consumes it either way.

    Example:
        >>> class MyServer(ServerProtocol):
        ...     @accepts_config("server_protocol")
        ...     def __init__(self, **kwargs: Any) -> None:
        ...         super().__init__(**kwargs)

    Args:
        kind: one of :data:`KINDS`.
        adjust: called as ``adjust(config, kind, given, merged)`` before the
            call to edit ``merged`` (the keyword arguments the function will
            get) in place; the asyncio and sync layers add their rules with
            it (:func:`wskit._io.adjust_config`).

    Raises:
        ValueError: for an unknown ``kind``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown consumer kind {kind!r} (expected one of {', '.join(KINDS)})")

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        params = list(inspect.signature(func).parameters.values())
        positional = [p.name for p in params
                      if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            config = kwargs.pop("config", None)
            if config is None:
                return func(*args, **kwargs)
            if not isinstance(config, Config):
                raise TypeError(f"config must be a wskit.config.Config, got {type(config).__name__} "
                                "(load one with wskit.config.load)")
            by_position = dict(zip(positional, args))
            given = {**by_position, **kwargs}
            merged = merge_options(config, kind, given)
            for name in by_position:  # passed positionally already
                merged.pop(name, None)
            if adjust is not None:
                adjust(config, kind, given, merged)
            return func(*args, **merged)

        return wrapper

    return decorate


# -- the reference page ------------------------------------------------------------

_CONSUMER_LABELS = {
    _ALL: "all",
    _IO: "asyncio, sync",
    _IO_SERVERS: "asyncio/sync servers",
    _IO_CLIENTS: "asyncio/sync clients",
    _CLIENTS: "clients",
    _SERVERS: "servers",
}

_PROSE_HEAD = """\
# Configuration reference

<!-- Generated by `wskit config docs -o docs/configuration.md` from the schema in
wskit/config.py and the sections the built-in plugins declare; do not edit by
hand (a test fails when this page is stale). -->

One YAML file configures a client or a server. Load it with
`wskit.config.load(path)` and pass it as `config=` to a protocol or an
asyncio/sync client or server; keyword arguments given in code override the
file. Check a file with `wskit config check FILE`: it prints `ok` and the
effective settings, or every problem as `FILE:LINE: key.path: message` and
exits with status 1.

```python
from wskit.config import load, merge_options
config = load("server.yaml")
kwargs = merge_options(config, "server_protocol", {{"max_size": None}})  # explicit wins
```

A file sets only the keys it needs; every other key keeps its default (the
consumer's own). Each consumer reads the keys listed as used by it:
`client_protocol`/`server_protocol` (sans-I/O), `asyncio_client`,
`asyncio_server`, `sync_client`, `sync_server`. `examples/server.yaml` and
`examples/client.yaml` are complete examples.

Loading is as safe as `yaml.safe_load` and stricter: only plain values
(strings, numbers, booleans, null, lists, mappings) are accepted; a tag such
as `!!python/object` is an error. Unknown keys (with a suggestion for a
misspelling), wrong types, out-of-range values, duplicate keys and plugins
that are not installed are all errors, each reported with its line:

```text
server.yaml:3: max_sise: unknown key; did you mean 'max_size'?
server.yaml:7: timeouts.open: expected a number > 0 or null, got -1
server.yaml:9: plugins.disable[0]: no installed plugin named 'zstd' (installed: ...)
```

Plugins own their sections: each declares its section and keys through the
`wskit_add_config` hook (see docs/plugins.md), and the loader checks them as
it checks wskit's own keys. An installed third-party plugin adds its own
section (`wskit config check` prints every section the file has); the
built-in plugins' sections are listed below:
{sections}.

A section configures its plugin only if the file leaves the plugin on. A
file that turns a plugin off and still configures it (a section that does
not say `false`) is refused:

```text
{contradiction}
```
"""

_PROSE_TAIL = """\
## How keys map to keyword arguments

| keys | keyword argument | consumers |
|---|---|---|
| `max_size`, `max_fragment_size`, `subprotocols` | same name | all |
| `origin` / `origins` | same name | clients / servers |
| `handshake.*` | `limits` (`wskit.http11.HTTPLimits`) | all |
| `plugins.*`, plugin sections | `plugin_manager` (one per file; a section is `options[section]`) | all |
| `client.uri` | `uri` | clients |
| `max_queue`, `write_limit` | same name | asyncio, sync |
| `timeouts.open`, `timeouts.close` | `open_timeout`, `close_timeout` | asyncio, sync |
| `timeouts.ping_interval`, `timeouts.ping_timeout` | same name | asyncio, sync |
| `server.*` | `host`, `port`, `unix`, `reuse_port` | asyncio/sync servers |
| `tls.*` | `ssl` (`ssl.SSLContext`) | asyncio, sync |

Only keys the file sets are passed: a file that sets neither `plugins` nor
a plugin's section leaves the shared plugin manager (and so the extensions
the plugins provide by default) in place. A keyword argument named after a
plugin's section, given in code, turns that section on or off: the asyncio
and sync layers' `{section}=None` turns `{section}` off, an explicit
`{section}="deflate"` turns it on with the file's settings.
"""


def _used_by(key: Key) -> str:
    """The "used by" column: a short label for the usual sets of consumers, else their names."""
    return _CONSUMER_LABELS.get(key.used_by) or ", ".join(sorted(key.used_by))


def _default_text(key: Key) -> str:
    value = _plain(key.default)
    return "`" + yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip() + "`"


def reference_markdown() -> str:
    """Return ``docs/configuration.md``: prose plus a table of every key.

    wskit's keys come from :data:`SCHEMA`, the plugin sections from what the
    built-in plugins declare (``wskit_add_config``); third-party plugins
    document their own sections, so the page does not depend on what is
    installed.
    """
    plugin_sections = list(_catalog(entry_points=False).sections.values())
    example = plugin_sections[0] if plugin_sections else SectionSchema("name", "", "plugin")
    listed = ", ".join(f"`{s.name}`: plugin `{s.plugin}`" for s in plugin_sections) or "none"
    contradiction = (f"server.yaml:4: {example.name}: configures the plugin '{example.plugin}', which plugins.disable "
                     f"(line 2) turns off: remove the section, or set '{example.name}: false'")
    out = [_PROSE_HEAD.format(sections=listed, section=example.name, plugin=example.plugin,
                              contradiction=contradiction)]
    out.append("## Example\n\n```yaml\n" + _example_yaml(plugin_sections) + "```\n")
    groups: list[tuple[str, str, list[Key]]] = [("Top-level keys", "", [k for k in SCHEMA if "." not in k.path])]
    groups += [(f"`{s}`", doc, [k for k in SCHEMA if k.path.startswith(s + ".")]) for s, doc in SECTIONS.items()]
    groups += [(f"`{section.name}` (plugin `{section.plugin}`)", section.doc, section.keys)
               for section in plugin_sections]
    for title, doc, keys in groups:
        out.append(f"## {title}\n")
        if doc:
            out.append(doc + "\n")
        out.append("| key | accepted values | default | used by | description |\n|---|---|---|---|---|")
        for key in keys:
            out.append(f"| `{key.path}` | {key.expected()} | {_default_text(key)} | {_used_by(key)} | {key.doc} |")
        out.append("")
    out.append(_PROSE_TAIL.format(section=example.name))
    return "\n".join(out)


def _example_yaml(plugin_sections: list[SectionSchema]) -> str:
    """The defaults, in the file layout."""
    keys = [*SCHEMA, *(k for section in plugin_sections for k in section.keys)]
    defaults = Config({k.path: k.default for k in keys}, (), "<defaults>").as_dict()
    return yaml.safe_dump(defaults, sort_keys=False, default_flow_style=False)

"""The objects a plugin declares and reads its configuration with.

A plugin's ``wskit_add_config(schema)`` hook receives a :class:`ConfigSchema`
and declares its sections and keys on it; its ``wskit_configure(config)``
hook receives a :class:`PluginConfig` with the validated values. The YAML
loader (:mod:`wskit.config`, a layer above) builds both; they live here, with
the plugin machinery, so that the hook specifications can name them without
importing the configuration layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Container, Mapping
from dataclasses import dataclass
from typing import Any

from .exceptions import PluginError

__all__ = ["KINDS", "Key", "SectionSchema", "ConfigSchema", "PluginConfig"]

KINDS = ("client_protocol", "server_protocol", "asyncio_client", "asyncio_server", "sync_client", "sync_server")
"""The consumers of a configuration: the protocol objects and the I/O layers' clients and servers."""

_PLUGIN_KINDS = ("int", "number", "bool", "str", "strlist", "tokens")
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


@dataclass(frozen=True)
class Key:
    """One configuration key.

    Attributes:
        path: dotted path (``"timeouts.open"``).
        kind: value type: ``int``, ``number``, ``bool``, ``str``, ``strlist``
            (list of strings), ``tokens`` (list of HTTP tokens), ``origins``
            (list of origins or null), ``plugins`` (list of installed plugin
            names), ``path`` (a file path), ``file`` (an existing file),
            ``uri`` (a ``ws://``/``wss://`` URI).
        default: value when the file does not set the key.
        doc: one or two sentences for the reference page.
        used_by: the consumers (:data:`KINDS`) that read the key.
        nullable: whether ``null`` is accepted.
        min: smallest value accepted (numbers).
        max: largest value accepted (numbers).
        exclusive_min: ``min`` itself is not accepted.
        check: called with a value of the right kind; a ``ValueError`` it
            raises is reported as ``FILE:LINE: path: message``.
        plugin: the plugin that declared the key (``None``: wskit's own).
    """

    path: str
    kind: str
    default: Any
    doc: str
    used_by: frozenset[str]
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False
    check: Callable[[Any], object] | None = None
    plugin: str | None = None

    @property
    def name(self) -> str:
        """The last component of :attr:`path`."""
        return self.path.rpartition(".")[2]

    def expected(self) -> str:
        """Describe the accepted values, as in ``"an integer 8..15 or null"``."""
        if self.kind in ("int", "number"):
            noun = "an integer" if self.kind == "int" else "a number"
            if self.min is not None and self.max is not None:
                text = f"{noun} {_num(self.min)}..{_num(self.max)}"
            elif self.min is not None:
                text = f"{noun} {'>' if self.exclusive_min else '>='} {_num(self.min)}"
            else:
                text = noun
        else:
            text = {
                "bool": "true or false",
                "str": "a string",
                "strlist": "a list of strings",
                "tokens": "a list of tokens (RFC 7230 §3.2.6)",
                "origins": "a list of origins (a string, or null for requests without Origin)",
                "plugins": "a list of installed plugin names",
                "builtin_plugins": "a list of built-in plugin names",
                "path": "a path",
                "file": "the path of an existing file",
                "uri": "a ws:// or wss:// URI",
            }[self.kind]
        return text + (" or null" if self.nullable else "")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class SectionSchema:
    """One plugin's configuration section, as declared in ``wskit_add_config``.

    Attributes:
        name: the section's name (its top-level key in the file).
        doc: its description on the reference page.
        plugin: the name of the plugin that declared it.
        keys: the declared keys, in declaration order.
    """

    def __init__(self, name: str, doc: str, plugin: str) -> None:
        self.name = name
        self.doc = doc
        self.plugin = plugin
        self.keys: list[Key] = []

    def add(
        self,
        name: str,
        kind: str,
        default: Any,
        doc: str,
        *,
        nullable: bool = False,
        min: float | None = None,
        max: float | None = None,
        exclusive_min: bool = False,
        check: Callable[[Any], object] | None = None,
    ) -> None:
        """Declare one key of the section.

        Args:
            name: the key (lowercase letters, digits, ``_``).
            kind: ``"int"``, ``"number"``, ``"bool"``, ``"str"``,
                ``"strlist"`` (a list of strings, given to the plugin as a
                tuple) or ``"tokens"`` (a list of HTTP tokens).
            default: the value when the file does not set the key.
            doc: one or two sentences for the reference page.
            nullable: accept ``null``.
            min: smallest value accepted (numbers).
            max: largest value accepted (numbers).
            exclusive_min: ``min`` itself is not accepted.
            check: called with a value of the right kind (not with
                ``null``); raise ``ValueError(message)`` to refuse it: the
                loader reports ``FILE:LINE: section.name: message``.

        Raises:
            PluginError: for an invalid name or kind, or a key declared twice.
        """
        where = f"plugin {self.plugin!r}: {self.name}.{name}"
        if not _NAME.match(name):
            raise PluginError(f"{where}: a key name is lowercase letters, digits and _")
        if kind not in _PLUGIN_KINDS:
            raise PluginError(f"{where}: unknown kind {kind!r} (kinds: {', '.join(_PLUGIN_KINDS)})")
        if any(k.name == name for k in self.keys):
            raise PluginError(f"{where}: declared twice")
        self.keys.append(Key(f"{self.name}.{name}", kind, default, doc, frozenset(KINDS), nullable=nullable,
                             min=min, max=max, exclusive_min=exclusive_min, check=check, plugin=self.plugin))


class ConfigSchema:
    """What a plugin's ``wskit_add_config(schema)`` hook receives: declare sections with it.

    Example:
        >>> @hookimpl
        ... def wskit_add_config(schema: ConfigSchema) -> None:
        ...     section = schema.section("prefix", "The x-wskit-prefix extension.")
        ...     section.add("label", "str", "wskit", "The label a client asks for.")
    """

    def __init__(self, plugin: str, reserved: Collection[str] = ()) -> None:
        self.plugin = plugin
        self.sections: list[SectionSchema] = []
        self._reserved = frozenset(reserved)

    def section(self, name: str, doc: str) -> SectionSchema:
        """Declare a top-level section owned by the plugin and return it (add keys to it).

        Args:
            name: the section's key in the file (lowercase letters, digits, ``_``).
            doc: its description on the reference page.

        Raises:
            PluginError: for an invalid name, or one wskit already uses.
        """
        if not _NAME.match(name):
            raise PluginError(f"plugin {self.plugin!r}: section {name!r}: a section name is lowercase letters, "
                              "digits and _")
        if name in self._reserved or any(s.name == name for s in self.sections):
            raise PluginError(f"plugin {self.plugin!r}: section {name!r} is already a configuration key")
        section = SectionSchema(name, doc, self.plugin)
        self.sections.append(section)
        return section


class PluginConfig:
    """What a plugin's ``wskit_configure(config)`` hook receives: the validated values, and a way to refuse them.

    Attributes:
        plugin: the name of the plugin being asked.
        source: the configuration's file name (or ``"<string>"``...).
    """

    def __init__(
        self,
        plugin: str,
        source: str,
        values: Mapping[str, Any],
        explicit: Container[str],
        lines: Mapping[str, int | None],
        report: Callable[[int | None, str, str], None],
    ) -> None:
        self.plugin = plugin
        self.source = source
        self._values = values
        self._explicit = explicit
        self._lines = lines
        self._report = report

    def get(self, path: str) -> Any:
        """Return the value of a key (``"prefix.label"``; wskit's keys too, ``"max_size"``).

        Raises:
            KeyError: if the configuration has no such key.
        """
        return self._values[path]

    def is_set(self, path: str) -> bool:
        """Return whether the file sets the key itself."""
        return path in self._explicit

    def section(self, name: str) -> dict[str, Any]:
        """Return the values of a section as a dict (every key, defaults included)."""
        prefix = name + "."
        return {p[len(prefix):]: v for p, v in self._values.items() if p.startswith(prefix)}

    def error(self, path: str, message: str) -> None:
        """Refuse the configuration: report ``FILE:LINE: path: message``.

        Args:
            path: the key the problem is about (its line is the one reported;
                a key the file does not set reports its section's line).
            message: what is wrong and what is expected.
        """
        lines = self._lines
        line = lines.get(path, lines.get(path.partition(".")[0]))
        self._report(line, path, message)

"""Built-in plugin ``permessage-deflate``: offers and accepts RFC 7692 compression.

It provides :class:`~wskit.extensions.permessage_deflate.ClientPerMessageDeflateFactory`
and :class:`~wskit.extensions.permessage_deflate.ServerPerMessageDeflateFactory`
through the same public hooks a third-party extension plugin uses, and owns
its configuration the same way: it declares the ``compression`` section of
the YAML configuration (:func:`wskit_add_config`) and its factory hooks
receive the validated values as ``options["compression"]``.

``options["compression"]`` selects it: a mapping of settings (what the
configuration file gives: every key of the section, ``enabled`` included;
``None`` values mean "the side's default"), ``"deflate"`` or ``True`` (the
default) for default settings, ``None`` or ``False`` to turn it off.
Disable the plugin itself with ``PluginManager(disable=["permessage-deflate"])``
(or ``plugins: {disable: [permessage-deflate]}``): nothing then offers or
accepts compression.

:func:`io_extensions` implements the ``compression=`` argument of the
asyncio and sync ``connect``/``serve``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError
from ..extensions.permessage_deflate import ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory
from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from ..configschema import ConfigSchema
    from ..plugin import PluginManager

NAME = "permessage-deflate"
"""The plugin's name (and the extension token it negotiates)."""

SECTION = "compression"
"""The plugin's section of the YAML configuration."""


@hookimpl
def wskit_add_config(schema: ConfigSchema) -> None:
    """Declare the ``compression`` section: the settings of both factories."""
    section = schema.section(
        SECTION, "permessage-deflate (RFC 7692), provided by the built-in plugin `permessage-deflate`. "
        "`compression: false` disables it, `compression: true` uses the defaults. A window-bits key left null "
        "uses wskit's default for the side (client: offer `client_max_window_bits` without a value and ask "
        "nothing of the server; server: 12 bits both ways).")
    section.add("enabled", "bool", True, "Offer (client) or accept (server) permessage-deflate.")
    section.add("server_no_context_takeover", "bool", False, "The server resets its compressor after every "
                "message (RFC 7692 §7.1.1.1): less memory, worse ratio.")
    section.add("client_no_context_takeover", "bool", False, "The client resets its compressor after every "
                "message (RFC 7692 §7.1.1.2).")
    section.add("server_max_window_bits", "int", None, "LZ77 window of the server's compressor, as a power of "
                "two (RFC 7692 §7.1.2.1).", nullable=True, min=8, max=15)
    section.add("client_max_window_bits", "int", None, "LZ77 window of the client's compressor, as a power of "
                "two (RFC 7692 §7.1.2.2).", nullable=True, min=8, max=15)
    section.add("level", "int", 6, "zlib compression level (-1 is zlib's default, 0 stores).", min=-1, max=9)
    section.add("mem_level", "int", 5, "zlib memLevel: memory for the compressor's hash tables.", min=1, max=9)
    section.add("min_size", "int", 32, "Messages shorter than this many bytes are sent uncompressed.", min=0)


def settings(options: Mapping[str, Any]) -> dict[str, Any] | None:
    """Return the factory keyword arguments ``options["compression"]`` asks for, or ``None`` for "off".

    Args:
        options: the options the factory hooks receive.

    Raises:
        ConfigError: for a value that is not one of the accepted forms.
    """
    compression = options.get(SECTION, "deflate")
    if compression is None or compression is False:
        return None
    if compression is True or compression == "deflate":
        return {}
    if isinstance(compression, Mapping):
        if not compression.get("enabled", True):
            return None
        # None: the side's own default (the factories' defaults differ by side).
        return {k: v for k, v in compression.items() if k != "enabled" and v is not None}
    raise ConfigError(f"{SECTION}: expected 'deflate', None or a mapping of settings, got {compression!r}")


@hookimpl
def wskit_client_extension_factories(options: dict[str, Any]) -> list[Any] | None:
    """Offer permessage-deflate unless ``options["compression"]`` turns it off."""
    kwargs = settings(options)
    return None if kwargs is None else [ClientPerMessageDeflateFactory(**kwargs)]


@hookimpl
def wskit_server_extension_factories(options: dict[str, Any]) -> list[Any] | None:
    """Accept permessage-deflate unless ``options["compression"]`` turns it off."""
    kwargs = settings(options)
    return None if kwargs is None else [ServerPerMessageDeflateFactory(**kwargs)]


def io_extensions(compression: str | None, extensions: Sequence[Any] | None, side: str,
                  manager: PluginManager) -> list[Any] | None:
    """Combine the ``compression`` and ``extensions`` arguments of ``connect``/``serve``.

    The rules of both I/O layers (those of python-websockets):

    * ``compression="deflate"`` with ``extensions=None`` gives ``None``:
      "what the plugins of ``manager`` provide" (permessage-deflate with the
      manager's settings, unless the manager leaves this plugin out);
    * ``compression="deflate"`` with a list adds a permessage-deflate
      factory at its end, unless one is already there, built from the
      manager's settings; nothing is added when the manager leaves this
      plugin out or its settings turn compression off;
    * ``compression=None`` adds nothing: ``extensions`` as given (``None``
      and ``[]`` both negotiate no extension).

    Args:
        compression: ``"deflate"`` or ``None``.
        extensions: extension factories, in preference order.
        side: ``"client"`` or ``"server"``.
        manager: the plugin manager of the connections.

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
    if any(getattr(f, "name", None) == NAME for f in factories) or manager.pm.get_plugin(NAME) is None:
        return factories
    kwargs = settings(manager.options)
    if kwargs is not None:
        cls = ClientPerMessageDeflateFactory if side == "client" else ServerPerMessageDeflateFactory
        factories.append(cls(**kwargs))
    return factories

"""Built-in plugin ``permessage-deflate``: offers and accepts RFC 7692 compression.

It provides :class:`~wskit.extensions.permessage_deflate.ClientPerMessageDeflateFactory`
and :class:`~wskit.extensions.permessage_deflate.ServerPerMessageDeflateFactory`
through the same public hooks a third-party extension plugin uses. The
``compression`` option selects it: ``"deflate"`` or ``True`` (the default)
with default settings, a mapping of factory keyword arguments to tune it,
``None`` or ``False`` to turn it off. Disable the plugin itself with
``PluginManager(disable=["permessage-deflate"])``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..exceptions import ConfigError
from ..extensions.permessage_deflate import ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory
from ..hookspecs import hookimpl

NAME = "permessage-deflate"


def _settings(options: Mapping[str, Any]) -> dict[str, Any] | None:
    compression = options.get("compression", "deflate")
    if compression in (None, False):
        return None
    if compression in ("deflate", True):
        return {}
    if isinstance(compression, Mapping):
        settings = dict(compression)
        if not settings.pop("enabled", True):
            return None
        return settings
    raise ConfigError(f"compression: expected 'deflate', None or a mapping of settings, got {compression!r}")


@hookimpl
def wskit_client_extension_factories(options: dict[str, Any]) -> list[Any] | None:
    """Offer permessage-deflate unless ``options["compression"]`` turns it off."""
    settings = _settings(options)
    return None if settings is None else [ClientPerMessageDeflateFactory(**settings)]


@hookimpl
def wskit_server_extension_factories(options: dict[str, Any]) -> list[Any] | None:
    """Accept permessage-deflate unless ``options["compression"]`` turns it off."""
    settings = _settings(options)
    return None if settings is None else [ServerPerMessageDeflateFactory(**settings)]

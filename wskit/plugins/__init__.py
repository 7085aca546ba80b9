"""wskit's built-in plugins. They use only the public hooks of :mod:`wskit.hookspecs`.

``BUILTIN_PLUGINS`` are registered by every :class:`~wskit.plugin.PluginManager`
unless disabled; ``OPTIONAL_PLUGINS`` only when enabled by name
(``PluginManager(enable=["logging"])``, or ``plugins: {enable: [logging]}`` in
a configuration file).
"""

from __future__ import annotations

import importlib
from types import ModuleType


def _load(module: str) -> ModuleType:
    return importlib.import_module(f"wskit.plugins.{module}")


BUILTIN_MODULES: dict[str, str] = {"permessage-deflate": "deflate"}
"""Plugins on by default: name -> module in this package."""

OPTIONAL_MODULES: dict[str, str] = {"logging": "framelog"}
"""Plugins off by default (they would cost something per frame)."""


def builtin(name: str) -> ModuleType:
    """Return the built-in plugin module registered under ``name``.

    Raises:
        KeyError: no built-in plugin has that name (the plugin manager checks
            names before it asks).
    """
    return _load({**BUILTIN_MODULES, **OPTIONAL_MODULES}[name])

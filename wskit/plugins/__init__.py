"""wskit's built-in plugins. They use only the public hooks of :mod:`wskit.hookspecs`."""

from __future__ import annotations

BUILTIN_PLUGINS: dict[str, object] = {}
"""Built-in plugins by name, registered by every :class:`~wskit.plugin.PluginManager`."""

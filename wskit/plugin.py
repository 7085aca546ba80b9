"""Plugin management: a small typed façade over :class:`pluggy.PluginManager`.

Plugins register once per manager (process-wide by default), never per
connection. After registration the manager resolves each observation hook
into a plain callable, or ``None`` when no plugin implements it, which is what
protocols read on the per-frame path.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pluggy

from . import hookspecs
from .exceptions import PluginError

__all__ = ["PluginManager", "default_manager", "AUTOLOAD_ENV"]

AUTOLOAD_ENV = "WSKIT_DISABLE_PLUGIN_AUTOLOAD"
"""Set this environment variable to stop loading plugins from entry points."""

_OBSERVERS = ("wskit_frame_sent", "wskit_frame_received", "wskit_state_changed")


class PluginManager:
    """The set of plugins active for the protocols that use it.

    Args:
        plugins: extra plugin objects to register.
        builtins: register wskit's built-in plugins (permessage-deflate, frame
            logging). Pass a collection of names to keep only those.
        entry_points: load third-party plugins from the ``wskit`` entry-point
            group (unless ``WSKIT_DISABLE_PLUGIN_AUTOLOAD`` is set).
        disable: names of plugins (built-in or from entry points) to leave out.
        enable: names of optional built-in plugins to register (``"logging"``).
    """

    def __init__(
        self,
        plugins: Iterable[object] = (),
        *,
        builtins: bool | Iterable[str] = True,
        entry_points: bool = True,
        disable: Iterable[str] = (),
        enable: Iterable[str] = (),
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        disabled = set(disable)
        for name in disabled:
            self.pm.set_blocked(name)
        from .plugins import BUILTIN_MODULES, OPTIONAL_MODULES, builtin

        if builtins:
            wanted = None if builtins is True else set(builtins)
            for name in BUILTIN_MODULES:
                if (wanted is None or name in wanted) and name not in disabled:
                    self.pm.register(builtin(name), name=name)
        for name in enable:
            if name not in OPTIONAL_MODULES and name not in BUILTIN_MODULES:
                known = ", ".join(sorted({*BUILTIN_MODULES, *OPTIONAL_MODULES}))
                raise PluginError(f"cannot enable {name!r}: no built-in plugin has that name (built-ins: {known})")
            if self.pm.get_plugin(name) is None and name not in disabled:
                self.pm.register(builtin(name), name=name)
        if entry_points and not os.environ.get(AUTOLOAD_ENV):
            try:
                self.pm.load_setuptools_entrypoints(hookspecs.PROJECT)
            except Exception as exc:  # a broken third-party package
                raise PluginError(f"loading plugins from the {hookspecs.PROJECT!r} entry-point group failed: "
                                  f"{type(exc).__name__}: {exc}") from exc
        for plugin in plugins:
            self.register(plugin, _resolve=False)
        self._resolve()

    def register(self, plugin: object, name: str | None = None, *, _resolve: bool = True) -> None:
        """Register a plugin object (it must implement only known ``wskit_*`` hooks)."""
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginError(f"cannot register plugin {name or plugin!r}: {exc}") from exc
        if _resolve:
            self._resolve()

    def unregister(self, name: str) -> None:
        """Unregister the plugin registered under ``name``."""
        self.pm.unregister(name=name)
        self._resolve()

    def names(self) -> list[str]:
        """Return the names of the registered plugins, in registration order."""
        return [name for name, _ in self.pm.list_name_plugin()]

    def describe(self) -> list[tuple[str, list[str]]]:
        """Return ``(plugin name, hooks it implements)`` for every plugin."""
        out = []
        for name, plugin in self.pm.list_name_plugin():
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            out.append((name, hooks))
        return out

    @property
    def hook(self) -> Any:
        """The pluggy hook relay (``manager.hook.wskit_...``)."""
        return self.pm.hook

    def _resolve(self) -> None:
        self.frame_sent: Callable[..., Any] | None = None
        self.frame_received: Callable[..., Any] | None = None
        self.state_changed: Callable[..., Any] | None = None
        for name in _OBSERVERS:
            caller = getattr(self.pm.hook, name)
            setattr(self, name[len("wskit_"):], caller if caller.get_hookimpls() else None)

    def plugin_name(self, plugin: object) -> str:
        """Return the name a plugin object is registered under."""
        return self.pm.get_name(plugin) or repr(plugin)


_default: PluginManager | None = None
_lock = threading.Lock()


def default_manager() -> PluginManager:
    """Return the process-wide manager (built-ins + entry-point plugins), built once."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                _default = PluginManager()
    return _default

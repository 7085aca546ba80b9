"""Plugin management: a small typed façade over :class:`pluggy.PluginManager`.

Plugins register once per manager (process-wide by default), never per
connection. After registration the manager resolves each observation hook
into a plain callable, or ``None`` when no plugin implements it, which is what
protocols read on the per-frame path: a hook nobody implements costs nothing.

When a plugin raises inside a hook, the manager turns the exception into a
:class:`PluginHookError` that names the plugin (``plugin_name``) and the hook;
a :class:`~wskit.exceptions.ProtocolError` raised on purpose by a plugin goes
through unchanged.

This module also implements the ``wskit plugins`` command.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, NamedTuple

import pluggy

from . import hookspecs
from ._suggest import did_you_mean
from .exceptions import ConfigError, PluginError, ProtocolError, WSKitError

__all__ = [
    "PluginManager",
    "PluginHookError",
    "PluginInfo",
    "default_manager",
    "known_plugin_names",
    "check_plugin_names",
    "AUTOLOAD_ENV",
]

AUTOLOAD_ENV = "WSKIT_DISABLE_PLUGIN_AUTOLOAD"
"""Set this environment variable to stop loading plugins from entry points."""

_OBSERVERS = ("wskit_frame_sent", "wskit_frame_received", "wskit_state_changed")
_HANDSHAKE_HOOKS = ("wskit_handshake_request", "wskit_handshake_response", "wskit_check_request")
_SIDES = ("client", "server")


class PluginHookError(PluginError):
    """A plugin raised inside one of its hooks.

    Attributes:
        plugin_name: the name the plugin is registered under (``None`` when
            the culprit could not be told apart from other plugins).
        hook_name: the hook that failed (``"wskit_frame_sent"``, ...).
    """

    def __init__(self, message: str, *, plugin_name: str | None, hook_name: str) -> None:
        super().__init__(message)
        self.plugin_name = plugin_name
        self.hook_name = hook_name


class PluginInfo(NamedTuple):
    """What ``wskit plugins`` shows about one registered plugin.

    Attributes:
        name: the name it is registered under (what ``disable=`` takes).
        origin: ``"built-in"``, ``"entry point"`` or ``"code"`` (passed with
            ``plugins=[...]`` or :meth:`PluginManager.register`).
        source: where it lives: the module, or ``distribution version`` for
            an entry point.
        hooks: the ``wskit_*`` hooks it implements, sorted.
    """

    name: str
    origin: str
    source: str
    hooks: list[str]


def _hook_error(plugin_name: str | None, hook_name: str, exc: BaseException) -> PluginHookError:
    who = "a plugin" if plugin_name is None else f"plugin {plugin_name!r}"
    return PluginHookError(f"{who} raised {type(exc).__name__} in {hook_name}: {exc}",
                           plugin_name=plugin_name, hook_name=hook_name)


def _code_of(function: Any) -> Any:
    """The code object of a hook function (pluggy accepts only Python functions and methods)."""
    return getattr(function, "__func__", function).__code__


def _culprit(impls: list[Any], tb: TracebackType | None) -> str | None:
    """Return the name of the plugin whose hook function is in the traceback.

    Side-effect free (no hook is called again): pluggy calls the hook
    function, so its code object appears in the traceback of what it raised.
    """
    codes: dict[Any, Any] = {}
    for impl in impls:
        codes.setdefault(_code_of(impl.function), impl)
    found: list[Any] = []
    while tb is not None:
        impl = codes.get(tb.tb_frame.f_code)
        if impl is not None:
            found.append(impl)
        tb = tb.tb_next
    # The innermost plain hook function raised; a wrapper only saw the
    # exception go through it (it is the culprit only if it is alone).
    plain = [impl for impl in found if not (impl.wrapper or impl.hookwrapper)]
    if plain or found:
        return str((plain or found)[-1].plugin_name)
    if len(impls) == 1:
        return str(impls[0].plugin_name)
    return None


class _NamedHookCaller:
    """A pluggy hook caller whose failures name the plugin that raised."""

    __slots__ = ("_caller", "name")

    def __init__(self, caller: Any) -> None:
        self._caller = caller
        self.name: str = caller.name

    def __call__(self, **kwargs: Any) -> Any:
        try:
            return self._caller(**kwargs)
        except ProtocolError:
            raise
        except Exception as exc:
            impls = self._caller.get_hookimpls()
            name = _culprit(impls, exc.__traceback__)
            raise _hook_error(name, self.name, exc) from exc

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._caller, attr)


class _HookRelay:
    """``manager.hook``: like pluggy's relay, with :class:`_NamedHookCaller` hooks."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm

    def __getattr__(self, name: str) -> _NamedHookCaller:
        caller = _NamedHookCaller(getattr(self._pm.hook, name))
        setattr(self, name, caller)  # pluggy keeps one caller per hook: cache ours
        return caller


def _observer(hook_name: str, caller: Any) -> Callable[..., None] | None:
    """Resolve an observation hook into a plain callable (``None`` if unimplemented).

    The hook functions are called directly, in pluggy's order (last
    registered first, ``tryfirst``/``trylast`` honoured), which is several
    times cheaper than going through pluggy on every frame. Hook wrappers
    need pluggy's machinery: if any plugin has one, the pluggy caller is
    used (still naming the culprit on failure). Direct calls bypass
    ``pluggy.PluginManager.add_hookcall_monitoring``.
    """
    impls = caller.get_hookimpls()
    if not impls:
        return None
    if any(impl.hookwrapper or impl.wrapper for impl in impls):
        named = _NamedHookCaller(caller)

        def observe_via_pluggy(**kwargs: Any) -> None:
            named(**kwargs)

        return observe_via_pluggy
    calls = [(impl.function, tuple(impl.argnames), impl.plugin_name) for impl in reversed(impls)]
    if len(calls) == 1:
        function, argnames, plugin_name = calls[0]

        def observe_one(**kwargs: Any) -> None:
            try:
                function(*[kwargs[a] for a in argnames])
            except ProtocolError:
                raise
            except Exception as exc:
                raise _hook_error(plugin_name, hook_name, exc) from exc

        return observe_one

    def observe_all(**kwargs: Any) -> None:
        for function, argnames, plugin_name in calls:
            try:
                function(*[kwargs[a] for a in argnames])
            except ProtocolError:
                raise
            except Exception as exc:
                raise _hook_error(plugin_name, hook_name, exc) from exc

    return observe_all


class PluginManager:
    """The set of plugins active for the protocols that use it.

    Args:
        plugins: extra plugin objects to register.
        builtins: register wskit's built-in plugins (permessage-deflate). Pass
            a collection of names to keep only those.
        entry_points: load third-party plugins from the ``wskit`` entry-point
            group (unless ``WSKIT_DISABLE_PLUGIN_AUTOLOAD`` is set).
        disable: names of plugins (built-in or from entry points) to leave out.
        enable: names of optional built-in plugins to register (``"logging"``).
        options: the plugins' settings, by configuration section
            (``{"compression": {"level": 9}, ...}``): what a configuration
            file gives them (:meth:`wskit.config.Config.plugin_manager`). The
            extension factory hooks receive them as ``options``.

    A plugin object in ``plugins`` that is already registered (the same
    module, installed through its entry point too) is not registered twice:
    it keeps its entry-point name.

    Raises:
        PluginError: for an unknown name in ``enable``, a plugin that
            implements unknown hooks, or a broken entry point.
    """

    def __init__(
        self,
        plugins: Iterable[object] = (),
        *,
        builtins: bool | Iterable[str] = True,
        entry_points: bool = True,
        disable: Iterable[str] = (),
        enable: Iterable[str] = (),
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.options: Mapping[str, Any] = dict(options or {})
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._relay = _HookRelay(self.pm)
        self._builtin_names: set[str] = set()
        self._token_owner: dict[str, str] = {}
        disabled = set(disable)
        self.disabled: frozenset[str] = frozenset(disabled)
        for name in disabled:
            self.pm.set_blocked(name)
        from .plugins import BUILTIN_MODULES, OPTIONAL_MODULES, builtin

        if builtins:
            wanted = None if builtins is True else set(builtins)
            for name in BUILTIN_MODULES:
                if (wanted is None or name in wanted) and name not in disabled:
                    self.pm.register(builtin(name), name=name)
                    self._builtin_names.add(name)
        for name in enable:
            if name not in OPTIONAL_MODULES and name not in BUILTIN_MODULES:
                known = ", ".join(sorted({*BUILTIN_MODULES, *OPTIONAL_MODULES}))
                raise PluginError(f"cannot enable {name!r}: no built-in plugin has that name (built-ins: {known})")
            if self.pm.get_plugin(name) is None and name not in disabled:
                self.pm.register(builtin(name), name=name)
                self._builtin_names.add(name)
        self.entry_points = bool(entry_points and not os.environ.get(AUTOLOAD_ENV))
        if self.entry_points:
            try:
                self.pm.load_setuptools_entrypoints(hookspecs.PROJECT)
                self.pm.check_pending()
            except Exception as exc:  # a broken third-party package
                raise PluginError(f"loading plugins from the {hookspecs.PROJECT!r} entry-point group failed: "
                                  f"{type(exc).__name__}: {exc}") from exc
        for plugin in plugins:
            if not self.pm.is_registered(plugin):  # also installed through its entry point: once is enough
                self.register(plugin, _resolve=False)
        self._resolve()

    def register(self, plugin: object, name: str | None = None, *, _resolve: bool = True) -> None:
        """Register a plugin object (it must implement only known ``wskit_*`` hooks).

        Protocols created before the call keep the hooks they resolved.

        Args:
            plugin: a module, class instance or class with ``@hookimpl`` functions.
            name: the name to register it under (default: pluggy's).

        Raises:
            PluginError: if it is already registered, its name is taken or
                blocked, or it implements a hook wskit does not define.
        """
        try:
            if self.pm.register(plugin, name=name) is None:
                raise ValueError(f"the name {name!r} is disabled")
            self.pm.check_pending()
        except (ValueError, pluggy.PluginValidationError) as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            raise PluginError(f"cannot register plugin {name or plugin!r}: {exc}") from exc
        if _resolve:
            self._resolve()

    def unregister(self, name: str) -> None:
        """Unregister the plugin registered under ``name``."""
        self.pm.unregister(name=name)
        self._builtin_names.discard(name)
        self._resolve()

    def names(self) -> list[str]:
        """Return the names of the registered plugins, in registration order."""
        return [name for name, plugin in self.pm.list_name_plugin() if plugin is not None]

    def describe(self) -> list[tuple[str, list[str]]]:
        """Return ``(plugin name, hooks it implements)`` for every plugin."""
        return [(info.name, info.hooks) for info in self.info()]

    def info(self) -> list[PluginInfo]:
        """Return what is known of every registered plugin, in registration order."""
        dists = {id(plugin): dist for plugin, dist in self.pm.list_plugin_distinfo()}
        out = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # a blocked (disabled) name
                continue
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            dist = dists.get(id(plugin))
            module = getattr(plugin, "__name__", None) or type(plugin).__module__
            if name in self._builtin_names:
                out.append(PluginInfo(name, "built-in", str(module), hooks))
            elif dist is not None:
                out.append(PluginInfo(name, "entry point", f"{dist.metadata['Name']} {dist.version}", hooks))
            else:
                out.append(PluginInfo(name, "code", str(module), hooks))
        return out

    @property
    def hook(self) -> Any:
        """The hook relay (``manager.hook.wskit_...``): pluggy's, except that a
        plugin raising in a hook becomes a :class:`PluginHookError` naming it."""
        return self._relay

    def _resolve(self) -> None:
        self.frame_sent: Callable[..., None] | None = None
        self.frame_received: Callable[..., None] | None = None
        self.state_changed: Callable[..., None] | None = None
        for name in _OBSERVERS:
            setattr(self, name[len("wskit_"):], _observer(name, getattr(self.pm.hook, name)))
        # Handshake hooks: the hook caller, or None when no plugin implements
        # it (read once per connection by the client and server protocols).
        self.handshake_request: Any = None
        self.handshake_response: Any = None
        self.check_request: Any = None
        for name in _HANDSHAKE_HOOKS:
            if getattr(self.pm.hook, name).get_hookimpls():
                setattr(self, name[len("wskit_"):], getattr(self.hook, name))
        self._token_owner.clear()

    def plugin_name(self, plugin: object) -> str:
        """Return the name a plugin object is registered under."""
        return self.pm.get_name(plugin) or repr(plugin)

    def culprit(self, hook_name: str, exc: BaseException) -> str | None:
        """Return the name of the plugin that raised ``exc`` in ``hook_name``.

        Args:
            hook_name: the hook that raised (``"wskit_frame_sent"``, ...).
            exc: the exception, with its traceback.

        Returns:
            The plugin's registered name, or ``None`` if no hook function of
            that hook is in the traceback and several plugins implement it.
        """
        if isinstance(exc, PluginHookError):
            return exc.plugin_name
        caller = getattr(self.pm.hook, hook_name, None)
        if caller is None:
            return None
        return _culprit(caller.get_hookimpls(), exc.__traceback__)

    def extension_factories(self, side: str, options: Mapping[str, Any] | None = None) -> list[Any]:
        """Collect the extension factories the plugins provide, in call order.

        Calls ``wskit_client_extension_factories`` (``side="client"``) or
        ``wskit_server_extension_factories`` and remembers which plugin
        provided each extension name, for :meth:`extension_owner`.

        Args:
            side: ``"client"`` or ``"server"``.
            options: passed to the hook as ``options``, on top of the
                manager's own :attr:`options` (a key given here wins).

        Returns:
            The factories, flattened: the first plugin called comes first.

        Raises:
            PluginHookError: if a plugin raised (a :class:`WSKitError`, such
                as a :class:`~wskit.exceptions.ConfigError` about its
                options, goes through unchanged).
        """
        if side not in _SIDES:
            raise ValueError(f"side must be 'client' or 'server', got {side!r}")
        hook_name = f"wskit_{side}_extension_factories"
        kwargs = {"options": {**self.options, **(options or {})}}
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        out: list[Any] = []
        if any(impl.hookwrapper or impl.wrapper for impl in impls):
            for result in getattr(self.hook, hook_name)(**kwargs):
                out.extend(result or ())
            return out
        for impl in reversed(impls):  # pluggy's call order
            try:
                result = impl.function(*[kwargs[a] for a in impl.argnames])
            except WSKitError:
                raise
            except Exception as exc:
                raise _hook_error(impl.plugin_name, hook_name, exc) from exc
            for factory in result or ():
                self._token_owner.setdefault(str(getattr(factory, "name", "")), impl.plugin_name)
                out.append(factory)
        return out

    def extension_owner(self, extension: object) -> str | None:
        """Return the name of the plugin that provides an extension, if any.

        Args:
            extension: an :class:`~wskit.extensions.base.Extension` (or a
                factory): matched by its ``name``, the token negotiated in
                ``Sec-WebSocket-Extensions``.

        Returns:
            The plugin's registered name, or ``None`` for an extension no
            plugin provides (passed in code with ``extensions=[...]``).
        """
        token = str(getattr(extension, "name", ""))
        if token not in self._token_owner:
            for side in _SIDES:  # not collected yet: ask the plugins now
                try:
                    self.extension_factories(side)
                except Exception:  # a failure path already: never raise here
                    pass
        return self._token_owner.get(token)


def known_plugin_names(*, builtin: bool = False) -> list[str]:
    """Return the plugin names that ``disable`` (or, with ``builtin``, ``enable``) may name.

    These are the built-in plugins (on by default, then optional) and, unless
    ``builtin`` is true, the entry points of the ``wskit`` group, under the
    names :class:`PluginManager` registers them with. Entry points are
    listed, not imported.

    Args:
        builtin: only the built-in plugins (what ``enable`` takes).
    """
    from .plugins import BUILTIN_MODULES, OPTIONAL_MODULES

    names = list(BUILTIN_MODULES) + [n for n in OPTIONAL_MODULES if n not in BUILTIN_MODULES]
    if not builtin:
        from importlib.metadata import entry_points

        names += [ep.name for ep in entry_points(group=hookspecs.PROJECT) if ep.name not in names]
    return names


def check_plugin_names(names: Iterable[str], *, builtin: bool = False) -> None:
    """Check plugin names given by a user: the one rule for ``disable`` and ``enable`` names.

    The YAML loader (``plugins.disable``, ``plugins.enable``) and the
    command line (``wskit plugins --disable/--enable``) both use it, so a
    name one accepts the other accepts.

    Args:
        names: the names to check.
        builtin: check against the built-in plugins only (``enable``
            names); otherwise built-in and entry-point plugins (``disable``).

    Raises:
        ConfigError: one error per unknown name, as ``no installed plugin
            named 'zstd'; did you mean '...'? (installed: permessage-deflate,
            logging)``.
    """
    what = "built-in" if builtin else "installed"
    known = known_plugin_names(builtin=builtin)
    errors = [f"no {what} plugin named {name!r}{did_you_mean(name, known)} ({what}: {', '.join(known) or 'none'})"
              for name in names if name not in known]
    if errors:
        raise ConfigError(errors)


_default: PluginManager | None = None
_lock = threading.Lock()


def default_manager() -> PluginManager:
    """Return the process-wide manager (built-ins + entry-point plugins), built once."""
    global _default
    with _lock:
        if _default is None:
            _default = PluginManager()
        return _default

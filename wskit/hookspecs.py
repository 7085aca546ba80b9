"""Hook specifications of wskit plugins (pluggy project ``"wskit"``).

A plugin is any object (a module, a class instance) with functions named
after these hooks and decorated with :data:`wskit.hookimpl`. Plugins are
found through the ``wskit`` entry-point group, or passed in code with
``plugins=[...]``. Hooks are resolved once per plugin manager into plain
callables: a hook that no plugin implements costs nothing per frame.

Hook order follows pluggy: plugins registered later run first; use
``@hookimpl(tryfirst=True)`` / ``trylast=True`` to say otherwise.

A plugin owns its configuration: :func:`wskit_add_config` declares its
YAML section and the schema of its keys, :func:`wskit_configure` checks the
validated values together, and the extension factory hooks receive them as
``options[section]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .configschema import ConfigSchema, PluginConfig
    from .events import Request, Response
    from .extensions.base import ClientExtensionFactory, ServerExtensionFactory
    from .frames import Frame
    from .headers import Headers
    from .statemachine import State

PROJECT = "wskit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "hookspec", "hookimpl"]


@hookspec
def wskit_add_config(schema: ConfigSchema) -> None:
    """Declare the plugin's section of the YAML configuration and its keys.

    Called when a configuration is loaded (and when ``wskit config docs``
    writes the reference), for every built-in plugin and every plugin of the
    ``wskit`` entry-point group, whether or not the file enables it: a file
    that configures a disabled plugin is refused, naming both lines.

    Declare keys with the built-in value kinds; the loader checks them and
    reports every problem as ``FILE:LINE: section.key: message`` (with a
    "did you mean" for misspelled keys), as for wskit's own keys. A section
    with an ``enabled`` boolean key also accepts ``section: true/false``.

    Example:
        >>> @hookimpl
        ... def wskit_add_config(schema):
        ...     section = schema.section("prefix", "The x-wskit-prefix extension.")
        ...     section.add("enabled", "bool", True, "Offer (client) or accept (server) it.")
        ...     section.add("label", "str", "wskit", "The label a client asks for.", check=check_label)

    Args:
        schema: a :class:`wskit.configschema.ConfigSchema`: ``schema.section(name,
            doc)`` returns a section whose ``add(name, kind, default, doc,
            *, nullable, min, max, check)`` declares one key.
    """


@hookspec
def wskit_configure(config: PluginConfig) -> None:
    """Check the validated values of the plugin's section(s) together.

    Called once per loaded configuration, after every key passed its own
    checks, for the plugins the file leaves active. Report a problem with
    ``config.error("section.key", message)``: it becomes
    ``FILE:LINE: section.key: message``. The values themselves reach the
    plugin as ``options[section]`` in :func:`wskit_client_extension_factories`
    and :func:`wskit_server_extension_factories`.

    Args:
        config: a :class:`wskit.configschema.PluginConfig`: ``get("section.key")``,
            ``is_set("section.key")``, ``section(name)`` (a dict of the
            section's values) and ``error(path, message)``.
    """


@hookspec
def wskit_client_extension_factories(options: dict[str, Any]) -> list[ClientExtensionFactory] | None:
    """Offer extensions in a client's opening handshake.

    Args:
        options: the plugins' settings by configuration section: the
            validated values of each section the configuration file
            declares (``options["compression"]``, a dict with every key of
            the section), overlaid by options given in code; empty when no
            file configures the plugin manager.

    Returns:
        Extension factories to offer, in preference order, or ``None``.
    """


@hookspec
def wskit_server_extension_factories(options: dict[str, Any]) -> list[ServerExtensionFactory] | None:
    """Provide extensions a server may accept.

    Args:
        options: as for :func:`wskit_client_extension_factories`.

    Returns:
        Extension factories, in the server's preference order, or ``None``.
    """


@hookspec
def wskit_frame_sent(protocol: Any, frame: Frame) -> None:
    """Observe a frame just serialized for sending (after extensions encoded it)."""


@hookspec
def wskit_frame_received(protocol: Any, frame: Frame) -> None:
    """Observe a frame just parsed (before extensions decode it)."""


@hookspec
def wskit_state_changed(protocol: Any, old: State, new: State, trigger: str) -> None:
    """Observe a change of the connection's public state."""


@hookspec
def wskit_handshake_request(protocol: Any, headers: Headers) -> None:
    """Client: add or change headers of the opening handshake request."""


@hookspec(firstresult=True)
def wskit_check_request(protocol: Any, request: Request) -> Response | None:
    """Server: veto a handshake request.

    Returns:
        ``None`` to let the request through, or a :class:`~wskit.events.Response`
        to send instead of accepting it (the first plugin that answers wins).
    """


@hookspec
def wskit_handshake_response(protocol: Any, request: Request, headers: Headers) -> None:
    """Server: add or change headers of the 101 response before it is sent."""

"""Hook specifications of wskit plugins (pluggy project ``"wskit"``).

A plugin is any object (a module, a class instance) with functions named
after these hooks and decorated with :data:`wskit.hookimpl`. Plugins are
found through the ``wskit`` entry-point group, or passed in code with
``plugins=[...]``. Hooks are resolved once per plugin manager into plain
callables: a hook that no plugin implements costs nothing per frame.

Hook order follows pluggy: plugins registered later run first; use
``@hookimpl(tryfirst=True)`` / ``trylast=True`` to say otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
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
def wskit_client_extension_factories(options: dict[str, Any]) -> list[ClientExtensionFactory] | None:
    """Offer extensions in a client's opening handshake.

    Args:
        options: the client's extension options (for example the
            ``compression`` settings of a configuration file).

    Returns:
        Extension factories to offer, in preference order, or ``None``.
    """


@hookspec
def wskit_server_extension_factories(options: dict[str, Any]) -> list[ServerExtensionFactory] | None:
    """Provide extensions a server may accept.

    Args:
        options: the server's extension options.

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

"""The plain application, in a process where a plugin provides a broken extension.

``x-broken`` is a server extension whose factory raises when a client offers
it: ``ServerProtocol.accept`` fails with a 500 when the application sends
``websocket.accept``. Clients that do not offer it are served as usual.
Importing this module registers the plugin on wskit's process-wide plugin
manager, the one :class:`wskit.asgi.UvicornProtocol` uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wskit import hookimpl
from wskit.extensions.base import Extension, ExtensionParameter, ServerExtensionFactory
from wskit.plugin import default_manager

from .plain import app

__all__ = ["app"]


class BrokenFactory(ServerExtensionFactory):
    """Fails on every offer, as a buggy factory would."""

    name = "x-broken"

    def process_request_params(self, params: Sequence[ExtensionParameter],
                               accepted_extensions: Sequence[Extension]) -> tuple[list[ExtensionParameter], Extension]:
        raise RuntimeError("secret detail of the factory bug")


class BrokenExtensionPlugin:
    @hookimpl
    def wskit_server_extension_factories(self, options: dict[str, Any]) -> list[ServerExtensionFactory]:
        return [BrokenFactory()]


default_manager().register(BrokenExtensionPlugin(), name="broken-extension")

"""WebSocket extensions: the base classes and permessage-deflate."""

from .base import ClientExtensionFactory, Extension, ExtensionParameter, ServerExtensionFactory

__all__ = ["Extension", "ClientExtensionFactory", "ServerExtensionFactory", "ExtensionParameter"]

"""Base classes for WebSocket extensions (RFC 6455 §9).

An extension is negotiated in the opening handshake by a *factory*: the
client's :class:`ClientExtensionFactory` offers parameters, the server's
:class:`ServerExtensionFactory` accepts or declines them. Negotiation yields
an :class:`Extension` object per connection that transforms frames:
``encode`` on the way out, ``decode`` on the way in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..frames import Frame

__all__ = ["Extension", "ClientExtensionFactory", "ServerExtensionFactory", "ExtensionParameter"]

ExtensionParameter = tuple[str, "str | None"]
"""One extension parameter: its name and its value (``None`` when absent)."""


class Extension:
    """A negotiated extension: per-connection state that transforms frames.

    Subclasses override :meth:`encode` and :meth:`decode`. ``name`` is the
    extension token used in ``Sec-WebSocket-Extensions``. ``rsv_mask`` says
    which RSV bits the extension gives meaning to (``0x40`` RSV1, ``0x20``
    RSV2, ``0x10`` RSV3): incoming frames may only set those bits.

    ``compresses`` is ``True`` for an extension that compresses messages
    (permessage-deflate): a message sent with ``compress=False`` (e.g.
    ``send(message, compress=False)``) does not go through its
    :meth:`encode`, so its state is untouched by that message, while the
    other extensions still encode it.
    """

    name: str = "x-unnamed"
    rsv_mask: int = 0
    compresses: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def encode(self, frame: Frame) -> Frame:
        """Transform an outgoing frame. The default returns it unchanged."""
        return frame

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        """Transform an incoming frame. The default returns it unchanged.

        Args:
            frame: the received frame (unmasked).
            max_size: the limit on the decoded message size, when the caller
                has one; an extension that expands data must enforce it and
                raise :class:`~wskit.exceptions.PayloadTooBig`.
        """
        return frame

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class ClientExtensionFactory:
    """Offers an extension in a client's opening handshake."""

    name: str = "x-unnamed"

    def get_request_params(self) -> list[ExtensionParameter]:
        """Return the parameters to offer (one ``Sec-WebSocket-Extensions`` item)."""
        return []

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> Extension:
        """Build the extension from the server's answer.

        Raises:
            NegotiationError: if the server's parameters are not acceptable.
        """
        raise NotImplementedError


class ServerExtensionFactory:
    """Accepts (or declines) an extension offered by a client."""

    name: str = "x-unnamed"

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], Extension]:
        """Accept one offer: return the response parameters and the extension.

        Raises:
            NegotiationError: to decline this offer (the server then tries the
                next offer, or goes on without the extension).
        """
        raise NotImplementedError

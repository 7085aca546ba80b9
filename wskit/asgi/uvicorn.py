"""wskit as uvicorn's WebSocket implementation: ``uvicorn app:app --ws wskit.asgi:UvicornProtocol``.

uvicorn's HTTP protocol parses the request; when it is a WebSocket upgrade
it builds the ``--ws`` class with ``(config=, server_state=, app_state=)``,
makes it the transport's protocol and feeds it the request's bytes.
:class:`UvicornProtocol` reads uvicorn's settings from that ``config`` and
registers in ``server_state`` so that uvicorn's graceful shutdown finds it.
This module does not import uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..defaults import CLOSE_TIMEOUT, WRITE_LIMIT
from ..plugin import default_manager
from ..plugins.deflate import io_extensions
from ..protocol import ServerProtocol
from .connection import ASGIConnection

__all__ = ["UvicornProtocol"]


def _positive(value: float | None) -> float | None:
    """uvicorn turns keepalive off with ``None`` or ``0``."""
    return value if value is not None and value > 0 else None


class UvicornProtocol(ASGIConnection):
    """The WebSocket protocol class for uvicorn (0.36 and later take it as ``--ws``).

    uvicorn's settings and what they do here:

    * ``ws_max_size``: the largest message received, after decompression
      (bigger: close 1009);
    * ``ws_max_queue``: received messages waiting for the application's
      ``receive``; when full, the socket is not read until it drains;
    * ``ws_ping_interval`` / ``ws_ping_timeout``: keepalive Pings, and the
      wait for their Pong before closing with 1011 (``None`` or ``0``: off);
    * ``ws_per_message_deflate``: offer permessage-deflate (RFC 7692);
    * ``root_path``, ``headers``, ``server_header``, ``date_header``: the scope's
      ``root_path`` and ``path``; uvicorn's default headers go on every
      response (the 101 and the denials);
    * graceful shutdown: open connections are closed with 1012, a connection
      still waiting for the application's answer gets 503.

    Two settings uvicorn has no option for are class attributes; change them
    in a subclass and pass that one as ``--ws``.

    Attributes:
        close_timeout: seconds to wait for the closing handshake before the
            TCP connection is aborted.
        write_limit: bytes buffered for the socket above which the
            application's ``send`` waits.

    Args:
        config: uvicorn's ``Config``.
        server_state: uvicorn's ``ServerState`` (connections, tasks, default headers).
        app_state: the lifespan state, copied into each scope.
    """

    close_timeout: float | None = CLOSE_TIMEOUT
    write_limit: int = WRITE_LIMIT

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        manager = default_manager()
        extensions = io_extensions("deflate" if config.ws_per_message_deflate else None, None, "server", manager)
        protocol = ServerProtocol(max_size=config.ws_max_size, extensions=extensions, plugin_manager=manager)
        super().__init__(
            config.loaded_app,
            protocol,
            root_path=config.root_path,
            asgi_version=config.asgi_version,
            app_state=app_state,
            default_headers=lambda: server_state.default_headers,  # renewed every second (Date)
            connections=server_state.connections,
            tasks=server_state.tasks,
            error_logger=logging.getLogger("uvicorn.error"),
            max_queue=config.ws_max_queue,
            write_limit=self.write_limit,
            ping_interval=_positive(config.ws_ping_interval),
            ping_timeout=_positive(config.ws_ping_timeout),
            close_timeout=self.close_timeout,
        )

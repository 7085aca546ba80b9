"""wskit under ASGI servers: uvicorn, and through it Starlette and FastAPI.

Run an ASGI application with wskit handling its WebSocket connections::

    uvicorn app:app --ws wskit.asgi:UvicornProtocol

or ``uvicorn.run(app, ws=UvicornProtocol)``. See ``docs/asgi.md``.
Importing this package does not import uvicorn.
"""

from __future__ import annotations

from .connection import ASGIConnection, ClientDisconnected
from .uvicorn import UvicornProtocol

__all__ = ["ASGIConnection", "ClientDisconnected", "UvicornProtocol"]

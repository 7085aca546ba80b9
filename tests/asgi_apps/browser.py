"""An ASGI application for the browser test: the page at ``/``, an echo at ``/ws``.

Served by ``uvicorn asgi_apps.browser:app --ws wskit.asgi:UvicornProtocol``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PAGE = (Path(__file__).resolve().parent.parent / "browser" / "exchange.html").read_bytes()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        found = scope["path"] == "/"
        await send({"type": "http.response.start", "status": 200 if found else 404,
                    "headers": [(b"content-type", b"text/html; charset=utf-8" if found else b"text/plain")]})
        await send({"type": "http.response.body", "body": PAGE if found else b"not found"})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    if scope["path"] != "/ws":
        await send({"type": "websocket.close"})
        return
    offered = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": "chat" if "chat" in offered else None})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})

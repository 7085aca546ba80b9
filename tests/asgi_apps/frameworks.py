"""A Starlette application and a FastAPI application with the same WebSocket routes.

* ``/chat``: accepts with the subprotocol ``chat`` when offered, answers
  each text with ``send_json({"echo": text, "n": count})``; the text
  ``"close"`` makes it close with 4001 ``"asked to"``;
* ``/private``: denies the upgrade with 401 and a body (``send_denial_response``);
* ``/fail-before``, ``/fail-after``: raise before / after accept.

Served by ``uvicorn asgi_apps.frameworks:starlette_app`` (or ``:fastapi_app``)
``--ws wskit.asgi:UvicornProtocol``.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


async def chat(websocket: WebSocket) -> None:
    offered = websocket.scope["subprotocols"]
    await websocket.accept(subprotocol="chat" if "chat" in offered else None)
    count = 0
    try:
        while True:
            text = await websocket.receive_text()
            if text == "close":
                await websocket.close(code=4001, reason="asked to")
                return
            count += 1
            await websocket.send_json({"echo": text, "n": count, "path": websocket.url.path})
    except WebSocketDisconnect:
        pass


async def private(websocket: WebSocket) -> None:
    await websocket.send_denial_response(PlainTextResponse("who are you?", status_code=401,
                                                           headers={"WWW-Authenticate": "Token"}))


async def fail_before(websocket: WebSocket) -> None:
    raise ValueError("broken before accept")


async def fail_after(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    raise ValueError("broken after accept")


starlette_app = Starlette(routes=[
    WebSocketRoute("/chat", chat),
    WebSocketRoute("/private", private),
    WebSocketRoute("/fail-before", fail_before),
    WebSocketRoute("/fail-after", fail_after),
])


def _fastapi() -> Any:
    from fastapi import FastAPI

    api = FastAPI()
    api.add_api_websocket_route("/chat", chat)
    api.add_api_websocket_route("/private", private)
    api.add_api_websocket_route("/fail-before", fail_before)
    api.add_api_websocket_route("/fail-after", fail_after)

    @api.websocket("/items/{item_id}")
    async def item(websocket: WebSocket, item_id: int, q: str = "none") -> None:
        await websocket.accept()
        await websocket.send_json({"item_id": item_id, "q": q})
        await websocket.close()

    return api


fastapi_app = _fastapi()

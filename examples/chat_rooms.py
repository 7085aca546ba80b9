"""A chat with rooms, served by 4 worker processes that share one port, through a Redis hub.

    redis-server --port 6379 --save '' --appendonly no     # or any Redis you have
    python examples/chat_rooms.py [redis://127.0.0.1:6379/0] [PORT]
    python -m wskit connect ws://127.0.0.1:8765/rooms/blue?name=ann

Each client joins the room its path names (``/rooms/<room>``, ``?name=`` for
its nick name). A line it sends reaches everyone in the room, whichever of the
4 workers they are connected to: the worker publishes it on the hub channel
``room:<room>``, Redis hands it to every worker, and each worker writes it to
its own members. Ctrl-C stops the 4 workers; the clients get 1001.
"""

from __future__ import annotations

import logging
import os
import sys
from urllib.parse import parse_qs, urlsplit

from wskit.asyncio import ServerConnection
from wskit.hub import Hub
from wskit.workers import serve_workers

WORKERS = 4
hub = Hub.from_url(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0")


async def chat(ws: ServerConnection) -> None:
    assert ws.request is not None
    url = urlsplit(ws.request.path)
    if not url.path.startswith("/rooms/") or len(url.path) == len("/rooms/"):
        await ws.close(1008, "connect to /rooms/<room>")
        return
    room = url.path[len("/rooms/"):]
    name = parse_qs(url.query).get("name", [f"guest-{ws.id.hex[:4]}"])[0]
    channel = f"room:{room}"
    hub.subscribe(channel, ws)  # unsubscribed when the connection closes
    await hub.publish(channel, f"* {name} joined {room} (worker pid {os.getpid()})")
    try:
        async for message in ws:
            if isinstance(message, str):
                await hub.publish(channel, f"{name}: {message}")
    finally:
        await hub.publish(channel, f"* {name} left")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(processName)s %(name)s: %(message)s")
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 8765
    serve_workers(chat, "127.0.0.1", port, workers=WORKERS, hub=hub,
                  on_start=lambda port, pids: print(f"chat on ws://127.0.0.1:{port}/rooms/<room> "
                                                    f"with {len(pids)} workers", flush=True))

"""wskit testee: a plain ASGI echo application on uvicorn with ``--ws wskit.asgi:UvicornProtocol``.

permessage-deflate is on (uvicorn's ``ws_per_message_deflate``), keepalive
is off, and the message size limit is above Autobahn's largest message
(16 MiB in 9.x).

Run: ``python tests/compliance/testees/uvicorn_server.py --port 9001``
"""

from __future__ import annotations

from typing import Any

import uvicorn

from wskit.asgi import UvicornProtocol

from _common import parse_args


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept, then send every message back unchanged until the disconnect."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        try:
            await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})
        except OSError:
            return  # the connection is closed: Autobahn's report says how


def main() -> None:
    """Serve on 127.0.0.1 until killed."""
    args = parse_args("server", __doc__ or "")
    uvicorn.run(echo, host="127.0.0.1", port=args.port, ws=UvicornProtocol, ws_max_size=64 * 2**20,
                ws_ping_interval=None, ws_per_message_deflate=not args.no_deflate, lifespan="off",
                log_level="warning")


if __name__ == "__main__":
    main()

"""Reference testee: python-websockets' asyncio echo server.

Not part of wskit: it proves the harness end to end and gives a baseline
to compare wskit's results with. permessage-deflate is on (the library's
default) and there is no message size limit.

Run: ``python tests/compliance/testees/websockets_server.py --port 9001``
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from _common import MAX_SIZE, parse_args


async def echo(ws: ServerConnection) -> None:
    """Send every received message back, unchanged, until the close."""
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def main() -> None:
    """Serve on 127.0.0.1 until killed."""
    args = parse_args("server", __doc__ or "")
    async with serve(
        echo,
        "127.0.0.1",
        args.port,
        compression=None if args.no_deflate else "deflate",
        max_size=MAX_SIZE,
        ping_interval=None,
        close_timeout=2,  # shortens the wait after a failed case; verdicts unchanged
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

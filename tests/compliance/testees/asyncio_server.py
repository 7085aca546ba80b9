"""wskit testee: the asyncio echo server (``wskit.asyncio.serve``).

permessage-deflate is on and there is no message size limit (Autobahn 9.x
sends messages of up to 16 MiB).

Run: ``python tests/compliance/testees/asyncio_server.py --port 9001``
"""

from __future__ import annotations

import asyncio
from typing import Any

from wskit.asyncio import serve
from wskit.exceptions import WSKitError

from _common import MAX_SIZE, deflate_options, parse_args


async def echo(ws: Any) -> None:
    """Send every received message back, unchanged, until the close."""
    try:
        async for message in ws:
            await ws.send(message)
    except WSKitError:
        pass  # the connection was closed abnormally: Autobahn's report says why


async def main() -> None:
    """Serve on 127.0.0.1 until killed."""
    args = parse_args("server", __doc__ or "")
    opts = deflate_options(serve, "server", not args.no_deflate)
    async with serve(echo, "127.0.0.1", args.port, max_size=MAX_SIZE, **opts) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())

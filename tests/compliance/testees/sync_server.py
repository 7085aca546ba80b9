"""wskit testee: the threaded echo server (``wskit.sync.serve``).

permessage-deflate is on and there is no message size limit.

Run: ``python tests/compliance/testees/sync_server.py --port 9001``
"""

from __future__ import annotations

from typing import Any

from wskit.exceptions import WSKitError
from wskit.sync import serve

from _common import MAX_SIZE, deflate_options, parse_args


def echo(ws: Any) -> None:
    """Send every received message back, unchanged, until the close."""
    try:
        for message in ws:
            ws.send(message)
    except WSKitError:
        pass  # the connection was closed abnormally: Autobahn's report says why


def main() -> None:
    """Serve on 127.0.0.1 until killed."""
    args = parse_args("server", __doc__ or "")
    opts = deflate_options(serve, "server", not args.no_deflate)
    with serve(echo, "127.0.0.1", args.port, max_size=MAX_SIZE, **opts) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()

"""Reference testee: python-websockets' asyncio echo client.

Not part of wskit: it proves the harness end to end and gives a baseline
to compare wskit's results with. permessage-deflate is on (the library's
default) and there is no message size limit.

Run: ``python tests/compliance/testees/websockets_client.py --url ws://127.0.0.1:9001
--agent websockets_client``
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from _common import MAX_SIZE, case_count_url, case_url, log, parse_args, slow_case, update_reports_url


async def run(base: str, agent: str, deflate: bool) -> None:
    """Run every case the fuzzing server offers, then ask for the reports."""
    opts: dict[str, Any] = {
        "compression": "deflate" if deflate else None,
        "max_size": MAX_SIZE,
        "ping_interval": None,
        "close_timeout": 2,  # shortens the wait after a failed case; verdicts unchanged
        "proxy": None,
    }
    async with connect(case_count_url(base), **opts) as ws:
        count = int(await ws.recv())
    log(f"{agent}: {count} cases")
    for case in range(1, count + 1):
        started = time.monotonic()
        try:
            async with connect(case_url(base, case, agent), **opts) as ws:
                async for message in ws:
                    await ws.send(message)
        except ConnectionClosed:
            pass  # the case ended with an abnormal close: the report says why
        except (WebSocketException, OSError) as exc:
            log(f"case {case}: {type(exc).__name__}: {exc}")
        slow_case(case, started)
    async with connect(update_reports_url(base, agent), **opts) as ws:
        async for _ in ws:  # the server closes once the reports are written
            pass


def main() -> None:
    """Parse the command line and run the cases."""
    args = parse_args("client", __doc__ or "")
    asyncio.run(run(args.url, args.agent, not args.no_deflate))


if __name__ == "__main__":
    main()

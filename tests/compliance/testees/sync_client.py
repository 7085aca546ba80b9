"""wskit testee: the blocking echo client (``wskit.sync.connect``).

permessage-deflate is on and there is no message size limit.

Run: ``python tests/compliance/testees/sync_client.py --url ws://127.0.0.1:9001
--agent sync_client``
"""

from __future__ import annotations

import time
from typing import Any

from wskit.exceptions import WSKitError
from wskit.sync import connect

from _common import (
    MAX_SIZE,
    case_count_url,
    case_url,
    deflate_options,
    log,
    parse_args,
    slow_case,
    update_reports_url,
)


def run(base: str, agent: str, deflate: bool) -> None:
    """Run every case the fuzzing server offers, then ask for the reports."""
    opts: dict[str, Any] = {"max_size": MAX_SIZE, **deflate_options(connect, "client", deflate)}
    with connect(case_count_url(base), **opts) as ws:
        count = int(ws.recv())
    log(f"{agent}: {count} cases")
    for case in range(1, count + 1):
        started = time.monotonic()
        try:
            with connect(case_url(base, case, agent), **opts) as ws:
                for message in ws:
                    ws.send(message)
        except (WSKitError, OSError) as exc:
            log(f"case {case}: {type(exc).__name__}: {exc}")
        slow_case(case, started)
    with connect(update_reports_url(base, agent), **opts) as ws:
        for _ in ws:  # the server closes once the reports are written
            pass


def main() -> None:
    """Parse the command line and run the cases."""
    args = parse_args("client", __doc__ or "")
    run(args.url, args.agent, not args.no_deflate)


if __name__ == "__main__":
    main()

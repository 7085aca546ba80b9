"""Helpers shared by the Autobahn|Testsuite testee programs.

Every testee is a small echo program run as a script:

* servers: ``python tests/compliance/testees/<name>_server.py --port N``
  listen on 127.0.0.1:N and echo every message until the peer closes;
* clients: ``python tests/compliance/testees/<name>_client.py --url ws://...``
  follow the fuzzing server's protocol: read ``/getCaseCount``, then for each
  case ``i`` connect to ``/runCase?case=i&agent=NAME`` and echo until the
  close, then connect to ``/updateReports?agent=NAME``.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

#: No message size limit: Autobahn 9.x sends messages of up to 16 MiB.
MAX_SIZE: None = None


def parse_args(kind: str, description: str) -> argparse.Namespace:
    """Parse a testee's command line.

    Args:
        kind: ``"server"`` (takes ``--port``) or ``"client"`` (takes ``--url``
            and ``--agent``).
        description: text for ``--help``.

    Returns:
        The parsed arguments: ``port`` (servers) or ``url`` and ``agent``
        (clients), and ``no_deflate`` for both.
    """
    parser = argparse.ArgumentParser(description=description)
    if kind == "server":
        parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    else:
        parser.add_argument("--url", required=True, help="fuzzing server base URL, e.g. ws://127.0.0.1:9001")
        parser.add_argument("--agent", required=True, help="agent name used in the reports")
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="do not offer/accept permessage-deflate (RFC 7692)",
    )
    return parser.parse_args()


def case_count_url(base: str) -> str:
    """Return the URL that answers the number of cases with one text message."""
    return f"{base.rstrip('/')}/getCaseCount"


def case_url(base: str, case: int, agent: str) -> str:
    """Return the URL that runs case number ``case`` (1-based) for ``agent``."""
    return f"{base.rstrip('/')}/runCase?case={case}&agent={quote(agent)}"


def update_reports_url(base: str, agent: str) -> str:
    """Return the URL that makes the fuzzing server write ``agent``'s reports."""
    return f"{base.rstrip('/')}/updateReports?agent={quote(agent)}"


def deflate_options(func: Callable[..., Any], side: str, enabled: bool) -> dict[str, Any]:
    """Return keyword arguments that switch permessage-deflate on or off.

    wskit's I/O layers are young; this accepts either spelling of the option
    (python-websockets' ``compression="deflate"`` or an ``extensions=`` list
    of wskit factories), whichever ``func`` declares.

    Args:
        func: the ``serve`` or ``connect`` callable.
        side: ``"server"`` or ``"client"``.
        enabled: whether permessage-deflate must be negotiated.

    Returns:
        Keyword arguments for ``func``.
    """
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signature
        params = {}  # type: ignore[assignment]
    if "compression" in params:
        return {"compression": "deflate" if enabled else None}
    if "extensions" in params:
        if not enabled:
            return {"extensions": []}
        from wskit.extensions import permessage_deflate as pmd

        factory = pmd.ServerPerMessageDeflateFactory() if side == "server" else pmd.ClientPerMessageDeflateFactory()
        return {"extensions": [factory]}
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if has_var_kw:
        return {"compression": "deflate" if enabled else None}
    return {}


def log(message: str) -> None:
    """Print a diagnostic line to stderr (the runner keeps it in a log file)."""
    print(message, file=sys.stderr, flush=True)


def slow_case(case: int, started: float, threshold: float = 3.0) -> None:
    """Log a case that took longer than ``threshold`` seconds (a stall hint)."""
    elapsed = time.monotonic() - started
    if elapsed > threshold:
        log(f"case {case}: took {elapsed:.1f} s")

"""Smoke test of ``make soak`` (bench/soak.py) with tiny counts.

The soak script is run as ``make soak`` runs it (server in a child process,
client in the script's process, both on 127.0.0.1), with 20 connections
instead of thousands, so that it cannot rot unnoticed: in both cycles every
echo must come back intact and every connection must get its closing answer,
and the server must come back to its baseline of tasks, threads and file
descriptors (and RSS within 10%: the script's exit status).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"


@pytest.mark.parametrize("server", ["asyncio", "sync"])
def test_soak_loses_nothing_and_leaks_nothing(server: str) -> None:
    run = subprocess.run(
        [sys.executable, str(SOAK), "--server", server, "--idle", "20", "--sync-idle", "20",
         "--conns", "20", "--sync-conns", "20", "--messages", "10", "--time-limit", "60", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.stdout, run.stderr
    [result] = json.loads(run.stdout.splitlines()[-1])
    assert result["server"] == server
    assert result["idle"] == 20
    for cycle in (result["warmup"], result["run"]):
        assert cycle["idle_stats"]["connections"] == 20  # all open at once, on the server side too
        assert cycle["echoed"] == 20 * 10
    assert result["echoed"] == 2 * 20 * 10
    assert result["lost"] == result["wrong"] == 0
    assert result["close_unanswered"] == 0
    assert result["leaked"] == {}
    base, final = result["baseline"], result["final"]
    assert (final["tasks"], final["threads"], final["fds"]) == (base["tasks"], base["threads"], base["fds"])
    assert run.returncode == 0, run.stdout + run.stderr

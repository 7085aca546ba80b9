"""Smoke test of the HTTP/2 row of ``make bench`` (bench/echo.py, server ``wskit-http2``).

The server is started as the benchmark starts it (TLS with a certificate the
openssl binary makes) and driven by the benchmark's two TLS loads with tiny
sizes: WebSockets on separate TLS connections, and the same number as streams
of one HTTP/2 connection. Timing is not checked, only that both loads
complete and the CPU probe answers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_both_http2_bench_loads_complete() -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the wskit-http2 bench server needs the openssl binary for its certificate")
    spec = importlib.util.spec_from_file_location("bench_echo_http2", BENCH / "echo.py")
    assert spec is not None and spec.loader is not None
    echo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(echo)
    port = echo.free_port()
    proc = subprocess.Popen([sys.executable, str(BENCH / "echo_servers.py"), "wskit-http2", str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        for http2 in (False, True):
            cpu, wall, n = echo.run_load(
                proc, lambda http2=http2: asyncio.wait_for(echo.pipelined_tls(port, 5, 10, 2, http2=http2), 60))
            assert cpu >= 0 and wall > 0 and n == 100
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

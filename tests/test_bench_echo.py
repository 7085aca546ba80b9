"""Smoke test of ``make bench``'s loopback echo benchmark (bench/echo.py).

Each wskit server of ``bench/echo_servers.py`` (and the library-free floor)
is started as the benchmark starts it and driven by the benchmark's own load
client with tiny loads, so the benchmark cannot rot unnoticed. Timing is not
checked, only that every load completes and the CPU probe answers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load_echo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_echo", BENCH / "echo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


echo = load_echo()


@pytest.fixture(params=["wskit-asyncio", "wskit-pure", "wskit-sync", "wskit-uvloop", "wskit-aiofastnet", "floor"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], int]]:
    impl = request.param
    if impl == "wskit-uvloop":
        pytest.importorskip("uvloop")
    if impl == "wskit-aiofastnet":
        pytest.importorskip("aiofastnet")
    port = echo.free_port()
    proc = subprocess.Popen([sys.executable, str(BENCH / "echo_servers.py"), impl, str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""
        yield proc, port
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_every_load_completes(server: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = server
    loads = [lambda: asyncio.wait_for(echo.sequential(port, 20), 20),
             lambda: asyncio.wait_for(echo.pipelined(port, 3, 10, 2), 20)]
    if "floor" not in proc.args:  # type: ignore[operator]  # the floor only echoes small messages
        loads.append(lambda: asyncio.wait_for(echo.big(port, 1), 20))
    counts = []
    for load in loads:
        cpu, wall, n = echo.run_load(proc, load)
        assert cpu >= 0 and wall > 0
        counts.append(n)
    assert counts[:2] == [20, 60]

"""Smoke test of ``make bench``'s loopback echo benchmark (bench/echo.py).

Each wskit server of ``bench/echo_servers.py`` (and the library-free floor)
is started as the benchmark starts it and driven by the benchmark's own load
client with tiny loads, so the benchmark cannot rot unnoticed. Timing is not
checked, only that every load completes and the CPU probe answers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
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


@pytest.fixture(params=["wskit-asyncio", "wskit-pure", "wskit-sync", "wskit-uvloop", "wskit-aiofastnet",
                        "wskit-callback", "wskit-callback-aiofastnet", "floor"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[str], int]]:
    impl = request.param
    if impl == "wskit-uvloop":
        pytest.importorskip("uvloop")
    if impl.endswith("aiofastnet"):
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


def test_round_order_runs_each_load_on_every_server_back_to_back() -> None:
    plan = [(impl, load, None) for impl in ("a", "b", "c") for load in ("seq", "big")]
    plan.append(("h2", "tls", None))
    first = [(impl, load) for impl, load, _ in echo.round_order(plan, 0)]
    second = [(impl, load) for impl, load, _ in echo.round_order(plan, 1)]
    assert first == [("a", "seq"), ("b", "seq"), ("c", "seq"), ("a", "big"), ("b", "big"), ("c", "big"),
                     ("h2", "tls")]
    # Every other round the servers go the other way round, load by load.
    assert second == [("c", "seq"), ("b", "seq"), ("a", "seq"), ("c", "big"), ("b", "big"), ("a", "big"),
                      ("h2", "tls")]
    assert echo.round_order(plan, -1) == echo.round_order(plan, 1)  # warm-up rounds too


def test_paired_ratio_compares_rounds_not_medians() -> None:
    # The machine's speed swings from round to round, the other server is
    # 10% cheaper in each, and one of its rounds met a hiccup (200). Medians
    # taken apart would say 0.99x (99 against 100); round by round the
    # hiccup is one ratio among five.
    base = [88.0, 110.0, 88.0, 110.0, 99.0]
    other = [80.0, 100.0, 80.0, 100.0, 200.0]
    assert statistics.median(base) / statistics.median(other) == 0.99
    mid, low, high = echo.paired_ratio(base, other)
    assert (round(mid, 6), round(low, 6), round(high, 6)) == (1.1, 1.1, 1.1)
    assert echo.paired_ratio([30.0], [20.0]) == (1.5, 1.5, 1.5)
    mid, low, high = echo.paired_ratio([10.0, 20.0, 30.0, 40.0, 50.0], [10.0, 10.0, 10.0, 10.0, 10.0])
    assert (mid, low, high) == (3.0, 2.0, 4.0)


def test_whole_run_reports_paired_ratios_and_the_allocator() -> None:
    # The benchmark end to end, one tiny round: python-websockets is in the
    # development tools, so the ratio table is there too.
    pytest.importorskip("websockets")
    done = subprocess.run([sys.executable, str(BENCH / "echo.py"), "--quick", "--repeat", "2", "--warmup", "0",
                           "--keep-freed-memory", "--impl", "wskit-asyncio", "--impl", "websockets"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "allocator: freed memory kept for reuse (--keep-freed-memory: glibc's MALLOC_* variables)"
    for load in ("sequential 32 B", "pipelined 50x32 B", "1 MiB echo"):
        ratio = [line for line in lines if line.startswith("  wskit-asyncio") and load in line]
        assert len(ratio) == 1, done.stdout
        assert ratio[0].rstrip().endswith("]") and "x  [" in ratio[0]
    assert "median of the rounds' ratios" in done.stdout

"""End-to-end echo benchmark over loopback: server CPU time per message.

Starts each echo server (bench/echo_servers.py) in its own process, drives it
with the same load client, and asks the server process for its CPU time
(all threads, exited ones included) before and after each load. CPU time per
message is steadier than wall-clock rates on these shared machines. Each
round measures one load on every server back to back (in reversed order
every other round), and a ratio between two servers is the median of the
rounds' ratios, with its interquartile range.

Loads:
  sequential  one client, 32-byte text round trips one at a time
  pipelined   50 clients, each sends a burst of 32-byte messages, then reads the echoes
  1 MiB       one client, 1 MiB binary round trips

wskit-http2 (TLS) gets its own two loads, the same pipelined burst through
wskit's asyncio clients: 50 WebSockets on 50 TLS connections (HTTP/1.1), and
50 WebSockets as streams of one HTTP/2 connection (RFC 8441).

    python bench/echo.py [--quick] [--repeat N] [--keep-freed-memory] [--impl wskit-asyncio --impl websockets ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wskit import BinaryMessage, ClientProtocol, TextMessage

HERE = Path(__file__).resolve().parent
IMPLS = ["wskit-asyncio", "wskit-pure", "wskit-uvloop", "wskit-aiofastnet", "wskit-uvloop-aiofastnet",
         "wskit-callback", "wskit-callback-aiofastnet", "wskit-callback-uvloop-aiofastnet", "wskit-sync",
         "websockets", "picows", "aiohttp", "floor", "floor-aiofastnet",
         "uvicorn-wskit", "uvicorn-websockets-sansio", "uvicorn-wsproto", "wskit-http2"]
# The same ASGI echo app on uvicorn with each of its WebSocket implementations.
UVICORN_OWN = ("uvicorn-websockets-sansio", "uvicorn-wsproto")
# "floor" is no library: the least an asyncio.Protocol must do to echo small
# messages (see echo_servers.py), i.e. what the loop and system calls cost.
SMALL_ONLY = {"floor", "floor-aiofastnet"}
WIDTH = max(len(impl) for impl in IMPLS) + 2  # the servers' column
# glibc's allocator, told through its environment variables to keep freed
# memory (the values bench/run.py's --keep-freed-memory gives mallopt): memory
# freed when a connection ends is not given back to the system, so the next
# connection's buffers need no fresh pages. Other allocators ignore them.
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def cpu_seconds(proc: subprocess.Popen[str]) -> float:
    """Ask the server process for its CPU time (all threads, exited ones included)."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("cpu\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client:
    """A minimal load client: wskit's sans-I/O ClientProtocol on asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proto: ClientProtocol) -> None:
        self.reader, self.writer, self.proto = reader, writer, proto
        self.pending: list[object] = []

    @classmethod
    async def open(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        proto = ClientProtocol(f"ws://127.0.0.1:{port}/", extensions=[], max_size=None)
        writer.writelines(proto.connect())
        self = cls(reader, writer, proto)
        while not self.pending:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("server closed during the handshake")
            self.pending += proto.receive_data(data)
        self.pending = self.pending[1:]  # the Response
        self.pending += proto.receive_data(b"")
        return self

    async def messages(self, n: int) -> list[object]:
        out: list[object] = []
        while len(out) + len(self.pending) < n:
            data = await self.reader.read(262144)
            if not data:
                raise ConnectionError("server closed")
            self.pending += [e for e in self.proto.receive_data(data)
                             if isinstance(e, TextMessage | BinaryMessage)]
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    async def close(self) -> None:
        self.writer.writelines(self.proto.send_close())
        try:
            await asyncio.wait_for(self.reader.read(), 2)
        except (TimeoutError, ConnectionError):
            pass
        self.writer.close()


async def sequential(port: int, n: int) -> int:
    c = await Client.open(port)
    msg = "x" * 32
    for _ in range(n):
        c.writer.writelines(c.proto.send_text(msg))
        await c.messages(1)
    await c.close()
    return n


async def pipelined(port: int, clients: int, burst: int, rounds: int) -> int:
    conns = [await Client.open(port) for _ in range(clients)]
    msg = "x" * 32

    async def run(c: Client) -> None:
        for _ in range(rounds):
            c.writer.writelines([b for _ in range(burst) for b in c.proto.send_text(msg)])
            await c.messages(burst)

    await asyncio.gather(*(run(c) for c in conns))
    await asyncio.gather(*(c.close() for c in conns))
    return clients * burst * rounds


async def big(port: int, n: int) -> int:
    c = await Client.open(port)
    payload = os.urandom(2**20)
    for _ in range(n):
        c.writer.writelines(c.proto.send_binary(payload))
        await c.messages(1)
    await c.close()
    return n


def insecure_tls() -> Any:
    """A client TLS context for the benchmark's self-signed certificate (loopback only)."""
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def pipelined_tls(port: int, clients: int, burst: int, rounds: int, http2: bool) -> int:
    """The pipelined load through wskit's asyncio clients over TLS: HTTP/1.1 connections or HTTP/2 streams."""
    from wskit.asyncio import connect
    from wskit.asyncio import http2 as h2

    uri = f"wss://127.0.0.1:{port}/"
    options: dict[str, Any] = {"compression": None, "max_size": None, "ping_interval": None}
    if http2:
        context = insecure_tls()  # one context: the streams share one HTTP/2 connection
        conns = await asyncio.gather(*(h2.connect(uri, ssl=context, **options) for _ in range(clients)))
        assert len({ws.transport._carrier for ws in conns}) == 1  # type: ignore[union-attr]
    else:
        conns = [await connect(uri, ssl=insecure_tls(), **options) for _ in range(clients)]
    msg = "x" * 32

    async def run(ws: Any) -> None:
        for _ in range(rounds):
            for _ in range(burst):
                await ws.send(msg)
            for _ in range(burst):
                await ws.recv()

    await asyncio.gather(*(run(ws) for ws in conns))
    await asyncio.gather(*(ws.close() for ws in conns))
    return clients * burst * rounds


def run_load(proc: subprocess.Popen[str], coro_factory: object) -> tuple[float, float, int]:
    cpu0 = cpu_seconds(proc)
    t0 = time.perf_counter()
    n = asyncio.run(coro_factory())  # type: ignore[operator]
    wall = time.perf_counter() - t0
    return cpu_seconds(proc) - cpu0, wall, n


def round_order(plan: list[tuple[str, str, Any]], r: int) -> list[tuple[str, str, Any]]:
    """The order of round ``r``'s measurements: load by load, the servers back to back.

    Each load is measured on every server before the next load starts, so
    the servers compared in one load run seconds apart, and the servers'
    order is reversed every other round (A B C, then C B A), so that no
    server always runs first after a change of load or right after another
    one: a drift of the machine's speed touches every server alike.
    """
    loads = list(dict.fromkeys(load for _, load, _ in plan))
    order: list[tuple[str, str, Any]] = []
    for load in loads:
        runs = [step for step in plan if step[1] == load]
        order += runs if r % 2 == 0 else runs[::-1]
    return order


def paired_ratio(base: list[float], other: list[float]) -> tuple[float, float, float]:
    """``base / other`` round by round: median, first and third quartiles.

    Round ``i`` of both lists ran back to back (:func:`round_order`), so each
    round's ratio compares the servers under the same machine state; the
    median of those ratios is steadier than the ratio of two medians taken
    over rounds that each server met in different states.
    """
    ratios = sorted(b / o for b, o in zip(base, other))
    if len(ratios) < 2:
        return ratios[0], ratios[0], ratios[0]
    low, _, high = statistics.quantiles(ratios, n=4, method="inclusive")
    return statistics.median(ratios), low, high


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", action="append", choices=IMPLS, help="servers to measure (default: all available)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per load (medians reported)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (caches, allocators)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="every server keeps freed memory for reuse (glibc's MALLOC_* variables): "
                             "no first-touch page faults when a connection's buffers are allocated again")
    args = parser.parse_args()
    impls = args.impl or IMPLS
    scale = 0.25 if args.quick else 1.0
    loads = {
        "sequential 32 B": lambda port: sequential(port, int(4000 * scale)),
        "pipelined 50x32 B": lambda port: pipelined(port, 50, 100, max(1, int(8 * scale))),
        "1 MiB echo": lambda port: big(port, max(4, int(40 * scale))),
    }
    tls_loads = {
        "50x32 B, 50 TLS": lambda port: pipelined_tls(port, 50, 100, max(1, int(8 * scale)), http2=False),
        "50x32 B, 1 HTTP/2": lambda port: pipelined_tls(port, 50, 100, max(1, int(8 * scale)), http2=True),
    }
    procs: dict[str, tuple[subprocess.Popen[str], int]] = {}
    results: dict[tuple[str, str], float] = {}
    env = dict(os.environ, **KEEP_FREED_MEMORY) if args.keep_freed_memory else None
    print("allocator: " + ("freed memory kept for reuse (--keep-freed-memory: glibc's MALLOC_* variables)"
                           if env else "as it is (glibc: its default trimming)"))
    try:
        for impl in impls:
            port = free_port()
            proc = subprocess.Popen([sys.executable, str(HERE / "echo_servers.py"), impl, str(port)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=env)
            line = proc.stdout.readline() if proc.stdout else ""
            if line.strip() != "ready":
                err = proc.stderr.read() if proc.stderr else ""
                print(f"{impl:<{WIDTH}}unavailable: {err.strip().splitlines()[-1] if err.strip() else 'did not start'}")
                proc.kill()
                proc.wait()
                continue
            procs[impl] = (proc, port)
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        plan = [(impl, load, make) for impl in procs
                for load, make in (tls_loads if impl == "wskit-http2" else loads).items()
                if not (impl in SMALL_ONLY and load == "1 MiB echo")]
        for r in range(-args.warmup, args.repeat):
            for impl, load, make in round_order(plan, r):
                proc, port = procs[impl]
                cpu, wall, n = run_load(proc, lambda make=make, port=port: make(port))
                if r >= 0:
                    samples.setdefault((impl, load), []).append((cpu / n * 1e6, n / wall))
    finally:
        for proc, _ in procs.values():
            proc.kill()
            proc.wait()
    cpus = {key: [c for c, _ in runs] for key, runs in samples.items()}  # us per message, round by round
    print(f"{'server':<{WIDTH}}{'load':<20}{'CPU us/msg':>12}{'spread':>16}{'msgs/s':>12}")
    for (impl, load), runs in samples.items():
        cpu_us = results[(impl, load)] = statistics.median(cpus[(impl, load)])
        low, high = min(cpus[(impl, load)]), max(cpus[(impl, load)])
        print(f"{impl:<{WIDTH}}{load:<20}{cpu_us:12.1f}{f'{low:.1f}-{high:.1f}':>16}"
              f"{statistics.median(r for _, r in runs):12.0f}")
    for base in [b for b in ("picows", "websockets") if any(k[0] == b for k in results)]:
        print(f"\nserver CPU per message, {base} / other (> 1: other uses less CPU); "
              "median of the rounds' ratios [interquartile range]")
        for impl, load in samples:
            if impl != base and (base, load) in samples:
                mid, low, high = paired_ratio(cpus[(base, load)], cpus[(impl, load)])
                print(f"  {impl:<{WIDTH}}{load:<20}{mid:6.2f}x  [{low:.2f}-{high:.2f}]")
    if ("wskit-http2", "50x32 B, 1 HTTP/2") in results and ("wskit-http2", "50x32 B, 50 TLS") in results:
        ratio = results[("wskit-http2", "50x32 B, 50 TLS")] / results[("wskit-http2", "50x32 B, 1 HTTP/2")]
        print(f"\nHTTP/2: server CPU per message, 50 TLS connections / 50 streams on one HTTP/2 connection: "
              f"{ratio:.2f}x (> 1: HTTP/2 uses less)")
    own = [(impl, load) for (impl, load) in results if impl in UVICORN_OWN]
    if any(k[0] == "uvicorn-wskit" for k in results) and own:
        print("\nuvicorn: server CPU per message, best of uvicorn's own backends / uvicorn-wskit (>= 1: wskit wins); "
              "median of the rounds' ratios [interquartile range]")
        for (impl, load), cpu in results.items():
            if impl != "uvicorn-wskit":
                continue
            rivals = {i: results[(i, load)] for i in UVICORN_OWN if (i, load) in results}
            if rivals:
                best = min(rivals, key=lambda i: rivals[i])
                mid, low, high = paired_ratio(cpus[(best, load)], cpus[(impl, load)])
                print(f"  {load:<20}{mid:6.2f}x  [{low:.2f}-{high:.2f}]  "
                      f"(best: {best}, {rivals[best]:.1f} vs {cpu:.1f} us)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""RSS per idle connection: each echo server of bench/echo_servers.py, measured alike.

For each server: start it in its own process, open and close a warm-up batch
of connections (allocator and module caches), read the server process's RSS
(``VmRSS`` in ``/proc/PID/status``), open N WebSocket connections that stay
idle (handshake done, nothing sent), wait until every handshake is answered,
read the RSS again and report the difference divided by N. The client side
is plain blocking sockets with wskit's sans-I/O client in this process, the
same for every server.

    python bench/idle_rss.py [--conns 2000] [--impl wskit-asyncio --impl picows ...]
"""

from __future__ import annotations

import argparse
import gc
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wskit import ClientProtocol
from wskit.events import Event

HERE = Path(__file__).resolve().parent
IMPLS = ["wskit-asyncio", "wskit-aiofastnet", "picows", "websockets"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_idle(port: int, n: int, batch: int = 50) -> list[socket.socket]:
    """Open ``n`` WebSocket connections and complete their handshakes; return the sockets.

    In batches, so that the server's listen backlog never overflows.
    """
    socks: list[socket.socket] = []
    for start in range(0, n, batch):
        opened = []
        for _ in range(min(batch, n - start)):
            sock = socket.create_connection(("127.0.0.1", port))
            proto = ClientProtocol(f"ws://127.0.0.1:{port}/", extensions=[])
            sock.sendall(b"".join(proto.connect()))
            opened.append((sock, proto))
        for sock, proto in opened:
            events: list[Event] = []
            while not events:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed a connection during the handshake")
                events = proto.receive_data(data)
            socks.append(sock)
    return socks


def measure(impl: str, conns: int, warmup: int) -> float | None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(HERE / "echo_servers.py"), impl, str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "ready":
            err = proc.stderr.read() if proc.stderr else ""
            print(f"{impl:<26}unavailable: {err.strip().splitlines()[-1] if err.strip() else 'did not start'}")
            return None
        for sock in open_idle(port, warmup):
            sock.close()
        time.sleep(0.5)  # the server notices the closes
        before = rss_kib(proc.pid)
        socks = open_idle(port, conns)
        time.sleep(0.5)
        after = rss_kib(proc.pid)
        per = (after - before) / conns
        print(f"{impl:<26}{before / 1024:9.1f} MiB -> {after / 1024:9.1f} MiB   {per:7.2f} KiB per idle connection",
              flush=True)
        for sock in socks:
            sock.close()
        gc.collect()
        return per
    finally:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", action="append", help=f"servers to measure (default: {', '.join(IMPLS)})")
    parser.add_argument("--conns", type=int, default=2000, help="idle connections per server")
    parser.add_argument("--warmup", type=int, default=200, help="connections opened and closed first")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per server (interleaved)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.conns + 100
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
        if hard < need:
            args.conns = hard - 100
            print(f"RLIMIT_NOFILE hard limit {hard}: {args.conns} connections")
    results: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for impl in args.impl or IMPLS:
            per = measure(impl, args.conns, args.warmup)
            if per is not None:
                results.setdefault(impl, []).append(per)
    if "picows" in results:
        base = min(results["picows"])
        print("\nRSS per idle connection, picows / other (>= 1: other uses no more)")
        for impl, values in results.items():
            if impl != "picows":
                print(f"  {impl:<26}{base / min(values):6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

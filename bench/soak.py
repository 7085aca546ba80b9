"""Scale and soak: many connections on one server process, nothing lost, nothing leaked.

The server (wskit.asyncio or wskit.sync, an echo handler, default options) runs
in a child process of this script; the client (wskit's sans-I/O
``ClientProtocol`` on an ``asyncio.Protocol``, no compression offered) runs
here. Everything uses 127.0.0.1. For each server, two cycles (the first one
warms up the allocators: pymalloc's arenas and malloc's heap keep much of what
they grew to, so only the second shows whether memory still grows):

  idle      ``--idle`` (asyncio) or ``--sync-idle`` (sync) connections opened
            and left idle: server RSS per idle connection (first cycle, from
            the cold start)
  echo      while those stay open, ``--conns`` (``--sync-conns``) more, each echoing
            ``--messages`` text and binary messages: every echo is checked
            (count, order, type, contents)
  close     every connection closed by the client (each must get the 1000
            answer: the idle ones were still alive)

After the second cycle the server must be back to its baseline (taken after
the first): the same number of asyncio tasks, threads and file descriptors,
no connection or handler left, and RSS within 10%.

The server process answers ``stats`` on its stdin with one JSON line, after a
``gc.collect()``: RSS, tasks (``len(asyncio.all_tasks())``), threads
(``threading.active_count()``), file descriptors (``/proc/self/fd``), open
connections, live handlers and ``sys.getallocatedblocks()``; ``trim`` does the
same after glibc's ``malloc_trim(0)``.

Both processes raise RLIMIT_NOFILE up to the hard limit; when the hard limit,
the ephemeral port range or (sync) the thread limits are too small for the
counts asked, the counts are scaled down and the reason printed.

    python bench/soak.py                      # make soak: 10,000 idle + 1,000 x 100 (asyncio), 2,000 + 500 x 100 (sync)
    python bench/soak.py --idle 20 --sync-idle 20 --conns 20 --sync-conns 20 --messages 10 --json

Exit status 0 when nothing was lost and nothing leaked, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wskit import BinaryMessage, ClientProtocol, Close, Ping, Response, State, TextMessage

HOST = "127.0.0.1"
MEMORY_TOLERANCE = 0.10  # RSS after all closed may exceed the baseline by this fraction
FD_MARGIN = 64  # descriptors a process needs besides its connections
OPENING = 100  # connections being opened at once (below the server's listen backlog)
SETTLE_SECONDS = 30.0  # how long the server may take to release a closed connection
BLOCKS_SLACK = 1000  # Python blocks a cycle may add besides half a block per connection (caches, the stats)
COUNTS = ("tasks", "threads", "fds", "connections", "handlers")  # must come back to the baseline


# -- both processes ----------------------------------------------------------------


def raise_fd_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards ``wanted`` (at most the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# -- the server process --------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _stats(command: str, tasks: int, connections: int, handlers: int) -> str:
    gc.collect()
    if command == "trim":  # give the free pages malloc keeps back to the system first
        _malloc_trim()
    return json.dumps({
        "rss": _rss(), "tasks": tasks, "threads": threading.active_count(),
        "fds": len(os.listdir("/proc/self/fd")), "connections": connections, "handlers": handlers,
        "blocks": sys.getallocatedblocks(),
    })


def serve_asyncio(fd_limit: int) -> None:
    from wskit.asyncio import ServerConnection, serve

    handlers = 0

    async def echo(ws: ServerConnection) -> None:
        nonlocal handlers
        handlers += 1
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            handlers -= 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stdin = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        try:
            async with serve(echo, HOST, 0) as server:
                port = server.sockets[0].getsockname()[1]
                print(f"ready {port} {fd_limit}", flush=True)
                while command := (await stdin.readline()).decode().strip():
                    print(_stats(command, len(asyncio.all_tasks()), len(server.connections), handlers), flush=True)
        finally:
            transport.close()

    asyncio.run(main())


def serve_sync(fd_limit: int) -> None:
    from wskit.sync import ServerConnection, serve

    handlers = 0
    lock = threading.Lock()

    def echo(ws: ServerConnection) -> None:
        nonlocal handlers
        with lock:
            handlers += 1
        try:
            for message in ws:
                ws.send(message)
        finally:
            with lock:
                handlers -= 1

    with serve(echo, HOST, 0) as server:
        port = server.socket.getsockname()[1]
        thread = threading.Thread(target=server.serve_forever, name="serve_forever")
        thread.start()
        print(f"ready {port} {fd_limit}", flush=True)
        for line in sys.stdin:
            print(_stats(line.strip(), 0, len(server.connections), handlers), flush=True)
        server.shutdown()
        thread.join()


# -- the client (this process) --------------------------------------------------------


class Peer(asyncio.Protocol):
    """One client connection: sans-I/O ClientProtocol on an asyncio transport."""

    def __init__(self, uri: str) -> None:
        self.proto = ClientProtocol(uri, extensions=[], max_size=None)
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int | None] = loop.create_future()  # the server's close code
        self.received: list[str | bytes] = []
        self.expected = 0
        self.complete: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.writelines(self.proto.connect())

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        for event in self.proto.receive_data(data):
            if isinstance(event, Response):
                self.opened.set_result(None)
            elif isinstance(event, TextMessage | BinaryMessage):
                self.received.append(event.data)
                if self.complete is not None and len(self.received) >= self.expected:
                    self.complete.set_result(None)
                    self.complete = None
            elif isinstance(event, Ping) and self.proto.state is State.OPEN:  # the server's keepalive
                self.transport.writelines(self.proto.send_pong(event.data))
            elif isinstance(event, Close):
                self.close_code = event.code

    def connection_lost(self, exc: Exception | None) -> None:
        error = ConnectionError(f"connection lost: {exc}")
        if not self.opened.done():
            self.opened.set_exception(error)
        if self.complete is not None:
            self.complete.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(self.close_code)

    def expect(self, count: int) -> asyncio.Future[None]:
        """A future done once ``count`` messages in all were received."""
        self.expected = count
        self.complete = asyncio.get_running_loop().create_future()
        if len(self.received) >= count:
            self.complete.set_result(None)
        return self.complete

    async def close(self) -> int | None:
        """Start the closing handshake; return the code of the server's answering Close."""
        assert self.transport is not None
        self.transport.writelines(self.proto.send_close(1000))
        return await self.closed


async def open_peers(port: int, count: int) -> list[Peer]:
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(OPENING)
    uri = f"ws://{HOST}:{port}/"

    async def one() -> Peer:
        async with limit:
            _, peer = await loop.create_connection(lambda: Peer(uri), HOST, port)
            await peer.opened
            return peer

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def close_peers(peers: list[Peer]) -> dict[str, int]:
    """Close every peer; return how many got each answer ("1000", other codes, "none": no Close)."""
    limit = asyncio.Semaphore(OPENING * 4)

    async def one(peer: Peer) -> int | None:
        async with limit:
            return await peer.close()

    return dict(Counter("none" if code is None else str(code) for code in await asyncio.gather(*map(one, peers))))


def unanswered(closes: dict[str, int]) -> int:
    return sum(n for code, n in closes.items() if code != "1000")


def message(conn: int, index: int) -> str | bytes:
    text = f"{conn}:{index}:" + "x" * (index % 64)
    return text if index % 2 == 0 else text.encode()


async def echo_all(peers: list[Peer], messages: int) -> tuple[int, int]:
    """Each peer sends ``messages`` messages at once, then waits for them; return (lost, wrong)."""

    async def one(conn: int, peer: Peer) -> tuple[int, int]:
        assert peer.transport is not None
        peer.received = []
        done = peer.expect(messages)
        sent = [message(conn, i) for i in range(messages)]
        for m in sent:
            peer.transport.writelines(peer.proto.send_text(m) if isinstance(m, str) else peer.proto.send_binary(m))
        with contextlib.suppress(ConnectionError):  # what did not come back counts as lost
            await done
        got = peer.received
        lost = messages - len(got)
        wrong = sum(a != b or type(a) is not type(b) for a, b in zip(sent, got)) + max(0, len(got) - messages)
        return lost, wrong

    results = await asyncio.gather(*(one(i, p) for i, p in enumerate(peers)))
    return sum(r[0] for r in results), sum(r[1] for r in results)


class Server:
    """The server child process and its control channel."""

    def __init__(self, kind: str, fd_limit: int) -> None:
        # glibc gives threads heaps of their own (up to 8 per CPU); what each keeps after its
        # threads exit depends on which threads ran where, and blurs the sync server's RSS
        # from one cycle to the next. Two heaps make RSS show what the server really keeps.
        env = {**os.environ, "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--fd-limit", str(fd_limit)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError(f"the {kind} server did not start")
        self.port, self.fd_limit = int(line[1]), int(line[2])

    async def stats(self, command: str = "stats") -> dict[str, int]:
        """The server's counts (``stats``), or the same after giving free heap pages back (``trim``)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{command}\n")
        self.proc.stdin.flush()
        line = await asyncio.get_running_loop().run_in_executor(None, self.proc.stdout.readline)
        return dict(json.loads(line))

    async def settle(self, baseline: dict[str, int] | None = None, connections: int = 0) -> dict[str, int]:
        """Poll the server until it holds ``connections`` connections (or SETTLE_SECONDS passed).

        With ``baseline``: until tasks, threads and descriptors are back to it.
        Without: until the server has ``connections`` connections, each in its
        handler, and two readings in a row agree.
        """
        deadline = time.monotonic() + SETTLE_SECONDS
        previous: dict[str, int] = {}
        while True:
            stats = await self.stats()
            if baseline is not None:
                back = all(stats[k] <= baseline[k] for k in COUNTS)
            else:
                back = stats["connections"] == stats["handlers"] == connections and all(
                    stats[k] == previous.get(k) for k in COUNTS)
            if back or time.monotonic() > deadline:
                return stats
            previous = stats
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def limits(idle: int, conns: int, kind: str) -> tuple[int, list[str]]:
    """Scale ``idle`` down to what this machine allows; return it and the reasons."""
    notes: list[str] = []
    need = idle + conns + FD_MARGIN
    soft = raise_fd_limit(need)
    if soft < need:
        idle = max(0, soft - conns - FD_MARGIN)
        notes.append(f"file limit: hard RLIMIT_NOFILE is {soft}, so {idle} idle connections instead")
    with contextlib.suppress(OSError, ValueError):
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        ports = high - low + 1 - 1000  # leave some for the rest of the machine
        if idle + conns > ports:
            idle = max(0, ports - conns)
            notes.append(f"ephemeral ports: {high - low + 1} in {low}-{high}, so {idle} idle connections instead")
    if kind == "sync":
        # A wskit.sync server connection runs three threads: handler, reader, keepalive.
        with contextlib.suppress(OSError, ValueError):
            cap = min(int(Path(p).read_text()) for p in ("/proc/sys/kernel/threads-max", "/proc/sys/kernel/pid_max"))
            room = (cap // 2) // 3 - conns  # half of the machine's threads at most
            if idle > room:
                idle = max(0, room)
                notes.append(f"threads: 3 per sync connection and a limit of {cap}, so {idle} idle connections")
    return idle, notes


async def cycle(server: Server, idle: int, conns: int, messages: int) -> dict[str, Any]:
    """Open ``idle`` idle connections, echo on ``conns`` more, close them all; the server's counts on the way."""
    c: dict[str, Any] = {}
    t0 = time.perf_counter()
    peers = await open_peers(server.port, idle)
    c["idle_stats"] = await server.settle(connections=idle)  # the server may still be starting handlers
    c["open_seconds"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    echoers = await open_peers(server.port, conns)
    c["lost"], c["wrong"] = await echo_all(echoers, messages)
    c["echo_seconds"] = time.perf_counter() - t1
    c["echoed"] = conns * messages - c["lost"]
    c["peak"] = await server.stats()
    t2 = time.perf_counter()
    c["closes"] = dict(Counter(await close_peers(echoers)) + Counter(await close_peers(peers)))
    c["close_unanswered"] = unanswered(c["closes"])
    c["close_seconds"] = time.perf_counter() - t2
    return c


async def soak(kind: str, idle: int, conns: int, messages: int) -> dict[str, Any]:
    idle, notes = limits(idle, conns, kind)
    for note in notes:
        print(f"  [{kind}] scaled down: {note}", flush=True)
    server = Server(kind, idle + conns + FD_MARGIN)
    result: dict[str, Any] = {"server": kind, "idle": idle, "conns": conns, "messages": messages, "notes": notes}
    try:
        # A few connections first: what the first connection loads once (modules, caches) is not per connection.
        await close_peers(await open_peers(server.port, 10))
        cold = result["cold"] = await server.settle()
        # Warm-up: a whole cycle. The allocators (pymalloc's arenas, malloc's heap) keep
        # much of what they grew to; the cycle after it shows whether memory still grows.
        warm = result["warmup"] = await cycle(server, idle, conns, messages)
        result["rss_per_idle"] = (warm["idle_stats"]["rss"] - cold["rss"]) / idle if idle else 0.0
        base = result["baseline"] = await server.settle()
        result["baseline_trimmed"] = await server.stats("trim")
        run = result["run"] = await cycle(server, idle, conns, messages)
        t0 = time.perf_counter()
        final = result["final"] = await server.settle(base)
        result["settle_seconds"] = time.perf_counter() - t0
        result["final_trimmed"] = await server.stats("trim")

        result["echoed"] = warm["echoed"] + run["echoed"]
        result["lost"] = warm["lost"] + run["lost"]
        result["wrong"] = warm["wrong"] + run["wrong"]
        result["close_unanswered"] = warm["close_unanswered"] + run["close_unanswered"]
        result["leaked"] = {k: final[k] - base[k] for k in COUNTS if final[k] > base[k]}
        result["rss_growth"] = final["rss"] / base["rss"] - 1
        result["blocks_growth"] = final["blocks"] - cold["blocks"]
        # Python objects: exact, unlike RSS. One object kept per connection would show here.
        result["blocks_cycle_growth"] = final["blocks"] - base["blocks"]
        result["ok"] = (result["lost"] == 0 and result["wrong"] == 0 and result["close_unanswered"] == 0
                        and not result["leaked"] and result["rss_growth"] <= MEMORY_TOLERANCE
                        and result["blocks_cycle_growth"] < BLOCKS_SLACK + (idle + conns) / 2)
    finally:
        server.stop()
    return result


def report(r: dict[str, Any]) -> None:
    mib = 2**20
    cold, warm, base, run, final = r["cold"], r["warmup"], r["baseline"], r["run"], r["final"]
    print(f"{r['server']} server: {r['idle']:,} idle connections, {r['conns']:,} x {r['messages']} echoes; "
          f"a warm-up cycle, then the measured cycle")
    print(f"  idle connections   RSS {cold['rss'] / mib:.1f} -> {warm['idle_stats']['rss'] / mib:.1f} MiB: "
          f"{r['rss_per_idle'] / 1024:.1f} KiB per idle connection (opened in {warm['open_seconds']:.1f} s; "
          f"{run['open_seconds']:.1f} s in the measured cycle)")
    print(f"  echo               {r['echoed']:,} of {2 * r['conns'] * r['messages']:,} echoed, {r['lost']} lost, "
          f"{r['wrong']} wrong ({warm['echo_seconds']:.1f} s, {run['echo_seconds']:.1f} s)")
    print(f"  close              {2 * (r['idle'] + r['conns']):,} closed, "
          f"{r['close_unanswered']} without the 1000 answer "
          f"(answers: {dict(Counter(r['warmup']['closes']) + Counter(r['run']['closes']))}; "
          f"{warm['close_seconds']:.1f} s, {run['close_seconds']:.1f} s; released in {r['settle_seconds']:.1f} s)")
    print(f"  memory             RSS {base['rss'] / mib:.1f} MiB after the warm-up, {run['peak']['rss'] / mib:.1f} at "
          f"the peak, {final['rss'] / mib:.1f} after close ({r['rss_growth']:+.1%}; limit +{MEMORY_TOLERANCE:.0%}); "
          f"cold start {cold['rss'] / mib:.1f} MiB; Python blocks {cold['blocks']:,} cold, {final['blocks']:,} after "
          f"({r['blocks_growth']:+,}; {r['blocks_cycle_growth']:+,} in the measured cycle); "
          f"after malloc_trim {r['baseline_trimmed']['rss'] / mib:.1f} MiB at the "
          f"baseline, {r['final_trimmed']['rss'] / mib:.1f} after close")
    print(f"  tasks/threads/fds  {base['tasks']}/{base['threads']}/{base['fds']} at the baseline, "
          f"{run['peak']['tasks']}/{run['peak']['threads']}/{run['peak']['fds']} at the peak, "
          f"{final['tasks']}/{final['threads']}/{final['fds']} after close; leaked: {r['leaked'] or 'nothing'}")
    print(f"  {'OK' if r['ok'] else 'FAILED'}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=10_000, help="idle connections on the asyncio server")
    parser.add_argument("--sync-idle", type=int, default=2_000, help="idle connections on the sync server")
    parser.add_argument("--conns", type=int, default=1_000, help="echoing connections (asyncio)")
    parser.add_argument("--sync-conns", type=int, default=500,
                        help="echoing connections (sync: 2 busy threads each, all wanting the GIL)")
    parser.add_argument("--messages", type=int, default=100, help="messages echoed per connection")
    parser.add_argument("--server", action="append", choices=["asyncio", "sync"], help="default: both")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per server before giving up")
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    parser.add_argument("--serve", choices=["asyncio", "sync"], help=argparse.SUPPRESS)
    parser.add_argument("--fd-limit", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        limit = raise_fd_limit(args.fd_limit)
        (serve_asyncio if args.serve == "asyncio" else serve_sync)(limit)
        return 0

    results: list[dict[str, Any]] = []
    for kind in args.server or ["asyncio", "sync"]:
        idle, conns = (args.idle, args.conns) if kind == "asyncio" else (args.sync_idle, args.sync_conns)

        async def bounded(kind: str = kind, idle: int = idle, conns: int = conns) -> dict[str, Any]:
            return await asyncio.wait_for(soak(kind, idle, conns, args.messages), args.time_limit)

        try:
            result = asyncio.run(bounded())
        except asyncio.TimeoutError:
            result = {"server": kind, "ok": False, "error": f"not finished in {args.time_limit:.0f} s"}
            print(f"{kind} server\n  FAILED: {result['error']}", flush=True)
        else:
            report(result)
        results.append(result)
    if args.json:
        print(json.dumps(results))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

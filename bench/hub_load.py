"""Load test of workers and the Redis hub: W workers x N connections, one channel, every message to everyone.

    python bench/hub_load.py                      # 4 workers x 2,500 connections, 20 messages
    python bench/hub_load.py --workers 2 --per-worker 500 --messages 10

What runs, all on 127.0.0.1: a ``redis-server`` of its own (on a free port;
or ``--redis-url``), ``serve_workers`` with W workers sharing one port and a
Redis hub, C client processes holding W x N connections between them
(each one subscribed to the channel ``all``), and one publisher connection.
The publisher sends M messages, one every ``--interval`` seconds; the worker
that gets each one publishes it on the hub, and every worker writes it to
its clients. Each client checks that it got every message once, in order,
and measures the delivery latency: from the publisher's send to the
client's receive (the same machine, one clock).

It prints how the connections spread over the workers, the latency (median,
p99, max) and whether anything was lost, and exits 1 if something was. It is
bounded: ``--timeout`` seconds in all. When the open-file limit is too low
for the connections asked for, it uses fewer and says why.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HOST = "127.0.0.1"
CHANNEL = "all"


# -- the server: W workers and the hub ---------------------------------------------------


def run_server(port: int, url: str, workers: int) -> None:
    from wskit.hub import Hub
    from wskit.workers import serve_workers

    hub = Hub.from_url(url, buffer=100_000)

    async def handler(ws: Any) -> None:
        hub.subscribe(CHANNEL, ws)
        await ws.send(str(os.getpid()))
        async for message in ws:  # only the publisher sends
            await hub.publish(CHANNEL, message)

    def started(port: int, pids: list[int]) -> None:
        print("READY", port, *pids, flush=True)

    serve_workers(handler, HOST, port, workers=workers, hub=hub, on_start=started, compression=None,
                  ping_interval=None, backlog=4096, max_queue=None)


# -- the clients -----------------------------------------------------------------------------


async def hold(port: int, count: int, messages: int, connected: Any, go: Any, deadline: float) -> dict[str, Any]:
    from wskit.asyncio import connect

    loop = asyncio.get_running_loop()
    received: list[list[int]] = []
    latencies: list[float] = []
    pids: collections.Counter[str] = collections.Counter()
    done = asyncio.Event()
    remaining = [count]
    gate = asyncio.Semaphore(64)  # handshakes in flight

    async def one() -> None:
        async with gate:
            for attempt in range(5):
                try:
                    ws = await connect(f"ws://{HOST}:{port}/", compression=None, ping_interval=None,
                                       open_timeout=30, max_queue=None)
                    break
                except OSError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))
            pids[str(await ws.recv())] += 1
        seen: list[int] = []
        received.append(seen)
        async for message in ws:
            now = time.time()
            seq, sent = message.split(" ")
            seen.append(int(seq))
            latencies.append(now - float(sent))
            if len(seen) == messages:
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()
                break
        await ws.close()

    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    while sum(pids.values()) < count:  # every connection open and greeted
        failed = [t for t in tasks if t.done() and t.exception() is not None]
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {sum(pids.values())} of {count} connections opened in time")
        await asyncio.sleep(0.05)
    connected.release()
    await loop.run_in_executor(None, go.wait)
    try:
        await asyncio.wait_for(done.wait(), max(1.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        pass
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    complete = sum(1 for seen in received if seen == list(range(messages)))
    return {"connections": count, "complete": complete, "pids": dict(pids), "latencies": latencies,
            "received": sum(len(seen) for seen in received)}


def client_process(port: int, count: int, messages: int, connected: Any, go: Any, deadline: float,
                   out: Any) -> None:
    try:
        result = asyncio.run(hold(port, count, messages, connected, go, deadline))
    except BaseException as exc:  # report instead of dying silently
        result = {"error": f"{type(exc).__name__}: {exc}"}
        connected.release()
    out.send(json.dumps(result))
    out.close()


async def publish(port: int, messages: int, interval: float) -> None:
    from wskit.asyncio import connect

    async with connect(f"ws://{HOST}:{port}/", compression=None, ping_interval=None) as ws:
        await ws.recv()  # the greeting
        for seq in range(messages):
            await ws.send(f"{seq} {time.time():.6f}")
            await asyncio.sleep(interval)
        # The publisher is subscribed too: it waits for its own last message.
        while True:
            message = await ws.recv()
            if str(message).startswith(f"{messages - 1} "):
                break


# -- the run ---------------------------------------------------------------------------------


def raise_file_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed and (hard == resource.RLIM_INFINITY or hard > soft):
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    if shutil.which("redis-server") is None:
        sys.exit("hub_load: redis-server is not installed (Debian: apt-get install redis-server), "
                 "or pass --redis-url")
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly",
                             "no", "--dir", directory, "--loglevel", "warning"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://{HOST}:{port}/0"
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            sys.exit("hub_load: redis-server did not start")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--per-worker", type=int, default=2500, help="connections per worker")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between messages")
    parser.add_argument("--timeout", type=float, default=240.0, help="the whole run's bound, in seconds")
    parser.add_argument("--redis-url", default=None, help="an existing Redis (default: start one)")
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "URL", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run_server(int(args.serve[0]), args.serve[1], int(args.serve[2]))
        return 0

    started = time.monotonic()
    deadline = started + args.timeout
    total = args.workers * args.per_worker
    per_client = -(-total // args.clients)
    limit = raise_file_limit(per_client + 256)
    if limit < per_client + 256:
        per_client = max(1, limit - 256)
        total = per_client * args.clients
        print(f"hub_load: the open-file limit is {limit} (ulimit -n), so {per_client} connections per client "
              f"process: {total} in all instead of {args.workers * args.per_worker}")
    # Each worker holds about total / workers connections, plus a margin for the kernel's uneven spread.
    raise_file_limit(int(total / args.workers * 1.5) + 256)

    tmp = tempfile.mkdtemp(prefix="hub_load-")
    redis_proc = None
    url = args.redis_url
    if url is None:
        redis_proc, url = start_redis(tmp)
    server = None
    children: list[Any] = []
    try:
        server = subprocess.Popen([sys.executable, __file__, "--serve", "0", url, str(args.workers)],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("READY"):
            print(f"hub_load: the workers did not start: {line!r}")
            return 1
        port = int(line.split()[1])
        print(f"hub_load: {args.workers} workers on port {port} (pids {' '.join(line.split()[2:])}), Redis at {url}; "
              f"{os.cpu_count()} cores; opening {total} connections from {args.clients} client processes...",
              flush=True)
        ctx = multiprocessing.get_context("fork")
        connected = ctx.Semaphore(0)
        go = ctx.Event()
        pipes = []
        counts = [per_client] * args.clients
        counts[-1] = total - per_client * (args.clients - 1)
        for count in counts:
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=client_process,
                               args=(port, count, args.messages, connected, go, deadline, writer))
            proc.start()
            writer.close()
            pipes.append(reader)
            children.append(proc)
        for _ in children:
            if not connected.acquire(timeout=max(0.1, deadline - time.monotonic())):
                print("hub_load: the connections did not open in time")
                return 1
        opened = time.monotonic()
        print(f"hub_load: {total} connections open in {opened - started:.1f} s; publishing {args.messages} "
              f"messages, one every {args.interval} s...", flush=True)
        go.set()
        asyncio.run(asyncio.wait_for(publish(port, args.messages, args.interval),
                                     max(1.0, deadline - time.monotonic())))
        results = []
        for reader in pipes:
            if reader.poll(max(0.1, deadline - time.monotonic())):
                results.append(json.loads(reader.recv()))
            else:
                results.append({"error": "no result in time"})
    finally:
        for proc in children:
            proc.join(5)
            if proc.exitcode is None:
                proc.kill()
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)

    errors = [r["error"] for r in results if "error" in r]
    if errors:
        print("hub_load: FAILED:", *errors, sep="\n  ")
        return 1
    spread: collections.Counter[str] = collections.Counter()
    latencies: list[float] = []
    for r in results:
        spread.update(r["pids"])
        latencies.extend(r["latencies"])
    expected = total * args.messages
    received = sum(r["received"] for r in results)
    complete = sum(r["complete"] for r in results)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
    print(f"hub_load: connections per worker: {sorted(spread.values())}")
    print(f"hub_load: {received} of {expected} deliveries ({args.messages} messages x {total} connections); "
          f"{complete} of {total} connections got every message once and in order")
    if latencies:
        print(f"hub_load: delivery latency: median {statistics.median(latencies) * 1000:.1f} ms, "
              f"p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
    print(f"hub_load: {'nothing lost' if received == expected and complete == total else 'MESSAGES LOST'} "
          f"(run took {time.monotonic() - started:.1f} s)")
    return 0 if received == expected and complete == total else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())

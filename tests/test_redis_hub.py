"""The hub's Redis backend against a real Redis server (Debian's ``redis-server``).

Each test starts its own ``redis-server`` on 127.0.0.1, on a free port, with
no persistence (``--save '' --appendonly no``), and stops it by PID. Without
``redis-server`` or redis-py the tests are skipped, and say why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_workers import connect_until, supervisor

from wskit.asyncio import ServerConnection, connect, serve
from wskit.exceptions import WebSocketClosed
from wskit.hub import Hub

pytest.importorskip("redis", reason="redis-py is not installed: pip install 'wskit[redis]'")
pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed (Debian: apt-get install redis-server)")

HOST = "127.0.0.1"
TIMEOUT = 15.0
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server process of this test: started on ``port``, stopped by its PID."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.port = free_port() if port is None else port
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT
        while not self._answers():  # wait until it answers PING
            assert self.proc.poll() is None, f"redis-server exited with {self.proc.returncode}"
            assert time.monotonic() < deadline, "redis-server did not answer within the deadline"
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


class Worker:
    """One "worker" in this process: a server and its own hub (own Redis connections)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.arrived: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.hub.subscribe(ws.request.path.strip("/"), ws)
        await self.arrived.put(ws)
        async for message in ws:
            await self.hub.publish(ws.request.path.strip("/"), message)

    async def join(self, port: int, channel: str) -> Any:
        ws = await connect(f"ws://{HOST}:{port}/{channel}")
        await asyncio.wait_for(self.arrived.get(), TIMEOUT)
        return ws


async def until(condition: Any, what: str) -> None:
    """Wait for ``condition()`` to hold (a state the hub reaches on its own), at most TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"still not {what} after {TIMEOUT} s"
        await asyncio.sleep(0.01)


def test_a_message_published_on_one_hub_reaches_the_clients_of_every_other(redis_server: RedisServer) -> None:
    async def main() -> None:
        workers = [Worker(Hub.from_url(redis_server.url)) for _ in range(3)]
        other_prefix = Worker(Hub.from_url(redis_server.url, prefix="elsewhere:"))
        async with workers[0].hub, workers[1].hub, workers[2].hub, other_prefix.hub:
            servers = [await serve(w.handler, HOST, 0) for w in [*workers, other_prefix]]
            ports = [s.sockets[0].getsockname()[1] for s in servers]
            clients = [await w.join(port, "lobby") for w, port in zip(workers, ports)]
            elsewhere = await other_prefix.join(ports[3], "lobby")
            # Published by two workers: their order is not defined, so each goes round before the next.
            await clients[0].send("hello from worker 0")
            for ws in clients:
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "hello from worker 0"
            await clients[2].send(b"\x00\x01 binary from worker 2")
            for ws in clients:
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"\x00\x01 binary from worker 2"
            await elsewhere.send("only for my prefix")
            assert await asyncio.wait_for(elsewhere.recv(), TIMEOUT) == "only for my prefix"  # not the others'
            await clients[1].send("last")
            for ws in clients:
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "last"
            for ws in [*clients, elsewhere]:
                await ws.close()
            for server in servers:
                server.close()
                await server.wait_closed()

    asyncio.run(main())


CHAT_WORKERS = textwrap.dedent('''
    import logging, os, sys
    from wskit.hub import Hub
    from wskit.workers import serve_workers

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
    hub = Hub.from_url(sys.argv[1])

    async def chat(ws):
        hub.subscribe("room", ws)
        await ws.send(str(os.getpid()))
        async for message in ws:
            await hub.publish("room", f"{os.getpid()}: {message}")

    if __name__ == "__main__":
        serve_workers(chat, "127.0.0.1", 0, workers=2, hub=hub,
                      on_start=lambda port, pids: print("READY", port, *pids, flush=True))
''')


def test_worker_processes_share_messages_through_redis(redis_server: RedisServer, tmp_path: Path) -> None:
    app = tmp_path / "chat_workers.py"
    app.write_text(CHAT_WORKERS)
    with supervisor([sys.executable, "-u", str(app), redis_server.url]) as (proc, lines):
        port, first, second = lines.wait_for(r"^READY (\d+) (\d+) (\d+)$").group(1, 2, 3)
        opened = connect_until(int(port), {first, second})
        sender = next(ws for ws, pid in opened if pid == first)
        sender.send("hi all")  # type: ignore[attr-defined]
        for ws, _ in opened:  # every client, on both workers, gets it
            assert ws.recv(timeout=TIMEOUT) == f"{first}: hi all"  # type: ignore[attr-defined]
        proc.send_signal(signal.SIGTERM)
        assert {closed_code_after_messages(ws) for ws, _ in opened} == {1001}
        assert proc.wait(TIMEOUT) == 0
    assert sum("subscribed on Redis" in line for line in lines.seen) == 2


def test_redis_restarting_in_the_middle(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        here, there = Worker(Hub.from_url(redis_server.url)), Worker(Hub.from_url(redis_server.url))
        async with here.hub, there.hub:
            servers = [await serve(w.handler, HOST, 0) for w in (here, there)]
            near = await here.join(servers[0].sockets[0].getsockname()[1], "news")
            far = await there.join(servers[1].sockets[0].getsockname()[1], "news")
            await near.send("before")
            assert [await asyncio.wait_for(ws.recv(), TIMEOUT) for ws in (near, far)] == ["before", "before"]

            redis_server.stop()
            await until(lambda: not here.hub.connected and not there.hub.connected, "disconnected")
            await here.hub.publish("news", "while down")  # returns at once: kept in the buffer
            assert here.hub.backend.buffered == 1  # type: ignore[attr-defined]

            redis_server.start()  # the same port
            await asyncio.wait_for(here.hub.wait_connected(), TIMEOUT)
            # Sent once this hub subscribed again: its own clients get it.
            assert await asyncio.wait_for(near.recv(), TIMEOUT) == "while down"
            await asyncio.wait_for(there.hub.wait_connected(), TIMEOUT)
            await far.send("after")
            assert await asyncio.wait_for(near.recv(), TIMEOUT) == "after"
            received = await asyncio.wait_for(far.recv(), TIMEOUT)
            if received == "while down":  # the other hub was back before the buffer was sent
                received = await asyncio.wait_for(far.recv(), TIMEOUT)
            assert received == "after"
            assert here.hub.backend.reconnects == 1 and there.hub.backend.reconnects == 1  # type: ignore[attr-defined]
            for ws in (near, far):
                await ws.close()
            for server in servers:
                server.close()
                await server.wait_closed()

    with caplog.at_level(logging.INFO, logger="wskit.hub"):
        asyncio.run(main())
    assert re.search(r"hub: no connection to Redis at redis://127\.0\.0\.1:\d+/0 \(ConnectionError: .*\); "
                     r"next attempt in \d+\.\d\d s", caplog.text)
    assert re.search(r"hub: connected to Redis at \S+ again after \d+\.\d s; 1 buffered message\(s\) to send",
                     caplog.text)


def test_the_buffer_keeps_the_newest_messages_while_redis_is_down(redis_server: RedisServer) -> None:
    async def main() -> None:
        worker = Worker(Hub.from_url(redis_server.url, buffer=2))
        async with worker.hub, serve(worker.handler, HOST, 0) as server:
            ws = await worker.join(server.sockets[0].getsockname()[1], "t")
            redis_server.stop()
            await until(lambda: not worker.hub.connected, "disconnected")
            for n in range(5):
                await worker.hub.publish("t", f"m{n}")
            assert worker.hub.backend.dropped == 3  # type: ignore[attr-defined]
            redis_server.start()
            assert [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(2)] == ["m3", "m4"]
            await ws.close()

    asyncio.run(main())


def test_a_hub_started_while_redis_is_down_connects_later(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    redis_server = RedisServer(tmp_path)  # not started yet

    async def main() -> None:
        worker = Worker(Hub.from_url(redis_server.url))
        async with worker.hub, serve(worker.handler, HOST, 0) as server:
            assert not worker.hub.connected  # started anyway: no worker crashes
            ws = await worker.join(server.sockets[0].getsockname()[1], "late")
            await asyncio.to_thread(redis_server.start)
            await asyncio.wait_for(worker.hub.wait_connected(), TIMEOUT)
            await ws.send("now")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "now"
            await ws.close()

    try:
        with caplog.at_level(logging.WARNING, logger="wskit.hub"):
            asyncio.run(main())
    finally:
        redis_server.stop()
    assert "hub: no connection to Redis" in caplog.text


def test_publishing_on_a_redis_hub_that_is_not_started_says_so() -> None:
    async def main() -> None:
        hub = Hub.from_url("redis://127.0.0.1:1/0")
        with pytest.raises(RuntimeError, match="the hub is not started: use `async with hub:`"):
            await hub.publish("a", "x")

    asyncio.run(main())
    with pytest.raises(ValueError, match="buffer must be an int >= 0, got -1"):
        Hub.from_url("redis://127.0.0.1:1/0", buffer=-1)


def closed_code_after_messages(ws: Any) -> int | None:
    """Read what a connection still receives until it closes; its close code."""
    try:
        while True:
            ws.recv(timeout=TIMEOUT)
    except WebSocketClosed:
        pass
    return ws.close_code  # type: ignore[no-any-return]


def test_the_chat_rooms_example_on_4_workers(redis_server: RedisServer) -> None:
    from wskit.sync import connect as sync_connect

    def recv_until(ws: Any, prefix: str) -> str:
        while True:
            message = str(ws.recv(timeout=TIMEOUT))
            if message.startswith(prefix):
                return message

    command = [sys.executable, "-u", str(ROOT / "examples" / "chat_rooms.py"), redis_server.url, "0"]
    with supervisor(command) as (proc, lines):
        port = lines.wait_for(r"chat on ws://127\.0\.0\.1:(\d+)/rooms/<room> with 4 workers").group(1)
        blue: list[Any] = []
        workers: set[str] = set()
        for n in range(50):  # until the room spans two workers
            ws = sync_connect(f"ws://{HOST}:{port}/rooms/blue?name=u{n}", open_timeout=TIMEOUT)
            joined = recv_until(ws, f"* u{n} joined blue")
            workers.add(joined.rsplit(" ", 1)[-1])
            blue.append(ws)
            if len(workers) >= 2:
                break
        assert len(workers) >= 2, "50 connections all went to one worker"
        red = sync_connect(f"ws://{HOST}:{port}/rooms/red?name=r", open_timeout=TIMEOUT)
        recv_until(red, "* r joined red")
        blue[0].send("hello blue")
        for ws in blue:
            assert recv_until(ws, "u0: ") == "u0: hello blue"
        red.send("hello red")
        assert red.recv(timeout=TIMEOUT) == "r: hello red"  # nothing of blue's before it
        proc.send_signal(signal.SIGINT)
        # Members may first hear of others leaving ("* u3 left blue"): read until the Close.
        assert {closed_code_after_messages(ws) for ws in [*blue, red]} == {1001}
        assert proc.wait(TIMEOUT) == 0

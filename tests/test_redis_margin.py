"""The hub's Redis backend while Redis stays unreachable, and when it refuses to publish.

A real ``redis-server`` on 127.0.0.1 where one is needed (as in test_redis_hub).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
from pathlib import Path

import pytest
from test_redis_hub import TIMEOUT, RedisServer, free_port

pytest.importorskip("redis", reason="redis-py is not installed: pip install 'wskit[redis]'")

from wskit.hub.redis import RedisBackend


class Records(logging.Handler):
    """The hub's log records, with an event set once ``count`` "no connection" records arrived."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.records: list[logging.LogRecord] = []
        self.loop = asyncio.get_running_loop()
        self.enough = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if sum("no connection to Redis" in r.getMessage() for r in self.records) >= self.count:
            self.loop.call_soon_threadsafe(self.enough.set)


def test_an_outage_is_a_warning_once_then_each_retry_is_info() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    async def main() -> list[logging.LogRecord]:
        records = Records(3)
        logger = logging.getLogger("wskit.hub.test-outage")
        logger.addHandler(records)
        logger.setLevel(logging.INFO)
        backend = RedisBackend(url, backoff_initial=0.01, backoff_max=0.02, logger=logger)
        try:
            await backend.start(lambda name, message: None)
            assert not backend.connected
            await asyncio.wait_for(records.enough.wait(), TIMEOUT)
        finally:
            await backend.close()
            logger.removeHandler(records)
        return [r for r in records.records if "no connection to Redis" in r.getMessage()]

    down = asyncio.run(main())
    assert [r.levelno for r in down[:3]] == [logging.WARNING, logging.INFO, logging.INFO]
    assert all("next attempt in" in r.getMessage() for r in down)


def redis_command(server: RedisServer, command: str) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(command.encode() + b"\r\n")
        return sock.recv(1024)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_messages_redis_refuses_wait_in_the_buffer_and_go_once_it_accepts(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()

    async def main() -> tuple[list[tuple[str, object]], int]:
        records = Records(0)
        retries = asyncio.Event()
        delivered: list[tuple[str, object]] = []
        arrived = asyncio.Event()

        def deliver(name: str, message: object) -> None:
            delivered.append((name, message))
            arrived.set()

        class Retries(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if sum("not sent yet" in r.getMessage() for r in records.records) >= 2:
                    records.loop.call_soon_threadsafe(retries.set)

        logger = logging.getLogger("wskit.hub.test-refused")
        logger.addHandler(records)
        logger.addHandler(Retries())
        logger.setLevel(logging.INFO)
        backend = RedisBackend(server.url, backoff_initial=0.01, backoff_max=0.02, logger=logger)
        try:
            await backend.start(deliver)
            assert backend.connected
            assert redis_command(server, "ACL SETUSER default -publish").startswith(b"+OK")
            await backend.publish("room", "kept")
            assert backend.buffered == 1
            await asyncio.wait_for(retries.wait(), TIMEOUT)  # refused twice, kept each time
            assert backend.buffered == 1 and not delivered
            assert redis_command(server, "ACL SETUSER default +publish").startswith(b"+OK")
            await asyncio.wait_for(arrived.wait(), TIMEOUT)
            return delivered, backend.buffered
        finally:
            await backend.close()
            logger.handlers.clear()

    try:
        delivered, buffered = asyncio.run(main())
    finally:
        server.stop()
    assert delivered == [("room", "kept")] and buffered == 0

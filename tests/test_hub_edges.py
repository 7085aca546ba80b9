"""The hub at its edges: a backend that lacks a method, redis-py missing, on_skipped
as a coroutine or failing, foreign messages on Redis, a buffer of 0.
Real servers and clients on 127.0.0.1; the Redis tests start their own redis-server."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_broadcast import raw_slow_client
from test_hub import HOST, TIMEOUT, Room, join

from wskit.asyncio import serve
from wskit.hub import Backend, Hub


def test_a_backend_lacking_a_method_cannot_be_created() -> None:
    class Incomplete(Backend):
        async def start(self, deliver: Any) -> None:
            pass

        async def close(self) -> None:
            pass

    with pytest.raises(TypeError, match="publish"):
        Incomplete()  # type: ignore[abstract]


def test_local_hub_options_start_and_close_twice() -> None:
    with pytest.raises(TypeError, match=r"the local hub takes no options, got \['buffer'\]"):
        Hub.from_url("local:", buffer=3)

    async def main() -> None:
        hub = Hub()
        await hub.close()  # not started: nothing to do
        assert await hub.start() is hub
        assert await hub.start() is hub  # started once only
        await hub.wait_connected()
        assert hub.connected
        await hub.close()
        assert not hub.connected

    asyncio.run(main())


def test_the_redis_hub_without_redis_py_says_what_to_install() -> None:
    code = ("import sys; sys.modules['redis'] = None\n"
            "from wskit.hub import Hub\n"
            "try:\n"
            "    Hub.from_url('redis://127.0.0.1:1/0')\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "the Redis hub needs redis-py: pip install 'wskit[redis]'"


async def _until_skipped(on_skipped: Any) -> Hub:
    """Publish to a client that reads nothing until the hub skips it once."""
    hub = Hub(on_skipped=on_skipped)
    room = Room(hub)
    async with hub, serve(room.handler, HOST, 0, write_limit=16384, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        fast = await join(port, "feed", room)
        slow = await asyncio.to_thread(raw_slow_client, port)
        hub.subscribe("feed", await asyncio.wait_for(room.arrived.get(), TIMEOUT))
        for _ in range(2000):
            await hub.publish("feed", bytes(256 * 1024))
            await asyncio.wait_for(fast.recv(), TIMEOUT)
            if hub.skipped:
                break
        await fast.close()
        slow.close()
    return hub


def test_on_skipped_may_be_a_coroutine_function() -> None:
    async def main() -> None:
        reported: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

        async def on_skipped(channel: str, skipped: list[Any]) -> None:
            await asyncio.sleep(0)
            reported.put_nowait((channel, len(skipped)))

        hub = await _until_skipped(on_skipped)
        assert hub.skipped == 1
        assert await asyncio.wait_for(reported.get(), TIMEOUT) == ("feed", 1)

    asyncio.run(main())


def test_a_failing_on_skipped_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def on_skipped(channel: str, skipped: list[Any]) -> None:
        raise RuntimeError("report failed")

    with caplog.at_level(logging.ERROR, logger="wskit.hub"):
        hub = asyncio.run(_until_skipped(on_skipped))
    assert hub.skipped == 1
    assert any(r.getMessage() == "hub: on_skipped failed" and r.exc_info for r in caplog.records)


# -- Redis -------------------------------------------------------------------------------------


redis_needed = pytest.mark.skipif(shutil.which("redis-server") is None,
                                  reason="redis-server is not installed (apt-get install redis-server)")


@redis_needed
def test_foreign_messages_on_redis_are_ignored_with_a_warning(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("redis", reason="redis-py is not installed: pip install 'wskit[redis]'")
    import redis.asyncio
    from test_redis_hub import RedisServer, Worker

    redis_server = RedisServer(tmp_path).start()

    async def main() -> None:
        worker = Worker(Hub.from_url(redis_server.url))
        async with worker.hub, serve(worker.handler, HOST, 0) as server:
            await asyncio.wait_for(worker.hub.wait_connected(), TIMEOUT)
            ws = await worker.join(server.sockets[0].getsockname()[1], "room")
            other = redis.asyncio.Redis.from_url(redis_server.url)
            try:
                await other.publish("wskit:room", b"?not made by the hub")
            finally:
                await other.aclose()
            await ws.send("after it")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "after it"  # the foreign one was skipped
            await ws.close()
        assert await worker.hub.start() is worker.hub

    try:
        with caplog.at_level(logging.WARNING, logger="wskit.hub"):
            asyncio.run(main())
    finally:
        redis_server.stop()
    assert "hub: ignored a message on Redis channel b'wskit:room': not a wskit hub message (first byte b'?')" \
        in caplog.text


def test_redis_hub_options_and_a_buffer_of_zero(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("redis", reason="redis-py is not installed: pip install 'wskit[redis]'")
    from wskit.hub.redis import RedisBackend

    with pytest.raises(ValueError, match="connect_timeout must be > 0 seconds, got 0"):
        RedisBackend("redis://127.0.0.1:1/0", connect_timeout=0)

    async def main() -> None:
        backend = RedisBackend("redis://127.0.0.1:1/0", buffer=0, backoff_initial=0.05, connect_timeout=1)
        with pytest.raises(RuntimeError, match="the Redis hub is not started"):
            await backend.wait_connected()
        with pytest.raises(RuntimeError, match="the Redis hub is not started"):
            await backend.publish("news", "too early")
        async with Hub(backend) as hub:  # nothing listens on port 1: started, not connected
            await backend.start(lambda channel, message: None)  # a second start does nothing
            assert not hub.connected
            await hub.publish("news", "lost")
            assert backend.dropped == 1 and backend.buffered == 0

    with caplog.at_level(logging.WARNING, logger="wskit.hub"):
        asyncio.run(main())
    assert "hub: Redis unreachable, a message on channel 'news' was dropped (buffer=0)" in caplog.text


@redis_needed
def test_a_publish_that_fails_while_connected_waits_in_the_buffer(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("redis", reason="redis-py is not installed: pip install 'wskit[redis]'")
    from test_redis_hub import RedisServer, Worker

    redis_server = RedisServer(tmp_path).start()

    async def main() -> None:
        worker = Worker(Hub.from_url(redis_server.url))
        async with worker.hub, serve(worker.handler, HOST, 0) as server:
            await asyncio.wait_for(worker.hub.wait_connected(), TIMEOUT)
            ws = await worker.join(server.sockets[0].getsockname()[1], "news")
            # Redis stops while the loop is blocked: the hub still believes it is connected.
            redis_server.stop()
            assert worker.hub.connected
            await worker.hub.publish("news", "kept")  # fails: kept in the buffer, retried
            assert worker.hub.backend.buffered == 1  # type: ignore[attr-defined]
            await asyncio.to_thread(redis_server.start)  # the same port
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "kept"
            await ws.close()

    try:
        with caplog.at_level(logging.INFO, logger="wskit.hub"):
            asyncio.run(main())
    finally:
        redis_server.stop()
    assert "could not publish on Redis at" in caplog.text and "the message waits in the buffer" in caplog.text
    assert "hub: buffered messages not sent yet" in caplog.text

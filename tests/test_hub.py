"""The hub with its embedded backend (one process): channels, slow clients, automatic unsubscribe.

Real servers on 127.0.0.1 and real clients; the Redis backend is in test_redis_hub.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from test_broadcast import raw_slow_client

from wskit.asyncio import ServerConnection, connect, serve
from wskit.hub import Hub, LocalBackend

HOST = "127.0.0.1"
TIMEOUT = 10.0


class Room:
    """A server whose handler subscribes each connection to the channel named by its path."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.arrived: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self.left: asyncio.Queue[set[str]] = asyncio.Queue()

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        for channel in filter(None, ws.request.path.strip("/").split(",")):
            self.hub.subscribe(channel, ws)
        await self.arrived.put(ws)
        await ws.wait_closed()
        await self.left.put(self.hub.channels(ws))  # what it is still subscribed to once closed


async def join(port: int, path: str, room: Room, **options: Any) -> Any:
    ws = await connect(f"ws://{HOST}:{port}/{path}", **options)
    await asyncio.wait_for(room.arrived.get(), TIMEOUT)
    return ws


def test_publish_reaches_the_subscribers_of_the_channel_only_text_and_binary() -> None:
    async def main() -> None:
        hub = Hub()
        room = Room(hub)
        async with hub, serve(room.handler, HOST, 0) as server:
            port = server.sockets[0].getsockname()[1]
            blue = [await join(port, "blue", room) for _ in range(3)]
            red = await join(port, "red", room)
            both = await join(port, "blue,red", room)
            await hub.publish("blue", "to blue")
            await hub.publish("red", b"\x00to red")
            await hub.publish("green", "nobody listens")
            for ws in blue:
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "to blue"
            assert await asyncio.wait_for(red.recv(), TIMEOUT) == b"\x00to red"
            assert [await asyncio.wait_for(both.recv(), TIMEOUT) for _ in range(2)] == ["to blue", b"\x00to red"]
            assert hub.delivered == 2  # green had no subscriber here
            assert len(hub.subscribers("blue")) == 4 and hub.channels() == {"blue", "red"}
            for ws in [*blue, red, both]:
                await ws.close()

    asyncio.run(main())


def test_a_closed_connection_is_unsubscribed_from_every_channel() -> None:
    async def main() -> None:
        hub = Hub()
        room = Room(hub)
        async with hub, serve(room.handler, HOST, 0) as server:
            port = server.sockets[0].getsockname()[1]
            ws = await join(port, "a,b,c", room)
            stays = await join(port, "a", room)
            await ws.close()
            assert await asyncio.wait_for(room.left.get(), TIMEOUT) == set()
            assert hub.channels() == {"a"}
            await hub.publish("a", "still here")
            assert await asyncio.wait_for(stays.recv(), TIMEOUT) == "still here"
            await stays.close()
            assert await asyncio.wait_for(room.left.get(), TIMEOUT) == set()
            assert hub.channels() == set()

    asyncio.run(main())


def test_unsubscribe_stops_the_messages_of_one_channel() -> None:
    async def main() -> None:
        hub = Hub()
        room = Room(hub)
        async with hub, serve(room.handler, HOST, 0) as server:
            port = server.sockets[0].getsockname()[1]
            ws = await join(port, "news,sport", room)
            (conn,) = hub.subscribers("news")
            hub.unsubscribe("news", conn)
            hub.unsubscribe("news", conn)  # twice: nothing more
            hub.unsubscribe("weather", conn)  # never subscribed: nothing
            assert hub.channels(conn) == {"sport"}
            await hub.publish("news", "missed")
            await hub.publish("sport", "goal")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "goal"
            hub.unsubscribe_all(conn)
            assert hub.channels() == set()
            hub.subscribe("news", conn)  # again, after unsubscribe_all
            await hub.publish("news", "back")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "back"
            await ws.close()
            assert await asyncio.wait_for(room.left.get(), TIMEOUT) == set()

    asyncio.run(main())


def test_a_slow_client_is_skipped_and_reported_and_never_holds_the_others() -> None:
    async def main() -> None:
        reports: list[tuple[str, list[Any]]] = []
        hub = Hub(on_skipped=lambda channel, skipped: reports.append((channel, skipped)))
        room = Room(hub)
        async with hub, serve(room.handler, HOST, 0, write_limit=16384, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            fast = [await join(port, "feed", room, max_size=None) for _ in range(3)]
            slow = await asyncio.to_thread(raw_slow_client, port)  # path "/": no channel yet
            slow_conn = await asyncio.wait_for(room.arrived.get(), TIMEOUT)
            hub.subscribe("feed", slow_conn)
            message = bytes(256 * 1024)
            rounds = 0
            while not reports:
                rounds += 1
                assert rounds < 2000, "the slow client was never reported"
                await asyncio.wait_for(hub.publish("feed", message), 0.5)  # never waits for a client
                for ws in fast:
                    assert await asyncio.wait_for(ws.recv(), TIMEOUT) == message
            assert reports == [("feed", [slow_conn])]
            assert hub.skipped == 1
            for ws in fast:
                await ws.close()
            slow.close()

    asyncio.run(main())


def test_the_default_report_of_slow_clients_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        hub = Hub()
        room = Room(hub)
        async with hub, serve(room.handler, HOST, 0, write_limit=16384, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            slow = await asyncio.to_thread(raw_slow_client, port)
            hub.subscribe("feed", await asyncio.wait_for(room.arrived.get(), TIMEOUT))
            for _ in range(2000):
                await hub.publish("feed", bytes(256 * 1024))
                if hub.skipped:
                    break
            slow.close()

    with caplog.at_level("WARNING", logger="wskit.hub"):
        asyncio.run(main())
    assert "hub: 1 slow connection(s) skipped a message on channel 'feed'" in caplog.text


def test_bad_arguments_are_refused_with_the_reason() -> None:
    async def main() -> None:
        hub = Hub()
        with pytest.raises(TypeError, match="publish\\(\\) takes a str or a bytes-like message, not int"):
            await hub.publish("a", 3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="a hub channel is a non-empty str, not ''"):
            await hub.publish("", "x")
        await hub.publish("a", bytearray(b"fine"))  # bytes-like: sent as binary; the local hub starts itself
        assert hub.connected

    asyncio.run(main())
    with pytest.raises(ValueError, match="unknown hub URL 'amqp://x': use redis://host:port/db"):
        Hub.from_url("amqp://x")
    assert isinstance(Hub.from_url(None).backend, LocalBackend)
    assert isinstance(Hub.from_url("local:").backend, LocalBackend)


def test_importing_wskit_its_asyncio_layer_or_the_hub_loads_no_redis() -> None:
    code = ("import sys, wskit, wskit.asyncio, wskit.hub, wskit.workers; "
            "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"

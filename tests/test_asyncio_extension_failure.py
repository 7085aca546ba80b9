"""An extension that raises while the asyncio layer builds a message: the connection fails with 1011.

The same bug in the threaded layer is covered by tests/test_sync_margin.py, whose
extension (``x-boom``, raising on the message b"boom") these tests reuse.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_sync_margin import BoomClient, BoomServer

import wskit.asyncio as wa
from wskit.exceptions import ConnectionClosedError, ProtocolError

pytestmark = pytest.mark.timeout(60)


async def _failed_with_1011(ws: Any) -> None:
    with pytest.raises(ConnectionClosedError) as info:
        await ws.recv(timeout=10)
    assert (info.value.code, info.value.reason) == (1011, "internal error")  # the bug's text stays on the server


@pytest.mark.parametrize("message", [b"boom", [b"boom", b"never sent"], [b"sent ", b"boom", b"never sent"]],
                         ids=["whole", "first-fragment", "a-continuation"])
def test_send_through_an_extension_that_raises_fails_the_connection_with_1011(message: Any) -> None:
    raised: list[BaseException] = []

    async def handler(ws: Any) -> None:
        try:
            await ws.send(message)
        except ProtocolError as exc:
            raised.append(exc)
        async for _ in ws:
            pass

    async def main() -> None:
        async with wa.serve(handler, "127.0.0.1", 0, extensions=[BoomServer()]) as server:
            port = server.sockets[0].getsockname()[1]
            async with wa.connect(f"ws://127.0.0.1:{port}/", extensions=[BoomClient()]) as ws:
                await _failed_with_1011(ws)

    asyncio.run(main())
    assert len(raised) == 1 and "x-boom" in str(raised[0])


def test_a_broadcast_an_extension_fails_closes_that_connection_with_1011_and_reaches_the_others() -> None:
    async def main() -> None:
        opened: asyncio.Queue[None] = asyncio.Queue()

        async def handler(ws: Any) -> None:
            opened.put_nowait(None)
            async for _ in ws:
                pass

        async with wa.serve(handler, "127.0.0.1", 0, extensions=[BoomServer()]) as server:
            uri = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
            async with wa.connect(uri, extensions=[BoomClient()]) as failing, wa.connect(uri) as plain:
                await asyncio.wait_for(opened.get(), 10)
                await asyncio.wait_for(opened.get(), 10)  # both handlers run: both connections are open
                assert wa.broadcast(server.connections, b"boom") == []  # the failed one is not open any more
                assert await plain.recv(timeout=10) == b"boom"
                await _failed_with_1011(failing)

    asyncio.run(main())

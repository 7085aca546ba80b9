"""Large messages through the asyncio layer's reads and writes, over real sockets on 127.0.0.1.

The connection reads into a buffer kept per thread and writes the pieces of
a large frame one by one where the transport would join them: messages of
every size must arrive intact, in order, on plain TCP and on TLS.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from wskit import frames as frames_module
from wskit.asyncio import ConnectionClosedError, ServerConnection, connect, serve

HOST = "127.0.0.1"
SIZES = [5, 70_000, 1 << 20, 300, 3 << 20]


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def round_trips(ssl_server: ssl.SSLContext | None = None, ssl_client: ssl.SSLContext | None = None) -> None:
    async with serve(echo, HOST, 0, max_size=None, ssl=ssl_server) as server:
        scheme = "wss" if ssl_client else "ws"
        port = server.sockets[0].getsockname()[1]
        async with connect(f"{scheme}://{HOST}:{port}/", max_size=None, ssl=ssl_client) as ws:
            messages = [os.urandom(n) for n in SIZES]
            for m in messages:  # one at a time
                await ws.send(m)
                assert await ws.recv() == m
            for m in messages:  # all at once: reads carry several frames and parts of frames
                await ws.send(m)
            for m in messages:
                assert await ws.recv() == m
            await ws.send("text after the large ones")
            assert await ws.recv() == "text after the large ones"


def test_large_messages_round_trip(gathers: list[Any]) -> None:
    asyncio.run(asyncio.wait_for(round_trips(), 60))
    # The frames over 1 MiB (compressed: random bytes grow a little), each
    # way, twice: read straight into the bytes they became, handed out
    # without a copy (no view of the transport's was left).
    if frames_module.Gather is not None:
        assert len(gathers) >= 4 and not any(g.copied for g in gathers)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl binary to make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    return cert, key


def test_large_messages_round_trip_over_tls(certificate: tuple[Path, Path], gathers: list[Any]) -> None:
    cert, key = certificate
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.check_hostname = False
    asyncio.run(asyncio.wait_for(round_trips(server_ctx, client_ctx), 60))
    if frames_module.Gather is not None:
        assert len(gathers) >= 4 and not any(g.copied for g in gathers)


def test_a_large_read_over_max_size_closes_with_1009() -> None:
    async def main() -> None:
        async with serve(echo, HOST, 0, max_size=1000) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://{HOST}:{port}/", max_size=None) as ws:
                await ws.send(os.urandom(1 << 20))
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1009

    asyncio.run(asyncio.wait_for(main(), 30))

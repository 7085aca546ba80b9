"""Echo servers for bench/echo.py, one per implementation (compression off).

    python bench/echo_servers.py IMPL PORT

IMPL: wskit-asyncio (stock asyncio transports, C accelerator), wskit-pure (the
same without the C accelerator), wskit-uvloop (stock, on uvloop),
wskit-aiofastnet and wskit-uvloop-aiofastnet (the accelerated rows: the
asyncio server on aiofastnet's transports, which it picks up when installed,
on the asyncio or the uvloop loop), wskit-callback, wskit-callback-aiofastnet
and wskit-callback-uvloop-aiofastnet (the same three servers receiving by
``on_message`` and answering by ``send_nowait`` instead of ``async for`` and
``send``), floor-aiofastnet, wskit-sync,
websockets, picows, aiohttp, floor, and a plain ASGI echo application on
uvicorn (asyncio loop, h11 or httptools, access log off) with each WebSocket
implementation: uvicorn-wskit (``--ws wskit.asgi:UvicornProtocol``),
uvicorn-websockets-sansio, uvicorn-wsproto; and wskit-http2
(``wskit.asyncio.http2.serve`` over TLS with a self-signed certificate,
made with the openssl binary: HTTP/1.1 or HTTP/2 by ALPN). Prints
"ready" once listening; then, for every line read on stdin, prints the
process's CPU time in seconds (all threads, exited ones included:
CLOCK_PROCESS_CPUTIME_ID). Runs until killed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HOST = "127.0.0.1"


def ready() -> None:
    print("ready", flush=True)
    threading.Thread(target=report_cpu, daemon=True).start()


def report_cpu() -> None:
    for _ in sys.stdin:
        print(repr(time.process_time()), flush=True)


async def wskit_asyncio(port: int) -> None:
    from wskit.asyncio import serve

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, HOST, port, compression=None, max_size=None, ping_interval=None) as server:
        ready()
        await server.serve_forever()


async def wskit_callback(port: int) -> None:
    from wskit.asyncio import serve

    async def echo(ws: Any) -> None:
        ws.on_message = ws.send_nowait
        await ws.wait_closed()

    async with serve(echo, HOST, port, compression=None, max_size=None, ping_interval=None) as server:
        ready()
        await server.serve_forever()


def wskit_sync(port: int) -> None:
    from wskit.sync import serve

    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    with serve(echo, HOST, port, compression=None, max_size=None, ping_interval=None) as server:
        ready()
        server.serve_forever()


async def websockets_asyncio(port: int) -> None:
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, HOST, port, compression=None, max_size=None, ping_interval=None) as server:
        ready()
        await server.serve_forever()


async def picows_server(port: int) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type == WSMsgType.PING:
                transport.send_pong(frame.get_payload_as_bytes())
            elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
                transport.send(frame.msg_type, frame.get_payload_as_memoryview())

    server = await ws_create_server(lambda request: Echo(), HOST, port, max_frame_size=64 * 2**20)
    ready()
    await server.serve_forever()


async def aiohttp_server(port: int) -> None:
    from aiohttp import WSMsgType, web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, compress=False, autoping=True)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    ready()
    await asyncio.Event().wait()


async def asgi_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The same plain ASGI echo application for every uvicorn row."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


UVICORN_WS = {
    "uvicorn-wskit": "wskit.asgi:UvicornProtocol",
    "uvicorn-websockets-sansio": "websockets-sansio",
    "uvicorn-wsproto": "wsproto",
}


async def uvicorn_server(port: int, ws: str) -> None:
    import uvicorn

    config = uvicorn.Config(asgi_echo, host=HOST, port=port, ws=ws, loop="asyncio", lifespan="off",
                            ws_max_size=2**30, ws_ping_interval=None, ws_per_message_deflate=False,
                            log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # raises what stopped it
            raise RuntimeError("uvicorn stopped during start-up")
        await asyncio.sleep(0.01)
    ready()
    await serving


async def floor_server(port: int) -> None:
    """The floor: the least an asyncio.Protocol must do to echo small messages.

    No library: a bare upgrade (no validation), frames parsed with no checks
    and no fragmentation, payloads unmasked with one big-integer XOR.
    Nothing a real server could ship; it shows what the event loop and the
    system calls cost by themselves. Only for small messages (the XOR is
    slow on big ones).
    """
    import base64
    import hashlib

    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    class Floor(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buf = b""
            self.upgraded = False

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data
            if not self.upgraded:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    self.buf = buf
                    return
                key = next(line.split(b":", 1)[1].strip() for line in buf[:end].split(b"\r\n")
                           if line.lower().startswith(b"sec-websocket-key:"))
                accept = base64.b64encode(hashlib.sha1(key + guid).digest())
                self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
                self.upgraded = True
                buf = buf[end + 4:]
            write = self.transport.write
            while len(buf) >= 6:
                length = buf[1] & 0x7F
                start = 6
                if length == 126:
                    length = int.from_bytes(buf[2:4], "big")
                    start = 8
                elif length == 127:
                    length = int.from_bytes(buf[2:10], "big")
                    start = 14
                if len(buf) < start + length:
                    break
                key = buf[start - 4:start] * (length // 4 + 1)
                payload = (int.from_bytes(buf[start:start + length], "little")
                           ^ int.from_bytes(key[:length], "little")).to_bytes(length, "little")
                opcode = buf[0] & 0x0F
                buf = buf[start + length:]
                if opcode == 8:
                    write(b"\x88\x02\x03\xe8")
                    self.transport.close()
                    return
                if length < 126:
                    write(bytes((0x80 | opcode, length)) + payload)
                else:
                    write(bytes((0x80 | opcode, 126)) + length.to_bytes(2, "big") + payload)
            self.buf = buf

    server = await asyncio.get_running_loop().create_server(Floor, HOST, port)
    ready()
    await server.serve_forever()


def self_signed(folder: str) -> Any:
    """A TLS server context with a certificate for 127.0.0.1 made by the openssl binary."""
    import ssl
    import subprocess

    cert, key = f"{folder}/cert.pem", f"{folder}/key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


async def wskit_http2(port: int) -> None:
    """wskit.asyncio.http2.serve over TLS: HTTP/1.1 or HTTP/2 as the client's ALPN chooses."""
    import tempfile

    from wskit.asyncio import http2

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    with tempfile.TemporaryDirectory(prefix="wskit-bench-") as folder:
        context = self_signed(folder)
    async with http2.serve(echo, HOST, port, ssl=context, compression=None, max_size=None,
                           ping_interval=None) as server:
        ready()
        await server.serve_forever()


async def with_aiofastnet(coro: Any) -> None:
    """Run ``coro`` with the running loop's networking patched to aiofastnet's compiled transports."""
    import aiofastnet

    aiofastnet.patch_loop()
    await coro


def main() -> None:
    impl, port = sys.argv[1], int(sys.argv[2])
    if impl in ("wskit-asyncio", "wskit-uvloop", "wskit-pure", "uvicorn-wskit", "wskit-http2", "wskit-callback"):
        # Stock transports: the asyncio server would pick aiofastnet's up when installed.
        sys.modules["aiofastnet"] = None  # type: ignore[assignment]
    if impl == "wskit-pure":
        os.environ["WSKIT_NO_SPEEDUPS"] = "1"  # nor the C accelerator
        impl = "wskit-asyncio"
    if impl == "wskit-sync":
        wskit_sync(port)
        return
    if impl == "wskit-uvloop":
        import uvloop

        uvloop.run(wskit_asyncio(port))
        return
    if impl == "wskit-aiofastnet":  # wskit picks aiofastnet up by itself
        import aiofastnet

        asyncio.run(wskit_asyncio(port))
        return
    if impl == "floor-aiofastnet":
        asyncio.run(with_aiofastnet(floor_server(port)))
        return
    if impl in ("wskit-uvloop-aiofastnet", "wskit-callback-uvloop-aiofastnet"):
        import aiofastnet
        import uvloop

        uvloop.run(wskit_asyncio(port) if impl == "wskit-uvloop-aiofastnet" else wskit_callback(port))
        return
    if impl == "wskit-callback-aiofastnet":
        import aiofastnet  # noqa: F401

        asyncio.run(wskit_callback(port))
        return
    if impl in UVICORN_WS:
        asyncio.run(uvicorn_server(port, UVICORN_WS[impl]))
        return
    coro = {
        "wskit-asyncio": wskit_asyncio,
        "wskit-callback": wskit_callback,
        "websockets": websockets_asyncio,
        "picows": picows_server,
        "aiohttp": aiohttp_server,
        "floor": floor_server,
        "wskit-http2": wskit_http2,
    }[impl](port)
    asyncio.run(coro)


if __name__ == "__main__":
    main()

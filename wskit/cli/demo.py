"""``wskit demo`` (what ``make run`` shows): an asyncio server and client talking.

It starts an echo server on 127.0.0.1, connects a client, exchanges a text
message, a binary message, a ping and a compressed message, closes cleanly
and prints every step. ``--serve-only`` keeps the server running for a
manual ``wskit connect``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any, TextIO

from ._format import describe_close, describe_error, format_message


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``wskit demo`` options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="interface for the demo server (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port for the demo server (default: a free one)")
    parser.add_argument("--serve-only", action="store_true",
                        help="only run the server, for `wskit connect` from another terminal (Ctrl-C stops it)")


class _DemoServer:
    """The demo's handler: answers text with ``Echo: <text>``, binary unchanged."""

    def __init__(self, out: TextIO, verbose: bool) -> None:
        self.out = out
        self.verbose = verbose
        self.closed: asyncio.Queue[tuple[int | None, str | None]] = asyncio.Queue()

    async def __call__(self, ws: Any) -> None:
        try:
            async for message in ws:
                if isinstance(message, str):
                    await ws.send(f"Echo: {message}")
                else:
                    await ws.send(message)
        finally:
            if self.verbose:
                peer = ws.remote_address
                print(f"  [server] connection from {peer[0]}:{peer[1]} closed: "
                      f"{describe_close(ws.close_code, ws.close_reason)}", file=self.out, flush=True)
            await self.closed.put((ws.close_code, ws.close_reason))


async def _conversation(uri: str, out: TextIO, demo: _DemoServer) -> None:
    from ..asyncio import connect

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    say(f"= connecting to {uri}")
    async with connect(uri, subprotocols=["demo"]) as ws:
        response = ws.response
        names = ", ".join(e.name for e in ws.protocol.extensions) or "none"
        status = response.status_code if response is not None else "?"
        say(f"= connected: HTTP {status}, subprotocol {ws.subprotocol!r}, extensions: {names}")

        for text in ("hello", "héllo wörld ✓"):
            say(f"> {text}")
            await ws.send(text)
            answer = await ws.recv()
            say(f"< {format_message(answer)}")

        data = bytes(range(8))
        say(f"> {format_message(data)}")
        await ws.send(data)
        say(f"< {format_message(await ws.recv())}")

        say("> ping")
        latency = await (await ws.ping())
        say(f"< pong after {latency * 1000:.3f} ms")

        big = "All work and no play makes Jack a dull boy. " * 200
        wire = _wire_size(ws, big)
        say(f"> a {len(big)}-character text message (~{wire} bytes on the wire, extensions: {names})")
        await ws.send(big)
        answer = await ws.recv()
        assert isinstance(answer, str)
        ok = answer == f"Echo: {big}"
        say(f"< {len(answer)} characters back ({'matches' if ok else 'DOES NOT MATCH'})")

        say("= closing with 1000")
    say(f"= client: connection closed, {describe_close(ws.close_code, ws.close_reason)}")
    code, reason = await asyncio.wait_for(demo.closed.get(), 5)
    say(f"= server: connection closed, {describe_close(code, reason)}")


def _wire_size(ws: Any, text: str) -> int:
    """About how many bytes a text message takes on the wire with the negotiated extensions.

    The negotiated extension objects keep compression context between
    messages, so a fresh one with the same parameters does the estimate.
    """
    from ..frames import Frame, Opcode, serialize_frame

    frame = Frame(Opcode.TEXT, text.encode("utf-8"))
    for ext in ws.protocol.extensions:
        if ext.name == "permessage-deflate":
            from ..extensions.permessage_deflate import PerMessageDeflate

            fresh = PerMessageDeflate(local_max_window_bits=ext.local_max_window_bits, level=ext.level,
                                      mem_level=ext.mem_level)
            frame = fresh.encode(frame)
    return len(serialize_frame(frame, True))


async def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from ..asyncio import serve

    demo = _DemoServer(out, verbose=True)
    async with serve(demo, args.host, args.port, subprotocols=["demo"]) as server:
        host, port = server.sockets[0].getsockname()[:2]
        uri = f"ws://{host}:{port}/"
        print(f"= wskit demo server listening on {uri}", file=out, flush=True)
        if args.serve_only:
            print(f"  try: python -m wskit connect {uri}   (Ctrl-C here stops the server)", file=out, flush=True)
            loop = asyncio.get_running_loop()
            stop: asyncio.Future[None] = loop.create_future()
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGTERM, _resolve, stop)
            await stop
            return 0
        await _conversation(uri, out, demo)
    print("= server stopped; bye", file=out, flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the demo; return the exit status (0 when the conversation went as expected, or the server was stopped)."""
    try:
        return asyncio.run(_demo(args, sys.stdout))
    except KeyboardInterrupt:  # how --serve-only is stopped; the conversation was cut short
        print("= stopped", flush=True)
        return 0 if args.serve_only else 130
    except BrokenPipeError:  # standard output closed: wskit.cli.main ends quietly
        raise
    except OSError as exc:
        print(f"wskit demo: {describe_error(exc, f'{args.host}:{args.port}')}", file=sys.stderr)
        return 1

"""``wskit connect URL``: an interactive client (stdin lines are sent, messages printed)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
from typing import TextIO

from ..exceptions import WebSocketClosed, WSKitError
from ._format import describe_close, format_message
from .serve import load_config

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``wskit connect`` options to ``parser``."""
    parser.add_argument("url", help="ws:// or wss:// URL to connect to")
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file")
    parser.add_argument("--subprotocol", action="append", dest="subprotocols", metavar="NAME",
                        help="offer this subprotocol (repeatable)")
def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read stdin in a daemon thread (works for ttys and pipes alike); None marks EOF."""

    def run() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
        except (OSError, ValueError):
            pass
        with contextlib.suppress(RuntimeError):  # the loop may be closed already
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=run, name="wskit-connect-stdin", daemon=True).start()


async def _connect(args: argparse.Namespace, out: TextIO) -> int:
    from ..asyncio import connect

    loop = asyncio.get_running_loop()
    ws = await connect(args.url, subprotocols=args.subprotocols, config=load_config(args.config))
    print(f"Connected to {args.url}.", file=out, flush=True)

    async def printer() -> None:
        async for message in ws:
            print(f"< {format_message(message)}", file=out, flush=True)

    receiving = loop.create_task(printer())
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    _stdin_lines(loop, lines)
    status = 0
    try:
        while not receiving.done():
            getting = loop.create_task(lines.get())
            await asyncio.wait({getting, receiving}, return_when=asyncio.FIRST_COMPLETED)
            if not getting.done():
                getting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getting
                break
            line = getting.result()
            if line is None:  # Ctrl-D / end of the pipe
                break
            try:
                await ws.send(line)
            except WebSocketClosed:
                break
        await ws.close()
        try:
            await receiving
        except WebSocketClosed:
            status = 1
    finally:
        if not receiving.done():
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketClosed):
                await receiving
        await ws.close()
    print(f"Connection closed: {describe_close(ws.close_code, ws.close_reason)}.", file=out, flush=True)
    return status


def run(args: argparse.Namespace) -> int:
    """Run the interactive client: stdin lines are sent, messages printed with ``< ``."""
    try:
        return asyncio.run(_connect(args, sys.stdout))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # standard output closed: wskit.cli.main ends quietly
        raise
    except (OSError, TimeoutError, WSKitError) as exc:
        print(f"wskit connect: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

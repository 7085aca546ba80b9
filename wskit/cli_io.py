"""The ``wskit serve`` and ``wskit connect`` commands (asyncio echo server, interactive client)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
from typing import Any, TextIO

from .exceptions import ConfigError, WebSocketClosed, WSKitError


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


__all__ = ["add_serve_arguments", "run_serve", "add_connect_arguments", "run_connect", "describe_close",
           "format_message"]


def describe_close(code: int | None, reason: str | None) -> str:
    """Describe a close code and reason for humans, e.g. ``1000 (normal closure)``."""
    if code is None:
        return "no close code"
    from .frames import CloseCode

    try:
        name = CloseCode(code).name.lower().replace("_", " ")
    except ValueError:
        name = "application" if 4000 <= code <= 4999 else "registered" if 3000 <= code <= 3999 else "unknown"
    text = f"{code} ({name})"
    return f"{text}, reason {reason!r}" if reason else text


def format_message(message: str | bytes, limit: int = 200) -> str:
    """Render a message on one line: text as is, binary as hex with its size."""
    if isinstance(message, str):
        return message if len(message) <= limit else f"{message[:limit]}... ({len(message)} characters)"
    shown = message[: limit // 2].hex(" ")
    more = "..." if len(message) > limit // 2 else ""
    return f"(binary, {len(message)} bytes) {shown}{more}"


def _load_config(path: str | None) -> Any:
    if path is None:
        return None
    from . import config as config_module  # type: ignore[attr-defined, unused-ignore]

    return config_module.load(path)


# -- wskit serve -------------------------------------------------------------------


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``wskit serve`` options to ``parser``."""
    parser.add_argument("--host", default=None, help="interface to listen on (default 127.0.0.1, or the config's)")
    parser.add_argument("--port", type=int, default=None,
                        help="TCP port (default 8765, or the config's; 0 picks a free one)")
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file (limits, timeouts, extensions)")


async def _echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def _serve(args: argparse.Namespace, out: TextIO) -> None:
    from .asyncio import serve

    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows / not the main thread
        loop.add_signal_handler(signal.SIGTERM, _resolve, stop)
    config = _load_config(args.config)
    host, port = args.host, args.port
    if config is not None:  # the file may choose the address; the command line wins
        from .config import merge_options

        chosen = merge_options(config, "asyncio_server", {})
        host = host if host is not None else chosen.get("host")
        port = port if port is not None else chosen.get("port")
    if host is None and port is None and config is not None and config.is_set("server.unix"):
        server_cm = serve(_echo, config=config)
    else:
        server_cm = serve(_echo, host or "127.0.0.1", 8765 if port is None else port, config=config)
    async with server_cm as server:
        for sock in server.sockets:
            name = sock.getsockname()
            if isinstance(name, str):  # a Unix socket
                where = f"unix:{name}"
            else:
                shown = f"[{name[0]}]" if ":" in name[0] else name[0]
                where = f"ws://{shown}:{name[1]}/"
            print(f"wskit: echo server listening on {where} (Ctrl-C to stop)", file=out, flush=True)
        try:
            await stop
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGTERM)
    print("wskit: server stopped", file=out, flush=True)


def run_serve(args: argparse.Namespace) -> int:
    """Run the echo server until Ctrl-C or SIGTERM; return the exit status."""
    try:
        asyncio.run(_serve(args, sys.stdout))
    except KeyboardInterrupt:
        print("wskit: server stopped", flush=True)
        return 0
    except (ConfigError, OSError, WSKitError) as exc:
        print(f"wskit serve: {exc}", file=sys.stderr)
        return 1
    return 0


# -- wskit connect -----------------------------------------------------------------


def add_connect_arguments(parser: argparse.ArgumentParser) -> None:
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
    from .asyncio import connect

    loop = asyncio.get_running_loop()
    ws = await connect(args.url, subprotocols=args.subprotocols, config=_load_config(args.config))
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


def run_connect(args: argparse.Namespace) -> int:
    """Run the interactive client: stdin lines are sent, messages printed with ``< ``."""
    try:
        return asyncio.run(_connect(args, sys.stdout))
    except KeyboardInterrupt:
        return 130
    except (OSError, TimeoutError, WSKitError) as exc:
        print(f"wskit connect: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

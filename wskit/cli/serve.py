"""``wskit serve``: an asyncio echo server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any, TextIO

from ..config import Config, load, merge_options
from ..exceptions import WSKitError

__all__ = ["add_arguments", "run", "load_config"]


def load_config(path: str | None) -> Config | None:
    """Load the ``--config FILE`` of a command (``None`` without one)."""
    return None if path is None else load(path)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``wskit serve`` options to ``parser``."""
    parser.add_argument("--host", default=None, help="interface to listen on (default 127.0.0.1, or the config's)")
    parser.add_argument("--port", type=int, default=None,
                        help="TCP port (default 8765, or the config's; 0 picks a free one)")
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file (limits, timeouts, extensions)")
    parser.add_argument("--workers", type=_worker_count, default=None, metavar="N",
                        help="serve from N processes sharing the port (SO_REUSEPORT), restarted when one dies")


async def _echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def _serve(args: argparse.Namespace, out: TextIO) -> None:
    from ..asyncio import serve

    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows / not the main thread
        loop.add_signal_handler(signal.SIGTERM, _resolve, stop)
    config = load_config(args.config)
    host, port = args.host, args.port
    if config is not None:  # the file may choose the address; the command line wins
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


def run(args: argparse.Namespace) -> int:
    """Run the echo server until Ctrl-C or SIGTERM (both exit with 0); return the exit status."""
    if getattr(args, "workers", None) is not None:
        return _run_workers(args)
    try:
        asyncio.run(_serve(args, sys.stdout))
    except KeyboardInterrupt:
        print("wskit: server stopped", flush=True)
        return 0
    except BrokenPipeError:  # standard output closed: wskit.cli.main ends quietly
        raise
    except (OSError, WSKitError) as exc:
        print(f"wskit serve: {exc}", file=sys.stderr)
        return 1
    return 0


# -- wskit serve --workers N: N processes sharing the port (wskit.workers) -----------------


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes >= 1, got {text!r}")
    return count


def _run_workers(args: argparse.Namespace) -> int:
    """``wskit serve --workers N``: the echo server in N processes until Ctrl-C or SIGTERM."""
    import logging

    from ..workers import WorkerError, serve_workers

    config = load_config(args.config)
    host, port = args.host, args.port
    if config is not None:  # the file may choose the address; the command line wins
        chosen = merge_options(config, "asyncio_server", {})
        host = host if host is not None else chosen.get("host")
        port = port if port is not None else chosen.get("port")
        if host is None and port is None and config.is_set("server.unix"):
            print("wskit serve: --workers shares a TCP port; it cannot serve the config's Unix socket",
                  file=sys.stderr)
            return 2
    host = host or "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    reports = logging.StreamHandler(sys.stdout)  # restarts and stops, as the supervisor sees them
    reports.setFormatter(logging.Formatter("wskit: %(message)s"))
    supervisor_log = logging.getLogger("wskit.workers")
    supervisor_log.addHandler(reports)
    supervisor_log.setLevel(logging.INFO)

    def started(port: int, pids: list[int]) -> None:
        print(f"wskit: echo server listening on ws://{shown}:{port}/ with {len(pids)} workers "
              f"(pids {' '.join(map(str, pids))}; Ctrl-C to stop)", flush=True)

    try:
        serve_workers(_echo, host, 8765 if port is None else port, workers=args.workers, config=config,
                      on_start=started)
    except (OSError, WSKitError, WorkerError) as exc:
        print(f"wskit serve: {exc}", file=sys.stderr)
        return 1
    finally:
        supervisor_log.removeHandler(reports)
    print("wskit: server stopped", flush=True)
    return 0

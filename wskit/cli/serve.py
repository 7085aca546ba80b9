"""``wskit serve``: an asyncio echo server (TCP or Unix socket, TLS, compression on or off).

Every option may come from a YAML configuration file (``--config FILE``:
``server.host``, ``server.port``, ``server.unix``, ``tls.certfile``,
``tls.keyfile``, ``compression``...); an option on the command line wins over
the file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
from typing import Any, TextIO

from ..config import Config, load, merge_options
from ..exceptions import ConfigError, WSKitError
from ._format import describe_error

__all__ = ["add_arguments", "run", "load_config", "server_ssl_context"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def load_config(path: str | None) -> Config | None:
    """Load the ``--config FILE`` of a command (``None`` without one)."""
    return None if path is None else load(path)


def server_ssl_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    """Build the TLS context of ``--certfile``/``--keyfile`` (``None`` without a certificate).

    Raises:
        ConfigError: a key without a certificate, or files that cannot be
            loaded (missing, not PEM, key not matching the certificate).
    """
    if certfile is None:
        if keyfile is not None:
            raise ConfigError("--keyfile needs --certfile")
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        if isinstance(exc, ssl.SSLError):
            detail = f"not a PEM certificate chain with its private key ({exc.reason or exc})"
        else:
            detail = exc.strerror or str(exc)
        raise ConfigError(f"cannot load the certificate {certfile}"
                          f"{f' and key {keyfile}' if keyfile else ''}: {detail}") from None
    return context


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``wskit serve`` options to ``parser``."""
    where = parser.add_argument_group("where to listen (default 127.0.0.1:8765, or the configuration's server.*)")
    where.add_argument("--host", default=None, help=f"interface to listen on (default {DEFAULT_HOST})")
    where.add_argument("--port", type=int, default=None, help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)")
    where.add_argument("--unix", metavar="PATH", default=None,
                       help="listen on this Unix socket instead of a TCP port")
    tls = parser.add_argument_group("TLS (serve wss://; default: the configuration's tls.*)")
    tls.add_argument("--certfile", "--cert", metavar="FILE", help="certificate chain in PEM format")
    tls.add_argument("--keyfile", "--key", metavar="FILE",
                     help="private key in PEM format (default: in the certificate file)")
    parser.add_argument("--compression", action=argparse.BooleanOptionalAction, default=None,
                        help="accept permessage-deflate (default: on, or the configuration's compression.enabled)")
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file (limits, timeouts, extensions)")
    parser.add_argument("--workers", type=_worker_count, default=None, metavar="N",
                        help="serve from N processes sharing the port (SO_REUSEPORT), restarted when one dies")


async def _echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


def _where(name: Any, scheme: str) -> str:
    if isinstance(name, str):  # a Unix socket
        return f"unix:{name} ({scheme}://localhost/ over it: wskit connect --unix {name})"
    shown = f"[{name[0]}]" if ":" in name[0] else name[0]
    return f"{scheme}://{shown}:{name[1]}/"


def _server_options(args: argparse.Namespace) -> tuple[Config | None, str | None, int | None, str | None,
                                                   dict[str, Any]]:
    """Combine the command line with ``--config``: ``(config, host, port, unix, explicit options)``.

    The command line wins over the file; ``explicit`` holds ``ssl`` and
    ``compression`` when either says so.
    """
    config = load_config(args.config)
    host, port, unix = args.host, args.port, args.unix
    if unix is not None and (host is not None or port is not None):
        raise ConfigError("give --unix PATH, or --host and --port, not both")
    context = server_ssl_context(args.certfile, args.keyfile)
    explicit: dict[str, Any] = {}
    if config is not None:  # the file may choose the address and TLS; the command line wins
        chosen = merge_options(config, "asyncio_server", {})
        if unix is None and host is None and port is None:
            unix = chosen.get("unix")
        if unix is None:
            host = host if host is not None else chosen.get("host")
            port = port if port is not None else chosen.get("port")
        if context is None:
            context = chosen.get("ssl")
    if context is not None:
        explicit["ssl"] = context
    if args.compression is not None:
        explicit["compression"] = "deflate" if args.compression else None
    return config, host, port, unix, explicit


async def _serve(args: argparse.Namespace, out: TextIO) -> None:
    from ..asyncio import serve

    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows / not the main thread
        loop.add_signal_handler(signal.SIGTERM, _resolve, stop)
    config, host, port, unix, explicit = _server_options(args)
    if unix is not None:
        server_cm = serve(_echo, None, None, unix=unix, config=config, **explicit)
        what = f"unix:{unix}"
    else:
        host = host or DEFAULT_HOST
        port = DEFAULT_PORT if port is None else port
        server_cm = serve(_echo, host, port, config=config, **explicit)
        what = f"{host}:{port}"
    scheme = "wss" if "ssl" in explicit else "ws"
    try:
        server = await server_cm.__aenter__()
    except OSError as exc:
        raise _Reported(describe_error(exc, what)) from None
    try:
        for sock in server.sockets:
            print(f"wskit: echo server listening on {_where(sock.getsockname(), scheme)} (Ctrl-C to stop)",
                  file=out, flush=True)
        try:
            await stop
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGTERM)
    finally:
        await server_cm.__aexit__(None, None, None)
    print("wskit: server stopped", file=out, flush=True)


class _Reported(Exception):
    """An error already worded for the user."""


def run(args: argparse.Namespace) -> int:
    """Run the echo server until Ctrl-C or SIGTERM (both exit with 0); return the exit status.

    Returns:
        0 once stopped, 1 when it cannot start (address in use, bad
        certificate, invalid configuration), with one line on standard error.
    """
    if getattr(args, "workers", None) is not None:
        return _run_workers(args)
    try:
        asyncio.run(_serve(args, sys.stdout))
    except KeyboardInterrupt:
        print("wskit: server stopped", flush=True)
        return 0
    except BrokenPipeError:  # standard output closed: wskit.cli.main ends quietly
        raise
    except ConfigError as exc:
        for message in exc.errors or [str(exc)]:
            print(f"wskit serve: {message}", file=sys.stderr)
        return 1
    except (_Reported, OSError, WSKitError, ValueError, TypeError) as exc:
        print(f"wskit serve: {exc if isinstance(exc, _Reported) else describe_error(exc)}", file=sys.stderr)
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

    try:
        config, host, port, unix, explicit = _server_options(args)
    except ConfigError as exc:
        for message in exc.errors or [str(exc)]:
            print(f"wskit serve: {message}", file=sys.stderr)
        return 1
    if unix is not None:
        print("wskit serve: --workers shares a TCP port; it cannot serve a Unix socket", file=sys.stderr)
        return 2
    host = host or DEFAULT_HOST
    shown = f"[{host}]" if ":" in host else host
    scheme = "wss" if "ssl" in explicit else "ws"
    reports = logging.StreamHandler(sys.stdout)  # restarts and stops, as the supervisor sees them
    reports.setFormatter(logging.Formatter("wskit: %(message)s"))
    supervisor_log = logging.getLogger("wskit.workers")
    supervisor_log.addHandler(reports)
    supervisor_log.setLevel(logging.INFO)

    def started(port: int, pids: list[int]) -> None:
        print(f"wskit: echo server listening on {scheme}://{shown}:{port}/ with {len(pids)} workers "
              f"(pids {' '.join(map(str, pids))}; Ctrl-C to stop)", flush=True)

    try:
        serve_workers(_echo, host, DEFAULT_PORT if port is None else port, workers=args.workers, config=config,
                      on_start=started, **explicit)
    except (OSError, WSKitError, WorkerError) as exc:
        print(f"wskit serve: {exc}", file=sys.stderr)
        return 1
    finally:
        supervisor_log.removeHandler(reports)
    print("wskit: server stopped", flush=True)
    return 0

"""``wskit connect URL``: a client for trying a WebSocket server by hand or from a script.

On a terminal it is interactive: each line typed is sent as a text message,
with line editing and a history kept between sessions (readline, where
Python has it); incoming messages are printed above the line being typed,
which stays as it was. When standard input is a pipe or a file, each line
is sent as one message and, at its end, the connection is closed cleanly.
With ``--reconnect``, a lost connection is followed by a new one, lines
typed meanwhile waiting their turn (see :data:`RECONNECT_CODES`).

The exit status says how the connection ended (see :data:`EXIT_STATUSES`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import ssl
import sys
import threading
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, TextIO, cast

from ..exceptions import ConfigError, WebSocketClosed, WSKitError
from ..frames import CloseCode
from ._format import describe_close, describe_error, format_message
from .serve import load_config

__all__ = ["add_arguments", "run", "history_path", "exit_status", "EXIT_STATUSES", "PROMPT"]

EXIT_CLEAN = 0
EXIT_FAILED = 1
EXIT_CLOSED_WITH_ERROR = 3
EXIT_LOST = 4
EXIT_INTERRUPTED = 130

EXIT_STATUSES: dict[int, str] = {
    EXIT_CLEAN: "the connection was closed cleanly (1000 normal closure or 1001 going away, either side "
                "closing; or 1005, a Close frame without a code)",
    EXIT_FAILED: "no connection: server not running, bad URI, TLS failure, upgrade refused, timeout, "
                 "or an invalid configuration file",
    2: "usage error (an unknown option, a missing URL)",
    EXIT_CLOSED_WITH_ERROR: "the connection was closed with another code: a protocol error (1002), "
                            "a message too big (1009), a server error (1011), an application code (4000-4999)...",
    EXIT_LOST: "the connection was lost without a closing handshake (1006): the server went away or the "
               "network failed",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C (the connection is closed with 1000 first)",
}
"""Exit status of ``wskit connect`` -> what it means (docs/cli.md shows this table)."""

PROMPT = "> "
"""The prompt of the interactive mode."""


def exit_status(code: int | None) -> int:
    """Return the exit status for a connection that ended with close code ``code``."""
    if code in (CloseCode.NORMAL_CLOSURE, CloseCode.GOING_AWAY, CloseCode.NO_STATUS_RCVD):
        return EXIT_CLEAN
    if code is None or code == CloseCode.ABNORMAL_CLOSURE:
        return EXIT_LOST
    return EXIT_CLOSED_WITH_ERROR


def history_path() -> Path:
    """Where the interactive mode keeps its history: ``$XDG_STATE_HOME/wskit/connect_history``.

    ``XDG_STATE_HOME`` defaults to ``~/.local/state``.
    """
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "wskit" / "connect_history"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``wskit connect`` options to ``parser``."""
    parser.add_argument("url", nargs="?", default=None,
                        help="ws:// or wss:// URL to connect to (default: client.uri of --config FILE)")
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file (client.uri, timeouts, tls...)")
    parser.add_argument("--unix", metavar="PATH", help="connect over this Unix socket (the URL goes in the request)")
    parser.add_argument("--subprotocol", action="append", dest="subprotocols", metavar="NAME",
                        help="offer this subprotocol (repeatable)")
    parser.add_argument("--cafile", metavar="FILE",
                        help="trust the certificate authorities in this PEM file for wss:// (e.g. a self-signed "
                             "server certificate)")
    parser.add_argument("--compression", action=argparse.BooleanOptionalAction, default=None,
                        help="offer permessage-deflate (default: on, or the configuration's compression.enabled)")
    proxy = parser.add_mutually_exclusive_group()
    proxy.add_argument("--proxy", metavar="URL",
                       help="connect through this proxy (http://, https://, socks5://...; credentials in the URL); "
                            "default: the environment's HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY")
    proxy.add_argument("--no-proxy", action="store_true", help="use no proxy, whatever the environment says")
    parser.add_argument("--max-redirects", metavar="N", type=int, default=None,
                        help="redirects to follow in the opening handshake (default: 10; 0 follows none)")
    parser.add_argument("--history", metavar="FILE", default=None,
                        help=f"history file of the interactive mode (default: {_shown(history_path())})")
    parser.add_argument("--no-history", action="store_true", help="keep no history file")
    parser.add_argument("--reconnect", action="store_true",
                        help="when the connection is lost (or the server goes away or restarts: 1001, 1012, 1013), "
                             "or an attempt fails in a way that may pass, connect again after a growing delay; "
                             "lines typed meanwhile are sent once connected again")
    parser.epilog = "exit status: " + "; ".join(f"{status}: {text.split(':')[0].split(' (')[0]}"
                                                for status, text in EXIT_STATUSES.items())


def _shown(path: Path) -> str:
    home = os.path.expanduser("~")
    text = str(path)
    return "~" + text[len(home):] if home != "~" and text.startswith(home + os.sep) else text


class _Reported(Exception):
    """An error already worded for the user."""


class _Terminal:
    """The interactive mode: ``input()`` (with readline) in a thread; prints above the line being typed."""

    def __init__(self, out: TextIO, history: Path | None) -> None:
        self.out = out
        self.history = history
        self.lock = threading.Lock()
        self.readline: Any = None
        self._redraw: Callable[[], Any] | None = None
        self._saved: Any = None
        try:
            import termios

            self._saved = termios.tcgetattr(sys.stdin.fileno())
        except (ImportError, OSError, ValueError):
            pass
        try:
            import readline
        except ImportError:  # no readline (Windows): plain input(), still usable
            return
        self.readline = readline
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            # GNU readline's full redraw (prompt, line, cursor where it was); not in the readline module.
            self._redraw = ctypes.CDLL(readline.__file__).rl_forced_update_display
        if history is not None:
            readline.set_history_length(1000)
            with contextlib.suppress(OSError):
                readline.read_history_file(history)

    def start(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
        def read() -> None:
            while True:
                try:
                    line: str | None = input(PROMPT)
                except (EOFError, OSError, ValueError):
                    line = None
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, line)
                except RuntimeError:  # the loop is closed: the connection ended
                    return
                if line is None:
                    return

        threading.Thread(target=read, name="wskit-connect-input", daemon=True).start()

    def show(self, text: str) -> None:
        """Print ``text`` on its own line above the prompt and the line being typed, then redraw them."""
        with self.lock:
            self.out.write(f"\r\x1b[K{text}\n")
            self.out.flush()
            if self._redraw is not None:
                self._redraw()
            else:
                buffer = self.readline.get_line_buffer() if self.readline is not None else ""
                self.out.write(PROMPT + buffer)
            self.out.flush()

    def finish(self) -> None:
        """Clear the prompt line, save the history, give the terminal back as it was."""
        with self.lock:
            self.out.write("\r\x1b[K")
            self.out.flush()
        if self.readline is not None and self.history is not None:
            with contextlib.suppress(OSError):
                self.history.parent.mkdir(parents=True, exist_ok=True)
                self.readline.write_history_file(self.history)
        if self._saved is not None:
            import termios

            with contextlib.suppress(OSError, termios.error):
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read piped stdin in a daemon thread, one message a line; None marks the end."""

    def read() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
        except (OSError, ValueError) as exc:  # e.g. bytes that are not UTF-8: say so, then end as at EOF
            print(f"wskit connect: cannot read standard input: {exc}", file=sys.stderr, flush=True)
        with contextlib.suppress(RuntimeError):  # the loop may be closed already
            loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="wskit-connect-stdin", daemon=True).start()


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.subprotocols:
        options["subprotocols"] = args.subprotocols
    if args.compression is not None:
        options["compression"] = "deflate" if args.compression else None
    if args.no_proxy:
        options["proxy"] = None
    elif args.proxy is not None:
        options["proxy"] = args.proxy
    if args.max_redirects is not None:
        if args.max_redirects < 0:
            raise _Reported(f"--max-redirects must be 0 or more, got {args.max_redirects}")
        options["max_redirects"] = args.max_redirects
    if args.cafile is not None:
        context = ssl.create_default_context(cafile=None)
        try:
            context.load_verify_locations(args.cafile)
        except (ssl.SSLError, OSError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else getattr(exc, "reason", None)
            raise _Reported(f"cannot load --cafile {args.cafile}: {detail or exc}") from None
        options["ssl"] = context
    return options


RECONNECT_CODES = frozenset({CloseCode.GOING_AWAY, CloseCode.ABNORMAL_CLOSURE, CloseCode.SERVICE_RESTART,
                             CloseCode.TRY_AGAIN_LATER})
"""With ``--reconnect``: the ways a connection may end (server going away or restarting, connection lost)
after which the client connects again; any other end ends the command as without ``--reconnect``."""


class _Lines:
    """The lines to send, outliving each connection: a queue, plus a line to send again first."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.again: str | None = None

    async def get(self) -> str | None:
        if self.again is not None:
            line, self.again = self.again, None
            return line
        return await self.queue.get()


async def _session(ws: Any, lines: _Lines, interrupted: asyncio.Future[None],
                   show: Callable[[str], None]) -> tuple[bool, bool]:
    """Send the lines and print the messages of one connection until it ends.

    Returns:
        ``(the client ended it, a message went either way)``: the client ends it on Ctrl-C
        (``interrupted``) and at the end of the input; otherwise the server or the network did.
    """
    loop = asyncio.get_running_loop()
    exchanged = False

    async def printer() -> None:
        nonlocal exchanged
        async for message in ws:
            exchanged = True
            show(f"< {format_message(message)}")

    receiving = loop.create_task(printer())
    client_ended = False
    try:
        while not receiving.done() and not interrupted.done():
            getting = loop.create_task(lines.get())
            waiting: set[asyncio.Future[Any]] = {getting, receiving, interrupted}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not getting.done():
                getting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getting
                break
            line = getting.result()
            if line is None:  # Ctrl-D / end of the pipe
                client_ended = True
                break
            try:
                await ws.send(line)
            except WebSocketClosed:
                lines.again = line  # not sent: first of the next connection, if there is one
                break
            exchanged = True
        client_ended = client_ended or interrupted.done()
        if client_ended:
            await ws.close()
        with contextlib.suppress(WebSocketClosed):
            await receiving
    finally:
        if not receiving.done():
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketClosed):
                await receiving
        await ws.close()
    return client_ended, exchanged


async def _connect(args: argparse.Namespace, out: TextIO, interactive: bool) -> int:
    from ..asyncio import connect, unix_connect
    from ..reconnect import backoff_delays, is_transient

    loop = asyncio.get_running_loop()
    config = load_config(args.config)
    uri: str | None = args.url
    if uri is None and config is not None and config.is_set("client.uri"):
        uri = config.get("client.uri")
    if uri is None and args.unix is None:
        raise _Reported("give the URL to connect to (ws://HOST:PORT/PATH), or client.uri in a --config FILE")
    options = _client_options(args)
    if args.unix is not None and args.proxy is not None:
        raise _Reported("--proxy does not apply to a connection over --unix")
    where = uri if uri is not None else f"unix:{args.unix}"
    terminal: _Terminal | None = None

    def show(text: str) -> None:
        if terminal is not None:
            terminal.show(text)
        else:
            print(text, file=out, flush=True)

    def retry_or_raise(exc: Exception) -> Exception | None:
        if not is_transient(exc):
            return exc
        show(f"{describe_error(exc, where)}; retrying.")
        return None

    if args.reconnect:
        options["process_exception"] = retry_or_raise
    connector = (unix_connect(args.unix, uri, config=config, **options) if args.unix is not None
                 else connect(uri, config=config, **options))
    attempts = cast(AsyncGenerator[Any, None], connector.__aiter__()) if args.reconnect else None
    try:
        ws = await (attempts.__anext__() if attempts is not None else connector)
    except (OSError, TimeoutError, WSKitError, ValueError) as exc:
        raise _Reported(describe_error(exc, where)) from None
    chosen = f" (subprotocol {ws.subprotocol})" if ws.subprotocol else ""
    print(f"Connected to {where}{chosen}.", file=out, flush=True)
    if interactive:
        print("Type a message and Enter to send it; Ctrl-D closes the connection.", file=out, flush=True)

    history = None if args.no_history else Path(args.history) if args.history else history_path()
    terminal = _Terminal(out, history) if interactive else None
    interrupted: asyncio.Future[None] = loop.create_future()

    def interrupt() -> None:
        if not interrupted.done():
            interrupted.set_result(None)

    with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows / not the main thread
        loop.add_signal_handler(signal.SIGINT, interrupt)
    lines = _Lines()
    if terminal is not None:
        terminal.start(loop, lines.queue)
    else:
        _stdin_lines(loop, lines.queue)
    # After a connection that carried no message, wait before the next one (a server that accepts then
    # drops every connection is not hammered); the reconnecting iterator spaces out failed attempts.
    pauses = backoff_delays()

    async def next_connection(ended: Any, client_ended: bool, exchanged: bool) -> Any:
        """The connection that follows ``ended`` (with --reconnect), or ``None`` to stop."""
        nonlocal pauses
        if attempts is None or client_ended or ended.close_code not in RECONNECT_CODES:
            return None
        lost = "lost" if ended.close_code == CloseCode.ABNORMAL_CLOSURE else "closed"
        show(f"Connection {lost}: {describe_close(ended.close_code, ended.close_reason)}; reconnecting.")
        if exchanged:
            pauses = backoff_delays()
        else:
            await asyncio.wait({interrupted}, timeout=next(pauses))
        following = loop.create_task(attempts.__anext__())
        await asyncio.wait({following, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        if not following.done():
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
        if interrupted.done():
            return None
        try:
            connection = following.result()
        except (OSError, TimeoutError, WSKitError, ValueError) as exc:
            raise _Reported(describe_error(exc, where)) from None
        show("Reconnected.")
        return connection

    try:
        while True:
            client_ended, exchanged = await _session(ws, lines, interrupted, show)
            following = await next_connection(ws, client_ended, exchanged)
            if following is None:
                break
            ws = following
    finally:
        if attempts is not None:
            await attempts.aclose()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
        if terminal is not None:
            terminal.finish()
    print(f"Connection closed: {describe_close(ws.close_code, ws.close_reason)}.", file=out, flush=True)
    return EXIT_INTERRUPTED if interrupted.done() else exit_status(ws.close_code)


def run(args: argparse.Namespace) -> int:
    """Run the client; return the exit status (:data:`EXIT_STATUSES`)."""
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    try:
        return asyncio.run(_connect(args, sys.stdout, interactive))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # standard output closed: wskit.cli.main ends quietly
        raise
    except ConfigError as exc:
        for message in exc.errors or [str(exc)]:
            print(f"wskit connect: {message}", file=sys.stderr)
        return EXIT_FAILED
    except (_Reported, OSError, TimeoutError, WSKitError) as exc:
        print(f"wskit connect: {exc if isinstance(exc, _Reported) else describe_error(exc)}", file=sys.stderr)
        return EXIT_FAILED

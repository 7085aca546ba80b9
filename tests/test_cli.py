"""Tests for the ``wskit serve``, ``wskit connect`` and ``wskit demo`` commands (real subprocesses)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import queue
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from wskit.asyncio import connect
from wskit.defaults import VERSION
from wskit.plugin import PluginManager

ROOT = Path(__file__).resolve().parent.parent


def wskit_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "wskit", *args]


@contextmanager
def background(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start a wskit command that prints ``ws://127.0.0.1:PORT/`` first; yield it and that URL."""
    proc = subprocess.Popen(wskit_command(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"ws://127\.0\.0\.1:\d+/", line)
        assert match, f"no URL in the first line {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        yield proc, match.group(0)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_serve_and_connect_with_piped_stdin() -> None:
    with background("serve", "--host", "127.0.0.1", "--port", "0") as (server, url):
        result = subprocess.run(wskit_command("connect", url), input="hello\nwörld ✓\n\n", cwd=ROOT,
                                capture_output=True, text=True, timeout=20)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == f"Connected to {url}."
        assert lines[1:4] == ["< hello", "< wörld ✓", "< "]
        assert lines[-1] == "Connection closed: 1000 (normal closure)."
        # Ctrl-C stops the server cleanly.
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=10)
        assert server.returncode == 0, err
        assert "server stopped" in out
        assert "Traceback" not in err


def test_serve_stops_on_sigterm() -> None:
    with background("serve", "--port", "0") as (server, _):
        server.terminate()
        out, err = server.communicate(timeout=10)
        assert server.returncode == 0, err
        assert "server stopped" in out


def test_connect_error_is_reported() -> None:
    result = subprocess.run(wskit_command("connect", "ws://127.0.0.1:1/"), input="", cwd=ROOT,
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    assert "wskit connect:" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run(wskit_command("connect", "http://127.0.0.1/"), input="", cwd=ROOT,
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    assert "scheme must be ws or wss" in result.stderr


def test_demo_prints_the_conversation() -> None:
    result = subprocess.run(wskit_command("demo"), cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in ("> hello", "< Echo: hello", "(binary, 8 bytes) 00 01 02 03", "< pong after",
                     "permessage-deflate", "(matches)", "= client: connection closed, 1000 (normal closure)",
                     "= server: connection closed, 1000 (normal closure)"):
        assert expected in out, f"{expected!r} missing from:\n{out}"
    assert "Traceback" not in result.stderr


def test_demo_serve_only_answers_a_client() -> None:
    async def talk(url: str) -> str | bytes:
        async with connect(url) as ws:
            await ws.send("hi")
            return await ws.recv()

    with background("demo", "--serve-only", "--port", "0") as (server, url):
        assert asyncio.run(talk(url)) == "Echo: hi"
        server.terminate()
        _, err = server.communicate(timeout=10)
        assert server.returncode == 0, err


# -- the entry point: version, usage, errors ------------------------------------------------


def test_version_from_the_module_and_the_script() -> None:
    result = subprocess.run(wskit_command("--version"), cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"wskit {VERSION}\n", "")
    script = Path(sys.executable).parent / ("wskit.exe" if sys.platform == "win32" else "wskit")
    assert script.exists(), "the wskit console script is not installed next to this Python"
    result = subprocess.run([str(script), "-V"], cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert (result.returncode, result.stdout) == (0, f"wskit {VERSION}\n")


def test_no_command_prints_usage_and_exits_2() -> None:
    result = subprocess.run(wskit_command(), cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert "usage: wskit" in result.stderr and "serve" in result.stderr


@pytest.mark.parametrize("command", [("config", "docs"), ("config", "check", "examples/server.yaml"), ("demo",),
                                     ("plugins",)])
def test_closed_standard_output_ends_quietly(command: tuple[str, ...]) -> None:
    # As in `wskit config check FILE | head -1` or `wskit plugins | head` once head has gone: the
    # reader closed the pipe first.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(wskit_command(*command), cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE,
                                text=True, timeout=20)
    finally:
        os.close(write_end)
    assert result.returncode == 141  # 128 + SIGPIPE, as other Unix tools
    assert result.stderr == ""


def test_missing_config_file_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    for command in (("serve", "--port", "0", "--config", str(missing)), ("plugins", "--config", str(missing))):
        result = subprocess.run(wskit_command(*command), cwd=ROOT, capture_output=True, text=True, timeout=20)
        assert result.returncode == 1, result.stderr
        assert "nope.yaml" in result.stderr and "Traceback" not in result.stderr


def test_plugins_disable_refuses_an_unknown_name_like_the_yaml_file(tmp_path: Path) -> None:
    result = subprocess.run(wskit_command("plugins", "--disable", "zstd"), cwd=ROOT, capture_output=True, text=True,
                            timeout=20)
    assert result.returncode == 1
    assert "no installed plugin named 'zstd'" in result.stderr and "Traceback" not in result.stderr
    config = tmp_path / "plugins.yaml"
    config.write_text("plugins:\n  disable: [zstd]\n")
    from_file = subprocess.run(wskit_command("config", "check", str(config)), cwd=ROOT, capture_output=True,
                               text=True, timeout=20)
    assert from_file.returncode == 1 and "no installed plugin named 'zstd'" in from_file.stderr
    # A misspelling gets the same suggestion as in a file.
    result = subprocess.run(wskit_command("plugins", "--disable", "permessage-deflat"), cwd=ROOT,
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 1 and "did you mean 'permessage-deflate'?" in result.stderr
    result = subprocess.run(wskit_command("plugins", "--disable", "permessage-deflate", "--no-entry-points"),
                            cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert "disabled: permessage-deflate" in result.stdout


def test_ctrl_c_stops_the_demo_server_quietly() -> None:
    with background("demo", "--serve-only", "--port", "0") as (server, _):
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=10)
        assert server.returncode == 0, err
        assert "Traceback" not in err


def test_ctrl_c_ends_connect_with_status_130() -> None:
    with background("serve", "--port", "0") as (server, url):
        client = subprocess.Popen(wskit_command("connect", url), cwd=ROOT, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert client.stdout is not None
            assert client.stdout.readline() == f"Connected to {url}.\n"
            client.send_signal(signal.SIGINT)
            _, err = client.communicate(timeout=10)
        finally:
            if client.poll() is None:
                client.kill()
                client.communicate(timeout=10)
        assert client.returncode == 130, err
        assert "Traceback" not in err
        server.terminate()


# -- wskit serve: TLS, Unix sockets, compression, configuration files ----------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (made by the openssl binary)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl binary to make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    return cert, key


@contextmanager
def announced(*args: str, pattern: str = r"wss?://127\.0\.0\.1:\d+/") -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``wskit serve ...``; yield it and what its first line announces (matching ``pattern``)."""
    proc = subprocess.Popen(wskit_command(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(pattern, line)
        assert match, f"nothing like {pattern} in {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        yield proc, match.group(0)
    finally:
        if proc.poll() is None:
            proc.terminate()
        _, err = proc.communicate(timeout=10)
        assert "Traceback" not in err


def talk(*args: str, stdin: str = "hello\n") -> subprocess.CompletedProcess[str]:
    return subprocess.run(wskit_command("connect", *args), input=stdin, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_serve_with_tls_from_a_config_file_announces_wss(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = certificate
    config = tmp_path / "tls.yaml"
    config.write_text(f"server:\n  port: 0\ntls:\n  certfile: {cert}\n  keyfile: {key}\n")
    with announced("serve", "--config", str(config)) as (_, url):
        assert url.startswith("wss://127.0.0.1:")
        result = talk("--cafile", str(cert), url)
        assert result.returncode == 0, result.stderr
        assert "< hello" in result.stdout.splitlines()


def test_serve_with_tls_files_on_the_command_line(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    with announced("serve", "--port", "0", "--certfile", str(cert), "--keyfile", str(key)) as (_, url):
        assert url.startswith("wss://")
        # Without --cafile the self-signed certificate is not trusted: one clear line, status 1.
        result = talk(url)
        assert result.returncode == 1
        assert result.stderr.startswith(f"wskit connect: TLS failure with {url}: ")
        assert "--cafile" in result.stderr and "Traceback" not in result.stderr
        # A ws:// client cannot talk to it either; a wss:// client to a ws:// server gets told why.
        assert talk(url.replace("wss://", "ws://")).returncode != 0
    with announced("serve", "--port", "0") as (_, url):
        result = talk(url.replace("ws://", "wss://"))
        assert result.returncode == 1 and "TLS failure" in result.stderr and "Traceback" not in result.stderr


def test_serve_refuses_a_bad_certificate_in_one_line(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, _ = certificate
    for extra in (["--certfile", str(tmp_path / "missing.pem")], ["--certfile", str(cert), "--keyfile", str(cert)],
                  ["--keyfile", str(cert)]):
        result = subprocess.run(wskit_command("serve", "--port", "0", *extra), cwd=ROOT, capture_output=True,
                                text=True, timeout=20)
        assert result.returncode == 1, extra
        assert result.stderr.startswith("wskit serve: ") and result.stderr.count("\n") == 1, result.stderr


def test_serve_and_connect_over_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "ws.sock"
    with announced("serve", "--unix", str(path), pattern=r"unix:\S+") as (_, where):
        assert where == f"unix:{path}"
        result = talk("--unix", str(path))
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[:2] == [f"Connected to unix:{path}.", "< hello"]
    missing = talk("--unix", str(tmp_path / "nothing.sock"))
    assert missing.returncode == 1 and "is the server running?" in missing.stderr


def test_serve_address_already_in_use_is_one_line() -> None:
    with announced("serve", "--port", "0") as (_, url):
        port = url.rsplit(":", 1)[1].strip("/")
        result = subprocess.run(wskit_command("serve", "--port", port), cwd=ROOT, capture_output=True, text=True,
                                timeout=20)
        assert result.returncode == 1
        assert "already in use" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("flags", "expected"), [((), ["permessage-deflate"]), (("--no-compression",), [])])
def test_serve_compression_on_and_off(flags: tuple[str, ...], expected: list[str]) -> None:
    async def extensions(url: str) -> list[str]:
        # The client offers wskit's own extensions only, whatever else is installed.
        async with connect(url, plugin_manager=PluginManager(entry_points=False)) as ws:
            return [ext.name for ext in ws.protocol.extensions]

    with announced("serve", "--port", "0", *flags) as (_, url):
        assert asyncio.run(extensions(url)) == expected


def test_connect_no_compression_offers_none() -> None:
    with announced("serve", "--port", "0") as (_, url):
        # The echo comes back either way; --no-compression only changes what is offered.
        assert talk("--no-compression", url).returncode == 0


# -- wskit connect: configuration, errors, exit statuses --------------------------------------------


def test_connect_uses_client_uri_of_the_config_file(tmp_path: Path) -> None:
    with announced("serve", "--port", "0") as (_, url):
        config = tmp_path / "client.yaml"
        config.write_text(f"client:\n  uri: {url}chat\n")
        result = talk("--config", str(config))
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[:2] == [f"Connected to {url}chat.", "< hello"]
    result = talk()
    assert result.returncode == 1 and "give the URL" in result.stderr


class ControlledServer:
    """A wskit asyncio server in a thread: records and echoes what it receives, obeys ``close N`` and ``drop``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.received: queue.Queue[str | bytes] = queue.Queue()
        self.connections: set[Any] = set()
        self.url = ""
        started = threading.Event()

        async def handler(ws: Any) -> None:
            self.connections.add(ws)
            try:
                async for message in ws:
                    self.received.put(message)
                    if isinstance(message, str) and message.startswith("close "):
                        await ws.close(int(message.split()[1]), "as asked")
                    elif message == "drop":
                        ws.transport.abort()
                    else:
                        await ws.send(message)
            finally:
                self.connections.discard(ws)

        async def main() -> None:
            from wskit.asyncio import serve

            async with serve(handler, "127.0.0.1", 0) as server:
                self.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
                self.stop = asyncio.Event()
                started.set()
                await self.stop.wait()

        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),), daemon=True)
        self.thread.start()
        assert started.wait(10)

    def push(self, text: str) -> None:
        """Send ``text`` to every connected client."""

        async def send() -> None:
            for ws in list(self.connections):
                await ws.send(text)

        asyncio.run_coroutine_threadsafe(send(), self.loop).result(10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def controlled() -> Iterator[ControlledServer]:
    server = ControlledServer()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize(("last_line", "status", "close"), [
    ("close 1000", 0, "1000 (normal closure)"),
    ("close 1001", 0, "1001 (going away)"),
    ("close 1011", 3, "1011 (internal error)"),
    ("close 4000", 3, "4000 (application)"),
    ("drop", 4, "1006 (abnormal closure)"),
])
def test_connect_exit_status_says_how_the_connection_ended(controlled: ControlledServer, last_line: str,
                                                           status: int, close: str) -> None:
    # The server ends the connection while the client's stdin is still open: the client ends there.
    client = subprocess.Popen(wskit_command("connect", controlled.url), cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write("hi\n")
        client.stdin.flush()
        # The echo first (an aborted connection takes what was not written yet with it), then the end.
        lines = [client.stdout.readline().rstrip("\n"), client.stdout.readline().rstrip("\n")]
        client.stdin.write(f"{last_line}\n")
        client.stdin.flush()
        client.wait(timeout=20)
        out, err = client.communicate(timeout=10)
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate(timeout=10)
    assert client.returncode == status, err
    assert lines[1] == "< hi"
    assert out.splitlines()[-1].startswith(f"Connection closed: {close}")
    assert "Traceback" not in err


def test_connect_piped_stdin_sends_one_message_a_line_then_closes_with_1000(controlled: ControlledServer) -> None:
    result = talk(controlled.url, stdin="one\ntwo words\n\nlast without newline")
    assert result.returncode == 0, result.stderr
    got = [controlled.received.get(timeout=60) for _ in range(4)]
    assert got == ["one", "two words", "", "last without newline"]
    assert result.stdout.splitlines()[-1] == "Connection closed: 1000 (normal closure)."


# -- wskit connect on a terminal (driven through a pseudo-terminal) ---------------------------------


def screen(raw: bytes, width: int = 200) -> list[str]:
    """What a terminal shows for ``raw``: carriage returns, erases and cursor moves applied, escapes dropped."""
    lines: list[list[str]] = [[]]
    row = col = 0
    text = raw.decode("utf-8", "replace")
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\x1b":
            m = re.match(r"\x1b\[([0-9;?]*)([A-Za-z@])|\x1b[()][A-Z0-9]|\x1b[=>]", text[i:])
            i += len(m.group(0)) if m else 1
            if m and m.group(2):
                n = int(m.group(1)) if m.group(1).isdigit() else 1
                if m.group(2) == "K":
                    del lines[row][col:]
                elif m.group(2) == "C":
                    col += n
                elif m.group(2) == "D":
                    col = max(0, col - n)
                elif m.group(2) == "A":
                    row = max(0, row - n)
                elif m.group(2) == "P":  # delete characters
                    del lines[row][col:col + n]
            continue
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            if row == len(lines):
                lines.append([])
        elif ch == "\b":
            col = max(0, col - 1)
        elif ch >= " " or ch == "\t":
            line = lines[row]
            line.extend(" " * (col - len(line) + 1) if col >= len(line) else "")
            line[col] = ch
            col += 1
        i += 1
    return ["".join(line).rstrip() for line in lines]


class Terminal:
    """``wskit connect`` run on a pseudo-terminal, read and typed into like a person would."""

    def __init__(self, url: str, home: Path) -> None:
        env = {**os.environ, "TERM": "xterm", "HOME": str(home), "XDG_STATE_HOME": str(home / "state"),
               "COLUMNS": "200", "LINES": "50", "INPUTRC": os.devnull}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes wskit connect on the terminal
            try:
                os.chdir(ROOT)
                os.execve(sys.executable, wskit_command("connect", url), env)
            finally:
                os._exit(127)
        self.output = b""

    def read_until(self, what: bytes | re.Pattern[bytes], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        found = (lambda: what in self.output) if isinstance(what, bytes) else (lambda: bool(what.search(self.output)))
        while not found():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{what!r} never shown; the terminal shows:\n" + "\n".join(screen(self.output))
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # the child is gone (EIO)
                    chunk = b""
                assert chunk, f"the program ended before showing {what!r}:\n" + "\n".join(screen(self.output))
                self.output += chunk

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self) -> int:
        deadline = time.monotonic() + 60
        while True:  # drain the output until the end (EIO), so that the child never blocks writing
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, "the program did not end:\n" + "\n".join(screen(self.output))
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        with contextlib.suppress(OSError):
            os.close(self.fd)


@pytest.fixture
def terminal_for(tmp_path: Path) -> Iterator[Any]:
    if sys.platform == "win32":
        pytest.skip("pseudo-terminals are POSIX")
    started: list[Terminal] = []

    def start(url: str) -> Terminal:
        started.append(Terminal(url, tmp_path))
        return started[-1]

    yield start
    for terminal in started:
        terminal.kill()


def test_interactive_incoming_message_does_not_break_the_typed_line(controlled: ControlledServer, terminal_for: Any,
                                                                   tmp_path: Path) -> None:
    term = terminal_for(controlled.url)
    term.read_until(b"Ctrl-D closes")
    term.read_until(b"> ")
    term.type("hel")
    term.read_until(b"> hel")
    controlled.push("news from the server")
    term.read_until(b"news from the server")
    term.read_until(re.compile(rb"news from the server.*> hel", re.S))  # the typed line is shown again
    term.type("lo\r")
    assert controlled.received.get(timeout=60) == "hello"
    term.read_until(b"< hello")
    # Line editing: ^A goes to the start of the line, ^K cuts to its end; arrows work the same way.
    term.type("xyz\x01\x0bfine\r")
    assert controlled.received.get(timeout=60) == "fine"
    term.read_until(b"< fine")
    term.type("\x04")  # Ctrl-D on an empty line: close and exit
    assert term.wait() == 0
    shown = screen(term.output)
    assert "< news from the server" in shown, shown
    assert "> hello" in shown, shown  # one line, typed in two parts around the incoming message
    assert not any("hel" in line and "news" in line for line in shown), shown
    assert shown[-1] == "Connection closed: 1000 (normal closure)." or shown[-2:] == [
        "Connection closed: 1000 (normal closure).", ""]
    history = (tmp_path / "state" / "wskit" / "connect_history").read_text()
    assert "hello" in history and "fine" in history


def test_interactive_history_comes_back_with_the_up_arrow(controlled: ControlledServer, terminal_for: Any) -> None:
    first = terminal_for(controlled.url)
    first.read_until(b"> ")
    first.type("remember me\r")
    assert controlled.received.get(timeout=60) == "remember me"
    first.type("\x04")
    assert first.wait() == 0
    second = terminal_for(controlled.url)  # a new session: the history file is read back
    second.read_until(b"> ")
    second.type("\x1b[A\r")  # up arrow, Enter
    assert controlled.received.get(timeout=60) == "remember me"
    second.type("\x03")  # Ctrl-C: closes the connection, exits with 130
    assert second.wait() == 130
    assert "Traceback" not in "\n".join(screen(second.output))


def test_interactive_server_closing_ends_the_session(controlled: ControlledServer, terminal_for: Any) -> None:
    term = terminal_for(controlled.url)
    term.read_until(b"> ")
    term.type("close 1011\r")
    assert term.wait() == 3
    assert "Connection closed: 1011 (internal error), reason 'as asked'." in screen(term.output)


# -- proxy and redirects -------------------------------------------------------------


def run_connect(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    environment.update(env or {})
    return subprocess.run(wskit_command("connect", *args), input="through\n", cwd=ROOT, capture_output=True,
                          text=True, timeout=30, env=environment)


def test_connect_through_a_proxy() -> None:
    from proxy_servers import HTTPProxy, echo_server

    with echo_server() as server, HTTPProxy() as proxy:
        result = run_connect(server.uri, "--proxy", proxy.url)
        assert result.returncode == 0, result.stderr
        assert "< through" in result.stdout.splitlines()
        assert proxy.targets == [f"127.0.0.1:{server.port}"]


def test_connect_no_proxy_ignores_the_environment_and_a_refusing_proxy_is_named() -> None:
    from proxy_servers import HTTPProxy, echo_server

    with echo_server() as server, HTTPProxy(behaviour="refuse") as proxy:
        env = {"HTTP_PROXY": proxy.url, "http_proxy": proxy.url}
        refused = run_connect(server.uri, env=env)
        assert refused.returncode == 1
        assert "403" in refused.stderr and "Traceback" not in refused.stderr
        direct = run_connect(server.uri, "--no-proxy", env=env)
        assert direct.returncode == 0, direct.stderr
        assert "< through" in direct.stdout.splitlines()
        assert len(proxy.requests) == 1  # only the first command asked it


def test_connect_follows_redirects_up_to_max_redirects() -> None:
    from proxy_servers import RedirectServer, echo_server

    with echo_server() as server, RedirectServer(lambda path: (302, [("Location", server.uri)])) as redirect:
        followed = run_connect(redirect.uri())
        assert followed.returncode == 0, followed.stderr
        assert "< through" in followed.stdout.splitlines()
        refused = run_connect(redirect.uri(), "--max-redirects", "0")
        assert refused.returncode == 1
        assert "302" in refused.stderr and "Traceback" not in refused.stderr



def test_connect_reconnect_after_a_lost_connection_sends_the_later_lines(controlled: ControlledServer) -> None:
    client = subprocess.Popen(wskit_command("connect", "--reconnect", controlled.url), cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert client.stdin is not None and client.stdout is not None

        def say(line: str) -> None:
            assert client.stdin is not None
            client.stdin.write(f"{line}\n")
            client.stdin.flush()

        def read() -> str:
            assert client.stdout is not None
            return client.stdout.readline().rstrip("\n")

        assert read() == f"Connected to {controlled.url}."
        say("before")
        assert read() == "< before"
        say("drop")  # the server aborts the TCP connection: no closing handshake
        assert read() == "Connection lost: 1006 (abnormal closure); reconnecting."
        assert read() == "Reconnected."
        say("after")
        assert read() == "< after"
        client.stdin.close()  # the end of the input still closes with 1000
        client.wait(timeout=20)
        out, err = client.stdout.read(), client.stderr.read() if client.stderr is not None else ""
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(timeout=10)
    assert client.returncode == 0, err
    assert [controlled.received.get(timeout=10) for _ in range(3)] == ["before", "drop", "after"]
    assert out.splitlines()[-1] == "Connection closed: 1000 (normal closure)."
    assert "Traceback" not in err


def test_connect_without_reconnect_a_lost_connection_still_ends_it(controlled: ControlledServer) -> None:
    result = talk(controlled.url, stdin="drop\nnever sent\n")
    assert result.returncode == 4, result.stderr
    assert "reconnecting" not in result.stdout and "Reconnected" not in result.stdout

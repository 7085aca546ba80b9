"""The command line's errors and corners: one line on standard error, the documented exit status.

Each command runs as a user runs it, ``python -m wskit ...`` in a subprocess.
"""

from __future__ import annotations

import errno
import io
import os
import pty
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_cli import ControlledServer, Terminal, controlled, screen

from wskit.cli import main
from wskit.cli._format import describe_close, describe_error
from wskit.exceptions import ConfigError

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["controlled"]  # the fixture of test_cli: a wskit asyncio server in a thread


def wskit(*args: str, stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run([sys.executable, "-m", "wskit", *args], input=stdin, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=environment)


@contextmanager
def serving(*args: str) -> Iterator[str]:
    """``wskit serve --port 0 ARGS`` in the background; yield its ws:// URL; stop it with SIGTERM."""
    proc = subprocess.Popen([sys.executable, "-m", "wskit", "serve", "--port", "0", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "ws://127.0.0.1:" in line, line + (proc.stderr.read() if proc.stderr else "")
        yield line.split("listening on ", 1)[1].split()[0]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "Traceback" not in err, err


@pytest.fixture
def bad_config(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("max_size: big\n")
    return path


@pytest.mark.parametrize(("args", "status", "message"), [
    (("connect", "--max-redirects", "-1", "ws://127.0.0.1:9/"), 1,
     "wskit connect: --max-redirects must be 0 or more, got -1"),
    (("connect", "--cafile", "/nonexistent/ca.pem", "wss://127.0.0.1:9/"), 1,
     "wskit connect: cannot load --cafile /nonexistent/ca.pem: No such file or directory"),
    (("connect", "--unix", "ws.sock", "--proxy", "http://127.0.0.1:9"), 1,
     "wskit connect: --proxy does not apply to a connection over --unix"),
    (("connect", "--config", "BAD", "ws://127.0.0.1:9/"), 1,
     "wskit connect: BAD:1: max_size: expected an integer >= 0 or null, got 'big'"),
    (("serve", "--unix", "ws.sock", "--port", "1"), 1,
     "wskit serve: give --unix PATH, or --host and --port, not both"),
    (("serve", "--workers", "many"), 2, "argument --workers: expected a number of processes >= 1, got 'many'"),
    (("serve", "--workers", "2", "--config", "BAD"), 1,
     "wskit serve: BAD:1: max_size: expected an integer >= 0 or null, got 'big'"),
    (("serve", "--workers", "2", "--unix", "ws.sock"), 2,
     "wskit serve: --workers shares a TCP port; it cannot serve a Unix socket"),
    (("diagram", "-o", "/nonexistent/states.md"), 1, "wskit diagram: [Errno 2] No such file or directory"),
])
def test_errors_are_one_line_with_their_status(args: tuple[str, ...], status: int, message: str,
                                               bad_config: Path) -> None:
    args = tuple(str(bad_config) if a == "BAD" else a for a in args)
    result = wskit(*args)
    assert result.returncode == status, result.stderr
    assert message.replace("BAD", str(bad_config)) in result.stderr
    assert "Traceback" not in result.stderr


def test_a_cafile_that_is_not_pem_is_named(tmp_path: Path) -> None:
    cafile = tmp_path / "ca.pem"
    cafile.write_text("not a certificate\n")
    result = wskit("connect", "--cafile", str(cafile), "wss://127.0.0.1:9/")
    assert result.returncode == 1
    assert result.stderr.startswith(f"wskit connect: cannot load --cafile {cafile}: ")


def test_workers_on_a_port_in_use_is_one_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        result = wskit("serve", "--workers", "2", "--port", port)
    assert result.returncode == 1
    assert result.stderr.startswith("wskit serve: ") and "Traceback" not in result.stderr


def test_demo_on_a_port_in_use_is_one_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = wskit("demo", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr == (f"wskit demo: cannot listen on 127.0.0.1:{port}: the address is already in use "
                             "(another server? --port 0 picks a free one)\n")


def test_connect_shows_the_subprotocol_chosen(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("subprotocols: [chat]\n")
    with serving("--config", str(config)) as url:
        result = wskit("connect", "--subprotocol", "chat", url, stdin="hi\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == [f"Connected to {url} (subprotocol chat).", "< hi"]


def test_reconnect_gives_up_at_once_on_a_refusal_that_will_not_pass(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("origins: ['https://only.example']\n")
    with serving("--config", str(config)) as url:
        result = wskit("connect", "--reconnect", url, stdin="hi\n")
    assert result.returncode == 1
    assert "refused the WebSocket upgrade: HTTP 403" in result.stderr and "retrying" not in result.stdout


def test_reconnect_retries_a_refused_connection_until_ctrl_c() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{probe.getsockname()[1]}/"
    client = subprocess.Popen([sys.executable, "-m", "wskit", "connect", "--reconnect", url], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None
        line = client.stdout.readline()
        assert line == f"cannot connect to {url}: connection refused (is the server running?); retrying.\n"
        client.send_signal(signal.SIGINT)
        _, err = client.communicate(timeout=20)
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate(timeout=10)
    assert client.returncode == 130, err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["serve", "connect"])
def test_closed_standard_output_ends_serve_and_connect_quietly(command: str) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    with serving() as url:
        args = ("serve", "--port", "0") if command == "serve" else ("connect", url)
        try:
            result = subprocess.run([sys.executable, "-m", "wskit", *args], cwd=ROOT, stdout=write_end,
                                    stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=30)
        finally:
            os.close(write_end)
    assert result.returncode == 141  # 128 + SIGPIPE
    assert result.stderr == ""


# -- in process: wskit.cli.main() called from Python, and the wording helpers --------------------------------


class BrokenStdout(io.StringIO):
    """A replaced standard output (no file descriptor) whose reader went away."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_main_with_a_replaced_stdout_whose_pipe_broke(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", BrokenStdout())
    assert main(["config", "docs"]) == 141


def test_describe_close_and_error_wording() -> None:
    assert describe_close(None, None) == "no close code"
    assert describe_close(3000, "") == "3000 (registered)"
    assert describe_error(TimeoutError(), "ws://h/") == "no answer from ws://h/ in time (timed out)"
    assert describe_error(ConfigError("f.yaml:1: bad"), "x") == "f.yaml:1: bad"
    assert describe_error(PermissionError(errno.EACCES, "Permission denied"), "unix:/s") == "unix:/s: Permission denied"
    assert describe_error(OSError("no errno")) == "no errno"
    assert describe_error(ValueError("odd"), "ws://h/") == "ws://h/: odd"


# -- wskit connect on a terminal of a Python without readline (or termios) ----------------------------------


class BareTerminal(Terminal):
    """``wskit connect URL`` on a pseudo-terminal, in a Python where ``readline`` and ``termios`` cannot be imported."""

    def __init__(self, url: str, home: Path) -> None:
        code = ("import sys; sys.modules['readline'] = None; sys.modules['termios'] = None; "
                "from wskit.cli import main; sys.exit(main(['connect', sys.argv[1]]))")
        env = {**os.environ, "TERM": "xterm", "HOME": str(home), "XDG_STATE_HOME": str(home / "state")}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.chdir(ROOT)
                os.execve(sys.executable, [sys.executable, "-c", code, url], env)
            finally:
                os._exit(127)
        self.output = b""


def test_interactive_without_readline_still_reads_lines_and_shows_messages(controlled: ControlledServer,
                                                                           tmp_path: Path) -> None:
    term = BareTerminal(controlled.url, tmp_path)
    try:
        term.read_until(b"Ctrl-D closes")
        term.read_until(b"> ")
        controlled.push("news")
        term.read_until(re.compile(rb"< news\r?\n.*> ", re.S))  # shown above a fresh prompt
        term.type("typed\r")
        assert controlled.received.get(timeout=60) == "typed"
        term.read_until(b"< typed")
        term.type("\x04")  # Ctrl-D on an empty line: close and exit
        assert term.wait() == 0
        assert "Connection closed: 1000 (normal closure)." in "\n".join(screen(term.output))
        assert not (tmp_path / "state" / "wskit" / "connect_history").exists()  # no readline: no history
    finally:
        term.kill()


def test_standard_input_that_is_not_utf8_is_reported_and_ends_the_session(controlled: ControlledServer) -> None:
    result = subprocess.run([sys.executable, "-m", "wskit", "connect", controlled.url], cwd=ROOT,
                            input=b"\xff\xfe not text\n", capture_output=True, timeout=30,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().startswith("wskit connect: cannot read standard input: 'utf-8' codec can't decode")
    assert result.stdout.decode().splitlines() == [f"Connected to {controlled.url}.",
                                                   "Connection closed: 1000 (normal closure)."]


# -- wskit connect --reconnect when reconnecting fails ----------------------------------------------------


def lines_of(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The lines ``proc`` prints, as they come (read by a thread: a test never blocks on a silent process)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return lines


def test_reconnect_ends_when_the_server_then_refuses() -> None:
    from wskit.sync import ServerConnection, serve

    opened = 0

    def refuse_after_the_first(ws: ServerConnection, request: object) -> object:
        nonlocal opened
        opened += 1
        return ws.respond(403, "no more\n") if opened > 1 else None

    def restart(ws: ServerConnection) -> None:
        ws.recv()
        ws.close(1012, "restarting")

    server = serve(restart, "127.0.0.1", 0, process_request=refuse_after_the_first)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
        client = subprocess.Popen([sys.executable, "-m", "wskit", "connect", "--reconnect", url], cwd=ROOT,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert client.stdin is not None
            client.stdin.write("hi\n")
            client.stdin.flush()
            client.wait(timeout=30)  # standard input stays open: the server's ending ends it
            out, err = client.communicate(timeout=10)
        finally:
            if client.poll() is None:
                client.kill()
                client.communicate(timeout=10)
    finally:
        server.shutdown()
        thread.join()
    assert client.returncode == 1, err
    assert "Connection closed: 1012 (service restart), reason 'restarting'; reconnecting." in out.splitlines()
    assert err == f"wskit connect: the server {url} refused the WebSocket upgrade: HTTP 403 Forbidden\n"


def test_ctrl_c_while_reconnecting_to_a_server_gone_ends_with_130() -> None:
    server = subprocess.Popen([sys.executable, "-m", "wskit", "serve", "--port", "0"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client: subprocess.Popen[str] | None = None
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split("listening on ", 1)[1].split()[0]
        client = subprocess.Popen([sys.executable, "-m", "wskit", "connect", "--reconnect", url], cwd=ROOT,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        shown = lines_of(client)
        assert shown.get(timeout=30) == f"Connected to {url}."
        server.terminate()  # closes with 1001, then nobody listens
        server.communicate(timeout=10)
        assert shown.get(timeout=30) == "Connection closed: 1001 (going away), reason 'server shutting down'; " \
                                        "reconnecting."
        assert shown.get(timeout=30).endswith("connection refused (is the server running?); retrying.")
        client.send_signal(signal.SIGINT)
        client.wait(timeout=30)
        assert client.returncode == 130
        assert shown.get(timeout=10).startswith("Connection closed: 1001 (going away)")
    finally:
        for proc in (server, client):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)

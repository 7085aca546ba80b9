"""The code of README.md and of every docs/ page runs and does what the text says.

Every ```python block of docs/*.md runs as a test (``test_every_docs_snippet_runs``). The line
right above a block may say how, in an HTML comment (invisible on the rendered page):

* no comment: the block runs on its own, from the examples/ folder (whose server.yaml and
  client.yaml a snippet may load);
* ``<!-- test: continues (...) -->``: it runs after the block before it, with its names;
* ``<!-- test: client (...) -->``: a client of 127.0.0.1:8765, run as a program against an echo
  server on a free port; it must end by itself, with status 0;
* ``<!-- test: server (...) -->``: a server on 127.0.0.1:8765, run as a program on a free port;
  it must echo a message, then end quietly (status 0, no traceback) on Ctrl-C;
* ``<!-- test: by TEST (...) -->``: a fragment that a dedicated test (``test_...`` of this file,
  or ``tests/FILE.py::test_...``) runs with what it needs (a socket, a peer...);
* ``<!-- test: skip (REASON) -->``: the opt-out, for the few that cannot run here (a real
  external host, your certificate files); the reason is required.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from wskit import ClientProtocol, Close, State, TextMessage

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def test_readme_sansio_example_prints_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    block = next(b for b in python_blocks(ROOT / "README.md") if "ServerProtocol()" in b)
    exec(compile(block, "README.md", "exec"), {})
    assert capsys.readouterr().out == "server got Hello, WebSocket!\n"


def test_sansio_bare_protocol_example(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = python_blocks(ROOT / "docs" / "sansio.md")
    block = next(b for b in blocks if "Protocol(Side.CLIENT)" in b and "print(" in b)
    exec(compile(block, "docs/sansio.md", "exec"), {})
    assert capsys.readouterr().out == "[BinaryMessage(data=b'\\x00\\x01')]\n"


def test_sansio_server_loop_serves_a_real_client() -> None:
    block = next(b for b in python_blocks(ROOT / "docs" / "sansio.md") if "def handle(" in b)
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/sansio.md", "exec"), namespace)
    server_sock, client_sock = socket.socketpair()
    thread = threading.Thread(target=namespace["handle"], args=(server_sock,))
    thread.start()
    try:
        client = ClientProtocol("ws://localhost/")
        client_sock.sendall(b"".join(client.connect()))
        events: list[Any] = []
        while not events:
            events = client.receive_data(client_sock.recv(65536))
        client_sock.sendall(b"".join(client.send_text("hello") + client.send_close(1000, "bye")))
        while client.state is not State.CLOSED:
            data = client_sock.recv(65536)
            if not data:
                break
            events += client.receive_data(data)
        assert TextMessage("hello") in events
        assert Close(1000, "bye") in events
        assert client.state is State.CLOSED and client.close_code == 1000
    finally:
        client_sock.close()
        thread.join(5)
    assert not thread.is_alive()


def test_handshake_page_client_and_server_blocks_talk_to_each_other() -> None:
    blocks = python_blocks(ROOT / "docs" / "handshake.md")
    client_block = next(b for b in blocks if "Driving" not in b and "client.connect()" in b)
    server_block = next(b for b in blocks if "server.accept(request)" in b)
    server_sock, client_sock = socket.socketpair()
    server_ns: dict[str, Any] = {"sock": server_sock}
    client_ns: dict[str, Any] = {"sock": client_sock}
    thread = threading.Thread(target=exec, args=(compile(server_block, "handshake.md", "exec"), server_ns))
    thread.start()
    try:
        exec(compile(client_block, "handshake.md", "exec"), client_ns)
        thread.join(5)
    finally:
        server_sock.close()
        client_sock.close()
    assert client_ns["client"].state is State.OPEN
    assert client_ns["client"].subprotocol == "chat"
    assert server_ns["server"].state is State.OPEN


def test_handshake_page_reject_and_failed_response_blocks() -> None:
    from wskit import ServerProtocol

    blocks = python_blocks(ROOT / "docs" / "handshake.md")
    reject_block = next(b for b in blocks if "server.reject(401" in b)
    failed_block = next(b for b in blocks if "except InvalidHandshake as exc:\n    response" in b)
    client = ClientProtocol("ws://example.com/chat")
    server = ServerProtocol()
    events = server.receive_data(b"".join(client.connect()))
    server_sock, client_sock = socket.socketpair()
    try:
        ns: dict[str, Any] = {"events": events, "server": server, "sock": server_sock, "expected": "Basic x"}
        exec(compile(reject_block, "handshake.md", "exec"), ns)
        assert server.state is State.CLOSED
        data = client_sock.recv(65536)
    finally:
        server_sock.close()
        client_sock.close()
    ns = {"client": client, "data": data, "InvalidHandshake": __import__("wskit").InvalidHandshake}
    exec(compile(failed_block, "handshake.md", "exec"), ns)
    assert ns["challenge"] == 'Basic realm="ws"'


def test_readme_asyncio_example_echoes(capsys: pytest.CaptureFixture[str]) -> None:
    block = next(b for b in python_blocks(ROOT / "README.md") if "wskit.asyncio" in b)
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    exec(compile(block.replace("8765", str(free)), "README.md", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out == "hello\n"


def test_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in readme, f"README.md's documentation table does not link docs/{page.name}"


def test_architecture_layer_table_is_the_one_the_layering_test_checks() -> None:
    from test_layering import LAYERS

    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text.split("| layer | modules |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    documented = [(row.split("|")[1].strip(), re.findall(r"`([^`]+)`", row.split("|")[2]))
                  for row in table.splitlines()]
    checked = [(name, list(modules)) for name, modules in reversed(LAYERS)]
    assert documented == checked


def test_architecture_config_example_runs() -> None:
    (block,) = python_blocks(ROOT / "docs" / "architecture.md")
    exec(compile(textwrap.dedent(block), "docs/architecture.md", "exec"), {})


# -- every ```python block of every docs/ page ---------------------------------------------------------


class Snippet(NamedTuple):
    page: str
    line: int
    mode: str  # "", "continues", "client", "server", "by", "skip"
    argument: str  # the test of "by", the reason of "skip"
    code: str

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


_BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)
_MARKER = re.compile(r"<!-- test: (continues|client|server|by|skip)\b ?([^(]*?)\s*(?:\((.+)\))?\s*-->$")


def docs_snippets() -> list[Snippet]:
    found = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
            line = text[:match.start()].count("\n") + 1
            mode = argument = ""
            if before.startswith("<!-- test:"):
                marker = _MARKER.match(before)
                assert marker, f"docs/{page.name}:{line - 1}: unknown test marker {before!r}"
                mode, argument = marker.group(1), marker.group(2) or marker.group(3) or ""
                if mode == "skip":
                    assert marker.group(3), f"docs/{page.name}:{line - 1}: a skipped block needs a (reason)"
            found.append(Snippet(page.name, line, mode, argument.strip(), textwrap.dedent(match.group(2))))
    return found


SNIPPETS = docs_snippets()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_program(code: str, *, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.name for s in SNIPPETS])
def test_every_docs_snippet_runs(snippet: Snippet, monkeypatch: pytest.MonkeyPatch) -> None:
    where = f"docs/{snippet.name}"
    if snippet.mode == "skip":
        pytest.skip(f"{where}: {snippet.argument}")
    if snippet.mode == "by":
        module, _, test = snippet.argument.rpartition("::")
        source = (ROOT / module).read_text(encoding="utf-8") if module else Path(__file__).read_text(encoding="utf-8")
        assert re.search(rf"^def {re.escape(test)}\(", source, re.M), f"{where}: no test {snippet.argument}"
        return
    if snippet.mode == "client":
        run_client_snippet(snippet)
        return
    if snippet.mode == "server":
        run_server_snippet(snippet)
        return
    monkeypatch.chdir(ROOT / "examples")
    namespace: dict[str, Any] = {"__name__": "docs_snippet"}
    if snippet.mode == "continues":
        previous = SNIPPETS[SNIPPETS.index(snippet) - 1]
        assert previous.page == snippet.page, f"{where}: continues no block of its page"
        exec(compile(previous.code, f"docs/{previous.name}", "exec"), namespace)
    exec(compile(snippet.code, where, "exec"), namespace)


def run_client_snippet(snippet: Snippet) -> None:
    assert "8765" in snippet.code, f"docs/{snippet.name}: a client snippet connects to 127.0.0.1:8765"
    server = subprocess.Popen([sys.executable, "-m", "wskit", "serve", "--port", "0"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = re.search(r"127\.0\.0\.1:(\d+)", server.stdout.readline())
        assert port, "the echo server did not start"
        result = run_program(snippet.code.replace("8765", port.group(1)))
        assert result.returncode == 0, f"docs/{snippet.name} failed:\n{result.stderr}"
        assert "hello" in result.stdout.splitlines()
    finally:
        server.terminate()
        server.communicate(timeout=10)


def run_server_snippet(snippet: Snippet) -> None:
    from wskit.sync import connect as sync_connect

    assert "8765" in snippet.code, f"docs/{snippet.name}: a server snippet listens on 127.0.0.1:8765"
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", snippet.code.replace("8765", str(port))], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:  # wait until it listens: it prints nothing
            assert server.poll() is None, f"docs/{snippet.name} ended early:\n{server.communicate()[1]}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, f"docs/{snippet.name} never listened on its port"
                time.sleep(0.05)  # poll until the port accepts
        with sync_connect(f"ws://127.0.0.1:{port}/") as ws:
            ws.send("are you there?")
            assert ws.recv(timeout=10) == "are you there?"
        server.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = server.communicate(timeout=20)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate(timeout=10)
    assert server.returncode == 0, f"docs/{snippet.name} after Ctrl-C:\n{err}"
    assert "Traceback" not in err, err


def test_docs_snippet_markers_are_few_and_explained() -> None:
    skipped = [s for s in SNIPPETS if s.mode == "skip"]
    assert len(skipped) <= 3, f"too many snippets opt out of running: {[s.name for s in skipped]}"
    assert len(SNIPPETS) >= 20

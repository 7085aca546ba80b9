"""The code in README.md and docs/sansio.md runs and does what the text says."""

from __future__ import annotations

import re
import socket
import textwrap
import threading
from pathlib import Path
from typing import Any

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
    block = next(b for b in python_blocks(ROOT / "docs" / "sansio.md") if "Protocol(Side.CLIENT)" in b)
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

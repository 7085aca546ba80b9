"""The code in README.md and docs/sansio.md runs and does what the text says."""

from __future__ import annotations

import re
import socket
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

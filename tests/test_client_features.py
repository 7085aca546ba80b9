"""Client names python-websockets users type, Basic credentials, recv(decode=...), INFO logs, and the
runnable examples of docs/client.md and docs/migration.md."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wskit.asyncio as wa
import wskit.exceptions
import wskit.sync as ws_sync

from proxy_servers import echo_server

LAYERS = ["asyncio", "sync"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def server() -> Iterator[Any]:
    with echo_server() as running:
        yield running


def session(layer: str, uri: str, send: Any, **options: Any) -> list[Any]:
    """Connect, send ``send``, receive it with recv(decode=None/True/False) each; return the three results."""
    if layer == "sync":
        with ws_sync.connect(uri, **options) as ws:
            out = []
            for decode in (None, True, False):
                ws.send(send)
                out.append(ws.recv(timeout=5, decode=decode))
            return out

    async def main() -> list[Any]:
        async with wa.connect(uri, **options) as ws:
            out = []
            for decode in (None, True, False):
                await ws.send(send)
                out.append(await ws.recv(timeout=5, decode=decode))
            return out

    return asyncio.run(main())


@pytest.mark.parametrize("layer", LAYERS)
def test_recv_decode(layer: str, server: Any) -> None:
    assert session(layer, server.uri, "été") == ["été", "été", "été".encode()]
    assert session(layer, server.uri, "été".encode()) == ["été".encode(), "été", "été".encode()]


@pytest.mark.parametrize("layer", LAYERS)
def test_recv_decode_true_on_invalid_utf8_says_so(layer: str, server: Any) -> None:
    with pytest.raises(UnicodeDecodeError):
        session(layer, server.uri, b"\xff")


@pytest.mark.parametrize("layer", LAYERS)
def test_basic_credentials_from_the_uri_or_auth(layer: str, server: Any) -> None:
    session(layer, server.uri.replace("ws://", "ws://alice:open%20sesame@"), "x")
    session(layer, server.uri, "x", auth=("bob", "pw"))
    session(layer, server.uri.replace("ws://", "ws://alice:old@"), "x", auth=("bob", "pw"))  # auth= wins
    values = [r.headers.get("Authorization") for r in server.requests]
    assert values == ["Basic YWxpY2U6b3BlbiBzZXNhbWU=", "Basic Ym9iOnB3", "Basic Ym9iOnB3"]


@pytest.mark.parametrize("layer", LAYERS)
def test_additional_headers_is_extra_headers(layer: str, server: Any) -> None:
    session(layer, server.uri, "x", additional_headers={"X-Token": "t1"})
    assert server.requests[0].headers.get("X-Token") == "t1"
    connect: Any = ws_sync.connect if layer == "sync" else wa.connect
    with pytest.raises(TypeError, match="both extra_headers and additional_headers"):
        connect(server.uri, extra_headers={"A": "1"}, additional_headers={"B": "2"})


@pytest.mark.parametrize("layer", LAYERS)
def test_open_and_close_logged_at_info(layer: str, server: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        session(layer, server.uri, "x", logger="client.test")
    lines = [r.getMessage() for r in caplog.records if r.name == "client.test" and r.levelno == logging.INFO]
    assert len(lines) == 2
    assert lines[0].endswith("connection open") and lines[1].endswith("connection closed (code 1000)")


def test_connection_closed_names() -> None:
    for module in (wskit.exceptions, wa, ws_sync):
        assert module.ConnectionClosed is wskit.exceptions.WebSocketClosed
        assert issubclass(module.ConnectionClosedOK, module.ConnectionClosed)
        assert issubclass(module.ConnectionClosedError, module.ConnectionClosed)


# -- the documentation's examples run -----------------------------------------------------


def python_blocks(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / name).read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("index", range(len(python_blocks("client.md"))))
def test_client_page_examples_run(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    block = python_blocks("client.md")[index]
    namespace: dict[str, Any] = {}
    exec(compile(block, f"docs/client.md block {index}", "exec"), namespace)
    expected = re.findall(r"# prints: (.*)", block)
    assert capsys.readouterr().out.splitlines() == expected


@pytest.mark.parametrize("index", range(len(python_blocks("migration.md"))))
def test_migration_page_examples_run(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    block = python_blocks("migration.md")[index]
    exec(compile(block, f"docs/migration.md block {index}", "exec"), {})
    expected = re.findall(r"# prints: (.*)", block)
    assert capsys.readouterr().out.splitlines() == expected


def test_sync_page_example_of_what_connect_returns(capsys: pytest.CaptureFixture[str]) -> None:
    block = next(block for block in python_blocks("sync.md") if "connect(uri).open()" in block)
    exec(compile(block, "docs/sync.md: what connect() returns", "exec"), {})
    assert capsys.readouterr().out.splitlines() == re.findall(r"# prints: (.*)", block) == ["welcome", "refused"]

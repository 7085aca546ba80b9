"""Starlette and FastAPI applications on uvicorn + wskit (tests/asgi_apps/frameworks.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
pytest.importorskip("fastapi")

from wskit.asyncio import connect
from wskit.exceptions import ConnectionClosedError, InvalidHandshake

from asgi_apps.server import Uvicorn


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture(scope="module", params=["starlette_app", "fastapi_app"])
def server(request: pytest.FixtureRequest) -> Iterator[Uvicorn]:
    with Uvicorn(f"asgi_apps.frameworks:{request.param}") as srv:
        yield srv


def test_route_accept_receive_text_send_json_and_close(server: Uvicorn) -> None:
    async def main() -> None:
        async with connect(server.url("/chat"), subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            for n, text in enumerate(["one", "twö"], 1):
                await ws.send(text)
                assert json.loads(await ws.recv()) == {"echo": text, "n": n, "path": "/chat"}
            await ws.send("close")
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv()
            assert (caught.value.code, caught.value.reason) == (4001, "asked to")

    run(main())


def test_unknown_route_is_refused(server: Uvicorn) -> None:
    async def main() -> None:
        with pytest.raises(InvalidHandshake) as caught:
            await connect(server.url("/nowhere"))
        assert caught.value.response.status_code == 403  # Starlette closes before accept

    run(main())


def test_denial_response(server: Uvicorn) -> None:
    async def main() -> None:
        with pytest.raises(InvalidHandshake) as caught:
            await connect(server.url("/private"))
        response = caught.value.response
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Token"
        assert response.body == b"who are you?"

    run(main())


def test_exception_before_accept_is_500(server: Uvicorn) -> None:
    async def main() -> None:
        with pytest.raises(InvalidHandshake) as caught:
            await connect(server.url("/fail-before"))
        assert caught.value.response.status_code == 500

    run(main())
    server.wait_for("ValueError: broken before accept")


def test_exception_after_accept_is_1011(server: Uvicorn) -> None:
    async def main() -> None:
        async with connect(server.url("/fail-after")) as ws:
            await ws.send("go")
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.recv()
            assert caught.value.code == 1011

    run(main())
    server.wait_for("ValueError: broken after accept")


def test_fastapi_path_and_query_parameters() -> None:
    async def main(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/items/42?q=hi") as ws:
            assert json.loads(await ws.recv()) == {"item_id": 42, "q": "hi"}

    with Uvicorn("asgi_apps.frameworks:fastapi_app") as srv:
        run(main(srv.port))


def _doc_block(heading: str) -> str:
    """The first python block under ``## heading`` in docs/asgi.md."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "asgi.md").read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_docs_fastapi_example_runs(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(_doc_block("FastAPI"))

    async def main(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/chat", subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            await ws.send("hi")
            assert json.loads(await ws.recv()) == {"echo": "hi"}
            await ws.close(4002)

    with Uvicorn("main:app", "--app-dir", str(tmp_path)) as srv:
        run(main(srv.port))
        srv.wait_for("client left with code 4002")


def test_docs_starlette_example_runs(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(_doc_block("Starlette"))

    async def main(port: int) -> None:
        with pytest.raises(InvalidHandshake) as caught:
            await connect(f"ws://127.0.0.1:{port}/echo")
        assert caught.value.response.status_code == 401
        async with connect(f"ws://127.0.0.1:{port}/echo", extra_headers=[("Authorization", "Token secret")]) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"

    with Uvicorn("main:app", "--app-dir", str(tmp_path)) as srv:
        run(main(srv.port))

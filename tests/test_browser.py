"""A real browser talks to wskit: headless Chromium loads tests/browser/exchange.html.

The page opens a WebSocket to the server that served it, exchanges a text, a
binary and a large compressed message, closes, and writes the outcome into
its DOM. The test drives Chromium through its DevTools protocol (over a
WebSocket, with wskit's own client) and reads that result back from the DOM.
Two servers: ``wskit.asyncio.serve`` and uvicorn + ``wskit.asgi``.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it where apt
works) or the binary named by ``WSKIT_CHROMIUM``; without it the tests skip
and say why.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from wskit import Request, Response
from wskit.asyncio import connect, serve
from wskit.headers import Headers

HERE = Path(__file__).resolve().parent
PAGE = (HERE / "browser" / "exchange.html").read_bytes()
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    named = os.environ.get("WSKIT_CHROMIUM")
    if named:
        return shutil.which(named) or (named if os.access(named, os.X_OK) else None)
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def chromium() -> Iterator[str]:
    path = find_chromium()
    if path is None:
        pytest.skip("headless Chromium not found: install Debian's chromium package (apt-get install chromium), "
                    "or set WSKIT_CHROMIUM to a Chromium or Chrome binary")
    yield path


@asynccontextmanager
async def browser(binary: str, *flags: str) -> AsyncIterator[str]:
    """Start headless Chromium (with extra command-line ``flags``); yield its DevTools browser URL
    (ws://127.0.0.1:PORT/devtools/browser/ID).

    Stopped by its PID at the end.
    """
    with tempfile.TemporaryDirectory(prefix="wskit-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--no-proxy-server", "--disable-dev-shm-usage", "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", *flags, "about:blank",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert proc.stderr is not None
        seen: list[str] = []
        try:
            while True:
                line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode(errors="replace")
                if not line:
                    raise AssertionError("Chromium exited before listening for DevTools:\n" + "".join(seen))
                seen.append(line)
                match = re.search(r"DevTools listening on (ws://\S+)", line)
                if match:
                    break
            drain = asyncio.ensure_future(proc.stderr.read())  # keep its pipe from filling up
            yield match.group(1)
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except asyncio.TimeoutError:  # asyncio.wait_for's (TimeoutError from Python 3.11)
                    proc.kill()
                    await proc.wait()
            if "drain" in locals():
                await drain


class DevTools:
    """A DevTools protocol session over a WebSocket (commands and their answers)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.last = 0

    async def call(self, method: str, **params: Any) -> Any:
        self.last += 1
        await self.ws.send(json.dumps({"id": self.last, "method": method, "params": params}))
        while True:
            answer = json.loads(await self.ws.recv())
            if answer.get("id") == self.last:
                if "error" in answer:
                    raise AssertionError(f"DevTools {method}: {answer['error']}")
                return answer["result"]


async def run_page(binary: str, url: str, *flags: str) -> tuple[Any, Any]:
    """Open ``url`` in a new tab of a Chromium started with ``flags``; return the page's result (its
    promise) and the JSON in its #result."""
    async with browser(binary, *flags) as browser_url:
        async with connect(browser_url, max_size=None) as ws:
            target = await DevTools(ws).call("Target.createTarget", url="about:blank")
        page_url = browser_url.split("/devtools/")[0] + f"/devtools/page/{target['targetId']}"
        async with connect(page_url, max_size=None) as ws:
            page = DevTools(ws)
            await page.call("Page.navigate", url=url)
            # The page sets window.exchange when its script runs: wait for it, then for the exchange.
            waited = await page.call(
                "Runtime.evaluate", awaitPromise=True, returnByValue=True,
                expression="new Promise(done => { const look = () => window.exchange ? "
                           "window.exchange.then(done) : setTimeout(look, 20); look(); })")
            dom = await page.call("Runtime.evaluate", returnByValue=True,
                                  expression="document.getElementById('result').textContent")
    return waited["result"]["value"], json.loads(dom["result"]["value"])


def check(result: Any, dom: Any) -> None:
    assert dom == result  # written into the page
    assert "error" not in result, result
    assert result["text"] is True
    assert result["binary"] is True
    assert result["big"] is True
    assert result["protocol"] == "chat"
    assert result["extensions"].startswith("permessage-deflate")  # the big message went compressed
    assert (result["closeCode"], result["closeReason"], result["wasClean"]) == (1000, "done", True)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_chromium_with_wskit_asyncio_serve(chromium: str) -> None:
    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    def page(connection: Any, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        body = PAGE if request.path == "/" else b"not found"
        headers = Headers([("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
        return Response(200 if request.path == "/" else 404, "", headers, body)

    async def main() -> tuple[Any, Any]:
        async with serve(echo, "127.0.0.1", 0, process_request=page, subprotocols=["chat"], max_size=None) as srv:
            port = srv.sockets[0].getsockname()[1]
            return await run_page(chromium, f"http://127.0.0.1:{port}/")

    check(*run(main()))


def test_chromium_with_uvicorn_and_wskit_asgi(chromium: str) -> None:
    pytest.importorskip("uvicorn")
    from asgi_apps.server import Uvicorn

    with Uvicorn("asgi_apps.browser:app") as srv:
        result, dom = run(run_page(chromium, f"http://127.0.0.1:{srv.port}/"))
        srv.wait_for(r'"WebSocket /ws" \[accepted\]')
    check(result, dom)

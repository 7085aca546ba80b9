"""Tests for the ``wskit serve``, ``wskit connect`` and ``wskit demo`` commands (real subprocesses)."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wskit.asyncio import connect

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

"""Tests for the ``wskit serve``, ``wskit connect`` and ``wskit demo`` commands (real subprocesses)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from wskit.asyncio import connect
from wskit.defaults import VERSION

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


@pytest.mark.parametrize("command", [("config", "docs"), ("demo",), ("plugins",)])
def test_closed_standard_output_ends_quietly(command: tuple[str, ...]) -> None:
    # As in `wskit config docs | head -1` once head has gone: the reader closed the pipe first.
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

"""Run uvicorn + wskit in a child process on 127.0.0.1 for a test, stop it by PID."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
WS = "wskit.asgi:UvicornProtocol"


class Uvicorn:
    """``python -m uvicorn APP --ws ... --port 0 ARGS`` in a child process.

    The port is the one uvicorn reports in its "running on" line (none
    when ARGS has ``--uds PATH``: it listens on that Unix socket); the
    output is collected in :attr:`lines` (a thread reads it).
    """

    def __init__(self, app: str, *args: str, ws: str = WS, env: dict[str, str] | None = None) -> None:
        cmd = [sys.executable, "-m", "uvicorn", app, "--app-dir", str(TESTS), "--host", "127.0.0.1", "--port", "0",
               "--ws", ws, "--lifespan", "off", *args]
        child_env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), **(env or {}))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=child_env)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        running = r"Uvicorn running on (unix socket \S+|\S+:(\d+))"
        match = re.search(running, self.wait_for(running, timeout=30))
        assert match is not None
        self._port = None if match.group(2) is None else int(match.group(2))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        """Everything uvicorn (and the application) printed so far."""
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 10.0, count: int = 1) -> str:
        """Wait until ``count`` output lines match ``pattern``; return the last one."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if len(found) >= count:
                    return found[count - 1]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"uvicorn printed no line matching {pattern!r} (x{count}); "
                                         f"its output:\n" + "\n".join(self.lines))
                self._changed.wait(left)

    @property
    def port(self) -> int:
        """The TCP port uvicorn listens on."""
        assert self._port is not None, "uvicorn listens on a Unix socket (--uds)"
        return self._port

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> int:
        """Send ``sig`` to the child (by PID) and wait for it to exit; return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"uvicorn did not exit within {timeout} s of {sig!r}:\n{self.output}") from None
        self._reader.join(5)
        return self.proc.returncode

    def __enter__(self) -> Uvicorn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

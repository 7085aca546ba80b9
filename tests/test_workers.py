"""Workers sharing a port (wskit.workers, ``wskit serve --workers N``, ``serve(..., reuse_port=True)``).

The supervisors run in their own process (started here, stopped by PID) so
that their signals and forks touch nothing of the test process.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from wskit.asyncio import serve as aserve
from wskit.exceptions import WebSocketClosed
from wskit.sync import connect
from wskit.sync import serve as sserve
from wskit.workers import WorkerError, check_reuse_port, reserve_port, run_workers, serve_workers

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 30.0

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT on this platform")

# A worker that says which process serves each connection.
PID_APP = textwrap.dedent('''
    import logging, os, sys
    from wskit.workers import serve_workers

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")

    async def whoami(ws):
        await ws.send(str(os.getpid()))
        await ws.wait_closed()

    if __name__ == "__main__":
        serve_workers(whoami, "127.0.0.1", 0, workers=int(sys.argv[1]),
                      on_start=lambda port, pids: print("READY", port, *pids, flush=True))
        print("SUPERVISOR DONE", flush=True)
''')


class Lines:
    """The output of a child process, read by a thread, waited for line by line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = DEADLINE) -> re.Match[str]:
        """The first line not seen yet that matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} within {timeout} s; got {self.seen}") from None
            if line is None:
                raise AssertionError(f"the process ended without a line matching {pattern!r}; got {self.seen}")
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match


@contextmanager
def supervisor(args: list[str], pids_from: str | None = None) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    """Start a supervisor process; at the end, stop it and any worker it left (by PID)."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = Lines(proc)
    try:
        yield proc, lines
    finally:
        workers = {int(pid) for line in lines.seen for pid in re.findall(r"started \(pid (\d+)\)", line)}
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in workers:  # none should be left; never leave one serving
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def whoami(port: int) -> tuple[object, str]:
    ws = connect(f"ws://127.0.0.1:{port}/", open_timeout=DEADLINE)
    return ws, str(ws.recv(timeout=DEADLINE))


def connect_until(port: int, wanted: set[str], limit: int = 400) -> list[tuple[object, str]]:
    """Open connections until every process in ``wanted`` served one (the kernel picks by hash)."""
    opened = []
    seen: set[str] = set()
    for _ in range(limit):
        ws, pid = whoami(port)
        opened.append((ws, pid))
        seen.add(pid)
        if wanted <= seen:
            return opened
    raise AssertionError(f"{limit} connections reached {seen}, not all of {wanted}")


def closed_code(ws: object) -> int | None:
    try:
        ws.recv(timeout=DEADLINE)  # type: ignore[attr-defined]
    except WebSocketClosed:
        pass
    return ws.close_code  # type: ignore[attr-defined, no-any-return]


def test_cli_workers_echo_and_stop_together_with_1001_on_sigterm() -> None:
    command = [sys.executable, "-m", "wskit", "serve", "--workers", "2", "--port", "0"]
    with supervisor(command) as (proc, lines):
        match = lines.wait_for(r"listening on ws://127\.0\.0\.1:(\d+)/ with 2 workers \(pids (\d+) (\d+);")
        port, pids = int(match.group(1)), {int(match.group(2)), int(match.group(3))}
        clients = []
        for i in range(8):
            ws = connect(f"ws://127.0.0.1:{port}/", open_timeout=DEADLINE)
            ws.send(f"hello {i}")
            assert ws.recv(timeout=DEADLINE) == f"hello {i}"
            clients.append(ws)
        proc.send_signal(signal.SIGTERM)
        assert [closed_code(ws) for ws in clients] == [1001] * 8
        assert proc.wait(DEADLINE) == 0
        lines.wait_for(r"^wskit: server stopped$")
        for pid in pids:  # the workers are gone too
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


def test_cli_workers_rejects_zero() -> None:
    result = subprocess.run([sys.executable, "-m", "wskit", "serve", "--workers", "0"], cwd=ROOT,
                            capture_output=True, text=True, timeout=DEADLINE)
    assert result.returncode == 2
    assert "expected a number of processes >= 1, got '0'" in result.stderr


def test_a_killed_worker_is_restarted_and_serves_and_sigint_stops_all(tmp_path: Path) -> None:
    app = tmp_path / "pid_app.py"
    app.write_text(PID_APP)
    with supervisor([sys.executable, "-u", str(app), "2"]) as (proc, lines):
        match = lines.wait_for(r"^READY (\d+) (\d+) (\d+)$")
        port, first, second = match.group(1, 2, 3)
        opened = connect_until(int(port), {first, second})
        os.kill(int(first), signal.SIGKILL)
        lines.wait_for(rf"worker 1 \(pid {first}\) died \(killed by signal 9\).*restarting it")
        new = lines.wait_for(r"worker 1 ready \(pid (\d+)\)").group(1)
        assert new not in (first, second)
        after = connect_until(int(port), {new, second})
        assert first not in {pid for _, pid in after}
        proc.send_signal(signal.SIGINT)
        codes = {closed_code(ws) for ws, _ in after}
        assert codes == {1001}
        # The connections of the killed worker ended without a closing handshake.
        assert {closed_code(ws) for ws, pid in opened if pid == first} == {1006}
        assert proc.wait(DEADLINE) == 0
        lines.wait_for("SUPERVISOR DONE")


def test_a_worker_that_keeps_failing_at_start_stops_everything(tmp_path: Path) -> None:
    app = tmp_path / "failing.py"
    app.write_text(textwrap.dedent('''
        from wskit.workers import WorkerError, run_workers

        async def broken():
            raise RuntimeError("cannot start")

        if __name__ == "__main__":
            try:
                run_workers(broken, 1)
            except WorkerError as exc:
                print("ERROR", exc, flush=True)
    '''))
    with supervisor([sys.executable, "-u", str(app)]) as (proc, lines):
        match = lines.wait_for(r"^ERROR (.*)")
        assert "worker 1 exited 5 times in a row within 1 s of its start (last: exit code 1)" in match.group(1)
        assert proc.wait(DEADLINE) == 0
    assert any("RuntimeError: cannot start" in line for line in lines.seen)


def test_a_worker_stops_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    app = tmp_path / "pid_app.py"
    app.write_text(PID_APP)
    with supervisor([sys.executable, "-u", str(app), "1"]) as (proc, lines):
        port, worker = lines.wait_for(r"^READY (\d+) (\d+)$").group(1, 2)
        ws, pid = whoami(int(port))
        assert pid == worker
        proc.kill()
        assert closed_code(ws) == 1001


def test_the_port_taken_by_a_program_that_does_not_share_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(WorkerError, match=rf"port {port} on 127.0.0.1 is taken by a program that does not share"):
            serve_workers(lambda ws: None, "127.0.0.1", port, workers=2)  # type: ignore[arg-type, return-value]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="workers must be an int >= 1, got 0"):
        run_workers(asyncio.sleep, 0)
    with pytest.raises(TypeError, match="reuse_port= is not accepted"):
        serve_workers(lambda ws: None, "127.0.0.1", 0, workers=1, reuse_port=False)  # type: ignore[arg-type, return-value]


def test_the_supervisor_runs_in_the_main_thread_only() -> None:
    errors: list[BaseException] = []

    def supervise() -> None:
        try:
            run_workers(asyncio.sleep, 1, args=(0,))
        except WorkerError as exc:
            errors.append(exc)

    thread = threading.Thread(target=supervise)
    thread.start()
    thread.join(DEADLINE)
    assert [str(e) for e in errors] == [
        "the workers' supervisor must run in the main thread: it handles SIGINT and SIGTERM"]


def test_without_so_reuseport_the_error_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(socket, "SO_REUSEPORT")
    with pytest.raises(WorkerError, match=r"SO_REUSEPORT, which this platform \(\w+\) does not have"):
        check_reuse_port()
    with pytest.raises(WorkerError, match="SO_REUSEPORT"):
        reserve_port("127.0.0.1", 0)
    with pytest.raises(ValueError, match=r"reuse_port=True needs SO_REUSEPORT"):
        sserve(lambda ws: None, "127.0.0.1", 0, reuse_port=True)
    with pytest.raises(ValueError, match=r"reuse_port=True needs SO_REUSEPORT"):
        aserve(lambda ws: None, "127.0.0.1", 0, reuse_port=True)  # type: ignore[arg-type, return-value]


def test_serve_reuse_port_lets_two_servers_share_a_port_in_both_layers() -> None:
    async def hello(ws: object) -> None:
        await ws.send("asyncio")  # type: ignore[attr-defined]

    def hello_sync(ws: object) -> None:
        ws.send("sync")  # type: ignore[attr-defined]

    async def main() -> set[str]:
        async with aserve(hello, "127.0.0.1", 0, reuse_port=True) as first:
            port = first.sockets[0].getsockname()[1]
            second = sserve(hello_sync, "127.0.0.1", port, reuse_port=True)
            thread = threading.Thread(target=second.serve_forever)
            thread.start()
            try:
                seen: set[str] = set()
                for _ in range(300):
                    ws = await asyncio.to_thread(connect, f"ws://127.0.0.1:{port}/", open_timeout=DEADLINE)
                    seen.add(str(await asyncio.to_thread(ws.recv, DEADLINE)))
                    await asyncio.to_thread(ws.close)
                    if len(seen) == 2:
                        break
                return seen
            finally:
                second.shutdown()
                thread.join()

    assert asyncio.run(main()) == {"asyncio", "sync"}

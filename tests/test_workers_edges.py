"""Workers at their edges: a worker stuck past stop_timeout is killed, on_start without
wait_ready, bad arguments. The supervisor runs in its own process, stopped by PID."""

from __future__ import annotations

import signal
import socket
import sys
import textwrap
from pathlib import Path

import pytest
from test_workers import supervisor

from wskit.workers import WorkerError, reserve_port, run_workers

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT on this platform")

# A worker whose target cannot stop: cancelled, it still waits for a thread that never ends.
STUCK_APP = textwrap.dedent('''
    import asyncio, logging, os, sys, threading
    from wskit.workers import run_workers
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")

    async def stuck():
        os.write(1, b"STUCK\\n")  # one write: a whole line, even with the supervisor writing too
        await asyncio.to_thread(threading.Event().wait)

    if __name__ == "__main__":
        run_workers(stuck, 1, stop_timeout=0.5, on_start=lambda pids: os.write(1, f"READY {pids[0]}\\n".encode()))
        print("SUPERVISOR DONE", flush=True)
''')


def test_a_worker_stuck_past_stop_timeout_is_killed(tmp_path: Path) -> None:
    app = tmp_path / "stuck_app.py"
    app.write_text(STUCK_APP)
    with supervisor([sys.executable, str(app)]) as (proc, lines):
        # on_start (without wait_ready: once started), and the worker running its target
        # (SIGTERM cancels it from then on), in either order: two processes print.
        seen = {lines.wait_for(r"^(READY \d+|STUCK)$").group(1) for _ in range(2)}
        ready = [line for line in seen if line.startswith("READY ")]
        assert len(seen) == 2 and ready and "STUCK" in seen, seen
        pid = ready[0].split()[1]
        proc.send_signal(signal.SIGTERM)
        lines.wait_for(rf"worker pid {pid} still running after 0.5 s: killing it")
        lines.wait_for("every worker stopped")
        lines.wait_for("SUPERVISOR DONE")
        assert proc.wait(30) == 0


def test_bad_arguments_and_an_address_that_cannot_be_bound() -> None:
    async def target() -> None:
        pass

    with pytest.raises(ValueError, match="stop_timeout must be > 0 seconds, got 0"):
        run_workers(target, 1, stop_timeout=0)
    with pytest.raises(WorkerError, match=r"cannot bind 192\.0\.2\.1:0"):
        reserve_port("192.0.2.1", 0)  # an address of no interface here (TEST-NET-1)

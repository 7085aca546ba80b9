"""wskit.workers when the supervisor is killed, and outside a worker.

Real processes: a supervisor started by the test, its workers forked by it,
clients over 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_workers import DEADLINE, supervisor

from wskit import ClientProtocol
from wskit.events import Close, Event, Response, TextMessage
from wskit.exceptions import ConnectionClosed
from wskit.sync import connect
from wskit.workers import worker_ready

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT on this platform")

# One worker; on_listen runs in it once its server listens.
APP = textwrap.dedent('''
    import logging, os, sys
    from wskit.workers import serve_workers

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")

    async def hold(ws):
        await ws.send("hello")
        await ws.wait_closed()

    if __name__ == "__main__":
        serve_workers(hold, "127.0.0.1", 0, workers=1,
                      on_listen=lambda server: print("LISTENING", os.getpid(), flush=True),
                      on_start=lambda port, pids: print("READY", port, *pids, flush=True))
''')


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie nobody reaps has ended too)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to see the worker end")
def test_a_worker_whose_supervisor_was_killed_stops_and_closes_its_clients(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    with supervisor([sys.executable, str(app)]) as (proc, lines):
        listening = int(lines.wait_for(r"^LISTENING (\d+)").group(1))
        ready = lines.wait_for(r"^READY (\d+) (\d+)")
        port, worker = int(ready.group(1)), int(ready.group(2))
        assert worker == listening  # on_listen ran in the worker
        with connect(f"ws://127.0.0.1:{port}/", open_timeout=DEADLINE) as ws:
            assert ws.recv(timeout=DEADLINE) == "hello"
            proc.send_signal(signal.SIGKILL)  # no chance to stop its workers
            proc.wait(DEADLINE)
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=DEADLINE)
            assert info.value.code == 1001  # going away, not left serving unsupervised
        deadline = time.monotonic() + DEADLINE
        while not gone(worker):
            assert time.monotonic() < deadline, "the orphaned worker still runs"
            time.sleep(0.01)


def test_worker_ready_outside_a_worker_does_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    worker_ready()  # e.g. a target of run_workers tried on its own
    worker_ready()
    assert capfd.readouterr() == ("", "")  # no readiness line written anywhere


class RawClient:
    """A client driven by hand: it answers the server's Close only when told to."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.protocol = ClientProtocol(f"ws://127.0.0.1:{port}/", extensions=[])
        self.sock.sendall(b"".join(self.protocol.connect()))
        self.events: list[Event] = []

    def next_event(self) -> Event:
        while not self.events:
            data = self.sock.recv(65536)
            self.events.extend(self.protocol.receive_eof() if not data else self.protocol.receive_data(data))
            assert data or self.events, "the server closed TCP"
        return self.events.pop(0)


def test_a_second_stop_signal_does_not_cut_the_closing_handshakes(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    with supervisor([sys.executable, str(app)]) as (_, lines):
        ready = lines.wait_for(r"^READY (\d+) (\d+)")
        port, worker = int(ready.group(1)), int(ready.group(2))
        client = RawClient(port)
        with client.sock:
            assert isinstance(client.next_event(), Response)
            message = client.next_event()
            assert isinstance(message, TextMessage) and message.data == "hello"
            os.kill(worker, signal.SIGTERM)
            close = client.next_event()  # the worker is stopping: it closes its connections
            assert isinstance(close, Close) and close.code == 1001
            os.kill(worker, signal.SIGTERM)  # e.g. Ctrl-C twice: must not cut the handshake short
            client.sock.sendall(b"".join(client.protocol.send_close(1001)))
            assert client.sock.recv(1) == b""  # the server closes TCP after our answer: a clean end
        lines.wait_for(rf"worker \d+ \(pid {worker}\) died \(exit code 0\)")  # stopped, not killed

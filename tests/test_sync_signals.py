"""A sync server stopped by a signal handler that runs on the thread of serve_forever()."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent('''
    import os, signal, threading
    from wskit.sync import connect, serve

    def echo(ws):
        for message in ws:
            ws.send(message)

    server = serve(echo, "127.0.0.1", 0)
    signal.signal(signal.SIGTERM, lambda *args: server.shutdown())  # runs on this thread, in serve_forever()
    port = server.socket.getsockname()[1]

    seen = []

    def client():
        with connect(f"ws://127.0.0.1:{port}/") as ws:
            ws.send("ping")
            assert ws.recv(timeout=10) == "ping"
            os.kill(os.getpid(), signal.SIGTERM)
            try:
                ws.recv(timeout=10)
            except Exception as exc:
                seen.append(f"client: {type(exc).__name__} {exc.code}")

    thread = threading.Thread(target=client)
    thread.start()
    server.serve_forever()
    print("serve_forever returned")
    thread.join(10)
    print(*seen)
    server.shutdown()  # again, after the loop: does nothing more
    print("done")
''')


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_shutdown_from_a_signal_handler_on_the_serving_thread_returns_and_closes_with_1001() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["serve_forever returned", "client: ConnectionClosedOK 1001", "done"]

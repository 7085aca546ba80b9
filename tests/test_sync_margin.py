"""wskit.sync where the operating system or an extension fails: out of file
descriptors, an extension that raises during a broadcast, writes to a peer
that reset the connection while the reader was held back.

Real sockets on 127.0.0.1, hand-driven peers where a real one would not
misbehave, and a subprocess where the file limit is lowered.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from test_sync import no_leaks

from wskit.sync import connect

__all__ = ["no_leaks"]  # the autouse fixture of test_sync: no thread or socket left behind

# The server runs in a subprocess whose file limit is then used up: every
# accept() fails with EMFILE until the script frees descriptors.
OUT_OF_FDS = textwrap.dedent("""
    import logging, os, resource, sys, threading
    from wskit.sync import serve

    errors = []
    failed = threading.Event()

    class Errors(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("accept() failed"):
                errors.append(record.getMessage())
                failed.set()

    logging.getLogger("wskit").addHandler(Errors())

    def echo(ws):
        for message in ws:
            ws.send(message)

    server = serve(echo, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    fillers = []
    try:
        while True:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    print(server.socket.getsockname()[1], flush=True)
    assert failed.wait(30), "accept() did not fail"
    for fd in fillers:
        os.close(fd)
    sys.stdin.readline()  # the client is done
    server.shutdown()
    thread.join()
    print(len(errors), errors[0], flush=True)
""")


def test_out_of_file_descriptors_pauses_accepting_then_serves_the_waiting_client() -> None:
    proc = subprocess.Popen([sys.executable, "-c", OUT_OF_FDS], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        # Accepted by the kernel (backlog), then by the server once it has descriptors again.
        with connect(f"ws://127.0.0.1:{port}/", open_timeout=30) as ws:
            ws.send("still served")
            assert ws.recv(timeout=30) == "still served"
        proc.stdin.write("done\n")
        proc.stdin.flush()
        count, message = proc.stdout.readline().split(" ", 1)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Too many open files" in message and "accepting again in" in message
    # A spinning accept loop logs thousands of errors before the descriptors
    # come back; a paused one logs one per pause.
    assert 1 <= int(count) <= 5

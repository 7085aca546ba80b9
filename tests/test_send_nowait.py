"""``wskit._speedups.send_nowait`` and the threaded layer's write path around it.

The threaded layer first offers small writes to ``send_nowait`` (a send that
keeps the GIL) and sends whatever the socket did not take with
``sendall``. These tests pin the C function's contract and check that, with
or without it, a slow reader still gets every byte, in order.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

import wskit.sync.connection as sync_connection
from tests.helpers import parse_frames
from tests.test_sync import RawPeer, raw_accept
from wskit.sync import connect

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
SendNowait = Callable[[socket.socket, bytes], int]


@pytest.fixture
def send_nowait() -> SendNowait:
    """The C function; skip where it does not exist (fail under CI on POSIX)."""
    try:
        from wskit._speedups import send_nowait as function
    except ImportError as exc:
        if IN_CI and sys.platform != "win32":
            pytest.fail(f"CI=true requires the C accelerator: {exc}")
        pytest.skip(f"wskit._speedups.send_nowait is not available: {exc}")
    return function  # type: ignore[no-any-return]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        yield a, b


def test_sends_and_returns_the_count(send_nowait: SendNowait, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    assert send_nowait(a, b"hello") == 5
    assert send_nowait(a, bytearray(b" world")) == 6
    assert send_nowait(a, memoryview(b"!!")[1:]) == 1
    assert b.recv(100) == b"hello world!"


def test_full_buffer_gives_0_without_blocking(send_nowait: SendNowait,
                                              pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.setblocking(True)  # a blocking socket still never blocks here
    total = 0
    chunk = b"x" * 65536
    while (sent := send_nowait(a, chunk)) > 0:
        total += sent
        assert total < 64 * 2**20, "the buffer never filled"
    received = 0
    b.setblocking(False)
    while received < total:
        received += len(b.recv(1 << 20))
    assert received == total  # every byte it counted was really sent


def test_errors(send_nowait: SendNowait, pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    with pytest.raises(ValueError, match="at most 65536"):
        send_nowait(a, bytes(65537))
    with pytest.raises(TypeError):
        send_nowait(a, "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        send_nowait(a)  # type: ignore[call-arg]
    with pytest.raises(AttributeError):
        send_nowait(object(), b"x")  # type: ignore[arg-type]
    b.close()
    with pytest.raises(OSError) as info:
        send_nowait(a, b"x" * 10)  # peer gone: EPIPE (no SIGPIPE) or ECONNRESET
    assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)
    a.close()
    with pytest.raises(OSError) as info:
        send_nowait(a, b"x")  # never a reused descriptor
    assert info.value.errno == errno.EBADF


@pytest.mark.parametrize("path", ["send_nowait", "sendall only"])
def test_a_slow_reader_gets_every_message_in_order(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    original = sync_connection._send_nowait
    partial = [0]
    filled = threading.Event()  # a write found the socket's buffers full
    if path == "send_nowait":
        if original is None:
            pytest.skip("wskit._speedups.send_nowait is not available")

        def counting(sock: socket.socket, data: bytes) -> int:
            sent = original(sock, data)
            if sent < len(data):
                partial[0] += 1
                filled.set()
            return sent

        monkeypatch.setattr(sync_connection, "_send_nowait", counting)
    else:
        monkeypatch.setattr(sync_connection, "_send_nowait", None)
        filled.set()  # nothing to wait for: sendall blocks when the buffers are full
    # Small buffers on both sides: the first, small messages alone fill them,
    # all through send_nowait; then messages over its 64 KiB go through
    # sendall, in between.
    sizes = [1, 100, 1000, 30000, 65536 - 10] * 10 + [1, 100, 1000, 30000, 65536 - 10, 70000] * 40
    started = threading.Event()
    received: list[bytes] = []

    def slow_reader(sock: socket.socket, peer: RawPeer) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        raw_accept(sock)
        started.wait(10)
        filled.wait(10)  # let the sender fill the socket buffers first
        data = bytearray()
        expected = sum(len(f) for f in frames_for(sizes))
        while len(data) < expected:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
        received.extend(f.data for f in parse_frames(bytes(data), masked=True))

    with RawPeer(slow_reader) as peer:
        ws = connect(peer.uri, compression=None, close_timeout=0.2)
        ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        started.set()
        for i, size in enumerate(sizes):
            ws.send(bytes([i % 251]) * size)
        peer.thread.join(10)
        ws.socket.close()
        ws.close()
    assert received == [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    if path == "send_nowait":
        assert partial[0] > 0  # some writes were finished by sendall


def frames_for(sizes: list[int]) -> list[bytes]:
    """Masked client frames of the given payload sizes (only their lengths matter)."""
    out = []
    for size in sizes:
        header = 2 + (0 if size < 126 else 2 if size < 65536 else 8) + 4
        out.append(bytes(header + size))
    return out

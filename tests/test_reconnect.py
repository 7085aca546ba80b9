"""Reconnecting clients: the backoff and retry rules (wskit.reconnect) and both layers against real servers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wskit.asyncio as wa
import wskit.sync as ws_sync
from wskit.events import Response
from wskit.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    InvalidHandshake,
    InvalidURI,
    NegotiationError,
    ProxyError,
    RedirectError,
)
from wskit.headers import Headers
from wskit.reconnect import backoff_delays, check_backoff, is_transient

LAYERS = ["asyncio", "sync"]
HOST = "127.0.0.1"
FAST = {"backoff_initial": 0.01, "backoff_max": 0.05, "backoff_jitter": 0}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


# -- the rules ------------------------------------------------------------------------------


def test_delays_grow_exponentially_up_to_the_maximum() -> None:
    delays = backoff_delays(0.5, 3, 10, 0)
    assert [next(delays) for _ in range(5)] == [0.5, 1.5, 4.5, 10, 10]


@given(st.floats(0, 0.999999), st.floats(0, 1))
def test_jitter_shortens_each_delay_by_at_most_its_fraction(draw: float, jitter: float) -> None:
    delays = backoff_delays(2, 2, 100, jitter, rand=lambda: draw)
    for expected in (2, 4, 8, 16):
        delay = next(delays)
        assert expected * (1 - jitter) - 1e-9 <= delay <= expected


@pytest.mark.parametrize(("args", "message"), [
    ((-1, 2, 10, 0), "backoff_initial"), ((1, 0.5, 10, 0), "backoff_factor"),
    ((1, 2, -3, 0), "backoff_max"), ((1, 2, 10, 1.5), "backoff_jitter"),
])
def test_bad_backoff_options(args: tuple[float, float, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_backoff(*args)


def _status(code: int) -> InvalidHandshake:
    return InvalidHandshake("no", response=Response(code, "", Headers()))


def _caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(("exc", "transient"), [
    (ConnectionRefusedError(), True),
    (TimeoutError(), True),
    (ConnectionClosedError(1006, ""), True),
    (_status(503), True), (_status(502), True), (_status(429), True),
    (_status(401), False), (_status(403), False), (_status(404), False),
    (InvalidURI("bad"), False),
    (NegotiationError("subprotocol refused"), False),
    (RedirectError("loop", uri="ws://a/"), False),
    (InvalidHandshake("garbage"), False),
    (_caused(ProxyError("down", proxy="http://p:1"), ConnectionRefusedError()), True),
    (_caused(ProxyError("eof", proxy="http://p:1"), EOFError()), True),
    (ProxyError("garbage", proxy="http://p:1"), False),
    (ProxyError("407", proxy="http://p:1", response=Response(407, "", Headers())), False),
    (ValueError("a bug"), False),
])
def test_what_is_worth_a_retry(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


# -- both layers ----------------------------------------------------------------------------


class Facade:
    """An asyncio connection used from another thread, as the sync one."""

    def __init__(self, ws: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.ws, self.loop = ws, loop

    def send(self, message: str) -> None:
        asyncio.run_coroutine_threadsafe(self.ws.send(message), self.loop).result(5)

    def recv(self, timeout: float = 5) -> Any:
        return asyncio.run_coroutine_threadsafe(self.ws.recv(timeout), self.loop).result(timeout + 1)


def reconnect(layer: str, uri: str, body: Callable[[Any, int], bool], **options: Any) -> int:
    """Run ``for ws in connect(uri)`` (reconnecting), calling ``body(ws, n)`` until it returns True.

    ``body`` gets a small synchronous facade (``send``, ``recv``) and the connection's number.
    Returns the number of connections opened.
    """
    count = 0
    if layer == "sync":
        for ws in ws_sync.connect(uri, **options):
            count += 1
            try:
                if body(ws, count):
                    break
            except ConnectionClosed:
                continue
        return count

    async def main() -> int:
        nonlocal count
        loop = asyncio.get_running_loop()
        async for ws in wa.connect(uri, **options):
            count += 1

            try:
                done = await asyncio.to_thread(body, Facade(ws, loop), count)
            except ConnectionClosed:
                continue
            if done:
                break
        return count

    return asyncio.run(main())


@contextlib.contextmanager
def serving(handler: Callable[[Any], None], port: int = 0, **options: Any) -> Iterator[Any]:
    server = ws_sync.serve(handler, HOST, port, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.uri = f"ws://{HOST}:{server.socket.getsockname()[1]}/"  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def echo(ws: Any) -> None:
    for message in ws:
        ws.send(message)


@pytest.mark.parametrize("layer", LAYERS)
def test_retries_until_the_server_is_up_and_logs_each_delay(layer: str, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    started: list[Any] = []
    failures: list[Exception] = []

    def process_exception(exc: Exception) -> Exception | None:
        failures.append(exc)
        if len(failures) == 2:  # the second refusal: start the server, then retry
            started.append(contextlib.ExitStack())
            started[0].enter_context(serving(echo, port))
        return None

    def body(ws: Any, n: int) -> bool:
        ws.send("up")
        return bool(ws.recv() == "up")

    logger = "wskit.sync" if layer == "sync" else "wskit.client"
    try:
        with caplog.at_level(logging.INFO, logger=logger):
            assert reconnect(layer, f"ws://{HOST}:{port}/", body, process_exception=process_exception, **FAST) == 1
    finally:
        for stack in started:
            stack.close()
    assert len(failures) == 2 and all(isinstance(e, ConnectionRefusedError) for e in failures)
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert retries == [
        f"connecting to ws://{HOST}:{port}/ failed; retrying in 0.01 s: ConnectionRefusedError: {failures[0]}",
        f"connecting to ws://{HOST}:{port}/ failed; retrying in 0.02 s: ConnectionRefusedError: {failures[1]}",
    ]


@pytest.mark.parametrize("layer", LAYERS)
def test_reconnects_after_a_lost_connection(layer: str) -> None:
    handled: list[int] = []

    def handler(ws: Any) -> None:
        handled.append(1)
        if len(handled) == 1:
            ws.socket.shutdown(socket.SHUT_RDWR)  # the first connection is lost without a closing handshake
            return
        echo(ws)

    def body(ws: Any, n: int) -> bool:
        if n == 1:
            ws.recv()  # raises ConnectionClosedError (1006): the loop reconnects
        ws.send("again")
        return bool(ws.recv() == "again")

    with serving(handler) as server:
        assert reconnect(layer, server.uri, body, **FAST) == 2


@pytest.mark.parametrize("layer", LAYERS)
def test_retries_a_busy_server_and_raises_a_refusal(layer: str) -> None:
    answers = [503, 503, None]

    def process_request(conn: Any, request: Any) -> Any:
        status = answers.pop(0) if answers else 403
        return None if status is None else Response(status, "", Headers([("Content-Length", "0")]))

    def body(ws: Any, n: int) -> bool:
        ws.send("ok")
        ws.recv()
        return False  # ask for another connection: the server now answers 403

    with serving(echo, process_request=process_request) as server:
        with pytest.raises(InvalidHandshake) as info:
            reconnect(layer, server.uri, body, **FAST)
    assert info.value.response is not None and info.value.response.status_code == 403
    assert answers == []


@pytest.mark.parametrize("layer", LAYERS)
def test_process_exception_decides(layer: str) -> None:
    port = free_port()

    def give_up(exc: Exception) -> Exception | None:
        return RuntimeError(f"gave up: {type(exc).__name__}")

    with pytest.raises(RuntimeError, match="gave up: ConnectionRefusedError") as info:
        reconnect(layer, f"ws://{HOST}:{port}/", lambda ws, n: True, process_exception=give_up, **FAST)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


def test_sync_reconnect_refuses_a_socket() -> None:
    with socket.socket() as sock, pytest.raises(ValueError, match=r"connect\(sock=...\) cannot be iterated over"):
        iter(ws_sync.connect("ws://127.0.0.1:1/", reconnect=True, sock=sock))


# -- what wskit.sync.connect() returns --------------------------------------------------------


def test_sync_connect_opens_at_once_and_with_gives_the_connection() -> None:
    entered = threading.Event()

    def handler(ws: Any) -> None:
        entered.set()
        echo(ws)

    with serving(handler) as server:
        handle = ws_sync.connect(server.uri)
        assert entered.wait(5)  # open before any use: the server runs its handler
        assert repr(handle).endswith(" open>>")
        with handle as ws:
            assert isinstance(ws, ws_sync.ClientConnection)
            assert handle.open() is ws  # one connection, however it is reached
            ws.send("hi")
            assert ws.recv() == "hi"
        assert ws.close_code == 1000


def test_sync_connect_used_directly_stands_for_its_connection_and_iterates_messages() -> None:
    def two_then_close(ws: Any) -> None:
        ws.send("one")
        ws.send("two")
        ws.close()

    with serving(two_then_close) as server:
        ws = ws_sync.connect(server.uri)
        assert ws.subprotocol is None  # a first use: ws is now that connection
        assert list(ws) == ["one", "two"]  # its messages, until the server closes
        assert ws.close_code == 1000


def test_sync_connect_raises_what_a_retry_cannot_fix_at_once() -> None:
    def forbidden(conn: Any, request: Any) -> Any:
        return Response(403, "Forbidden", Headers([("Content-Length", "0")]))

    with serving(echo, process_request=forbidden) as server:
        with pytest.raises(InvalidHandshake) as info:
            ws_sync.connect(server.uri)
    assert info.value.response is not None and info.value.response.status_code == 403


def test_sync_connect_keeps_a_transient_failure_for_the_first_use() -> None:
    uri = f"ws://{HOST}:{free_port()}/"
    handle = ws_sync.connect(uri)  # refused: a retry may fix it, so not raised here
    assert "first attempt failed: ConnectionRefusedError" in repr(handle)
    with pytest.raises(ConnectionRefusedError):
        handle.send("lost?")  # the first use raises it: nothing is sent silently
    with pytest.raises(ConnectionRefusedError):
        handle.open()  # a later use tries again, and fails again


def test_sync_iteration_retries_a_failed_first_attempt_without_reconnect_flag() -> None:
    port = free_port()
    started = contextlib.ExitStack()

    def start_server(exc: Exception) -> Exception | None:
        if not isinstance(exc, ConnectionRefusedError):
            return exc
        started.enter_context(serving(echo, port))  # up for the retry
        return None

    with started:
        for ws in ws_sync.connect(f"ws://{HOST}:{port}/", process_exception=start_server, **FAST):
            ws.send("late")
            assert ws.recv() == "late"
            break
        assert ws.close_code == 1000  # leaving the loop closes the connection


def test_sync_unix_connect_reconnects_through_the_socket_path(tmp_path: Any) -> None:
    path = str(tmp_path / "ws.sock")
    seen: list[int] = []

    def handler(ws: Any) -> None:
        seen.append(1)
        ws.send(f"connection {len(seen)}")
        ws.close()

    server = ws_sync.unix_serve(handler, path)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        got = []
        for ws in ws_sync.unix_connect(path, **FAST):
            try:
                got.append(ws.recv())
                ws.recv()
            except ConnectionClosed:
                if len(got) == 2:
                    break
        assert got == ["connection 1", "connection 2"]
    finally:
        server.shutdown()
        thread.join(5)


def test_sync_connect_block_left_by_an_exception_closes_with_1011() -> None:
    with serving(echo) as server:
        with pytest.raises(RuntimeError, match="application bug"), ws_sync.connect(server.uri) as ws:
            raise RuntimeError("application bug")
        assert ws.close_code == 1011  # as `with ws:` on the connection itself does

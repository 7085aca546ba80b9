"""How the asyncio layer resumes a task waiting in recv() and writes its replies.

When bytes arrive, ``data_received`` resumes the task waiting in ``recv()``
right there (no extra pass of the event loop), and the small messages that
task sends during that step leave in one write. These tests pin that, and
everything that must stay true around it: order of frames, cancellation,
timeouts, context variables, both Task implementations, and the fallback
when a task is already running.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import sys
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import client_frame, close_payload, make_pair, parse_frames
from wskit.asyncio._waiter import wake
from wskit.asyncio.connection import Connection, make_logger
from wskit.frames import Opcode


class FakeTransport(asyncio.Transport):
    """Records every write call; never pushes back."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.writes.append(b"".join(list_of_data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def can_write_eof(self) -> bool:
        return False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def open_connection() -> tuple[Connection, FakeTransport]:
    """A server-side Connection in the OPEN state on a FakeTransport (call inside a loop)."""
    _, server = make_pair()
    conn_id = uuid.uuid4()
    conn = Connection(server, conn_id=conn_id, logger=make_logger(None, "wskit.test", conn_id),
                      ping_interval=None)
    transport = FakeTransport()
    conn.connection_made(transport)
    conn._opened()
    return conn, transport


def text(message: str) -> bytes:
    return client_frame(Opcode.TEXT, message.encode())


def sent(transport: FakeTransport) -> list[tuple[int, bytes]]:
    return [(f.opcode, f.data) for f in parse_frames(transport.writes, masked=False)]


async def in_callback(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` as a plain event-loop callback (no task running) and return its result."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def run() -> None:
        try:
            done.set_result(fn())
        except BaseException as exc:
            done.set_exception(exc)

    loop.call_soon(run)
    return await done


async def echoed_at_once(conn: Connection, transport: FakeTransport, message: str) -> bool:
    """Deliver ``message`` from a loop callback; was its echo written before data_received returned?"""

    def deliver() -> list[tuple[int, bytes]]:
        conn.data_received(text(message))
        return sent(transport)  # inspected before the loop runs anything else

    return bool(await in_callback(deliver) == [(Opcode.TEXT, message.encode())])


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def start(conn: Connection, handler: Callable[[Connection], Awaitable[None]] = echo) -> asyncio.Task[None]:
    task = asyncio.ensure_future(handler(conn))
    await asyncio.sleep(0)  # the handler now waits in recv()
    return task


async def finish(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_reply_is_written_before_data_received_returns() -> None:
    async def main() -> None:
        conn, transport = open_connection()
        task = await start(conn)
        assert await echoed_at_once(conn, transport, "ping?")
        await finish(task)

    run(main())


def test_replies_to_a_burst_leave_in_one_write_in_order() -> None:
    async def main() -> None:
        conn, transport = open_connection()
        task = await start(conn)
        burst = b"".join(text(f"message {i}") for i in range(20))
        await in_callback(lambda: conn.data_received(burst))
        assert len(transport.writes) == 1
        assert sent(transport) == [(Opcode.TEXT, f"message {i}".encode()) for i in range(20)]
        await finish(task)

    run(main())


def test_held_replies_are_bounded_and_large_messages_are_not_held() -> None:
    async def flood(conn: Connection) -> None:
        await conn.recv()
        for i in range(200):  # never yields: send() does not wait on a FakeTransport
            await conn.send(f"{i}")
        await conn.send(b"x" * 5000)
        await conn.send("after")
        await asyncio.sleep(3600)

    async def main() -> None:
        conn, transport = open_connection()
        task = await start(conn, flood)
        await in_callback(lambda: conn.data_received(text("go")))
        frames = sent(transport)
        assert [data for _, data in frames] == [f"{i}".encode() for i in range(200)] + [b"x" * 5000, b"after"]
        # At most 64 small frames are held before they go to the transport.
        assert max(len(parse_frames([w], masked=False)) for w in transport.writes) <= 64
        await finish(task)

    run(main())


@pytest.mark.parametrize("then", ["ping", "pong", "close"])
def test_held_data_is_written_before_a_control_frame(then: str) -> None:
    async def handler(conn: Connection) -> None:
        message = await conn.recv()
        await conn.send(message)
        await conn.send("second")
        if then == "ping":
            await conn.ping(b"p")
        elif then == "pong":
            await conn.pong(b"p")
        else:
            await conn.close(1000, "bye")
        await asyncio.sleep(3600)

    async def main() -> None:
        conn, transport = open_connection()
        task = await start(conn, handler)
        await in_callback(lambda: conn.data_received(text("first")))
        opcodes = [opcode for opcode, _ in sent(transport)]
        control = {"ping": Opcode.PING, "pong": Opcode.PONG, "close": Opcode.CLOSE}[then]
        assert opcodes == [Opcode.TEXT, Opcode.TEXT, control]
        await finish(task)

    run(main())


def test_peer_close_is_answered_after_the_replies() -> None:
    async def main() -> None:
        conn, transport = open_connection()
        task = await start(conn)
        data = text("one") + text("two") + client_frame(Opcode.CLOSE, close_payload(1000))
        await in_callback(lambda: conn.data_received(data))
        for _ in range(3):
            await asyncio.sleep(0)
        assert sent(transport) == [(Opcode.TEXT, b"one"), (Opcode.TEXT, b"two"),
                                   (Opcode.CLOSE, close_payload(1000))]
        assert transport.closing  # the server closes TCP after the closing handshake
        conn.connection_lost(None)
        await task  # the iteration ended cleanly

    run(main())


def test_data_received_inside_a_running_task_wakes_the_handler_later() -> None:
    async def main() -> None:
        conn, transport = open_connection()
        task = await start(conn)
        conn.data_received(text("hello"))  # called from this task: no nested task step
        assert transport.writes == []
        await asyncio.sleep(0)
        assert sent(transport) == [(Opcode.TEXT, b"hello")]
        await finish(task)

    run(main())


def test_context_variables_stay_with_the_task() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="loop")
    seen: list[str] = []

    async def handler(conn: Connection) -> None:
        var.set("handler")
        await conn.recv()
        seen.append(var.get())

    async def main() -> None:
        conn, _ = open_connection()
        task = await start(conn, handler)
        outside = await in_callback(lambda: (conn.data_received(text("x")), var.get())[1])
        await task
        assert seen == ["handler"]
        assert outside == "loop"

    run(main())


def test_an_error_in_the_resumed_handler_stays_in_its_task() -> None:
    async def handler(conn: Connection) -> None:
        await conn.recv()
        raise ValueError("handler bug")

    async def main() -> None:
        conn, _ = open_connection()
        task = await start(conn, handler)
        await in_callback(lambda: conn.data_received(text("x")))  # does not raise
        with pytest.raises(ValueError, match="handler bug"):
            await task

    run(main())


def test_cancelling_a_task_waiting_in_recv() -> None:
    async def main() -> None:
        conn, _ = open_connection()
        waiting = asyncio.ensure_future(conn.recv())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # The connection is still usable: a new recv() gets the next message.
        again = asyncio.ensure_future(conn.recv())
        await asyncio.sleep(0)
        await in_callback(lambda: conn.data_received(text("still here")))
        assert await again == "still here"

    run(main())


def test_recv_timeouts_of_every_kind() -> None:
    async def main() -> None:
        conn, _ = open_connection()
        with pytest.raises(TimeoutError):
            await conn.recv(timeout=0.01)
        with pytest.raises((TimeoutError, asyncio.TimeoutError)):
            await asyncio.wait_for(conn.recv(), 0.01)
        if sys.version_info >= (3, 11):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.01):
                    await conn.recv()
        waiting = asyncio.ensure_future(conn.recv(timeout=5))
        await asyncio.sleep(0)
        await in_callback(lambda: conn.data_received(text("in time")))
        assert await waiting == "in time"

    run(main())


def test_pure_python_tasks_are_resumed_in_place_too() -> None:
    py_task = getattr(asyncio.tasks, "_PyTask", None)
    if py_task is None:
        pytest.skip("this Python has no pure-Python Task")

    async def main() -> None:
        asyncio.get_running_loop().set_task_factory(
            lambda loop, coro, **kwargs: py_task(coro, loop=loop, **kwargs))
        conn, transport = open_connection()
        task = await start(conn)
        assert type(task) is py_task
        assert await echoed_at_once(conn, transport, "py")
        await finish(task)

    run(main())


def test_connection_loss_ends_a_waiting_recv() -> None:
    async def main() -> None:
        conn, _ = open_connection()
        task = await start(conn)
        conn.connection_lost(None)
        with pytest.raises(Exception, match="1006"):
            await task

    run(main())


def test_wake_resumes_a_lone_task_now_and_leaves_everything_else_to_the_loop() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        order: list[str] = []

        async def waits(fut: asyncio.Future[None], name: str) -> None:
            await fut
            order.append(name)

        # One task awaits it, no task running: resumed inside wake().
        lone: asyncio.Future[None] = loop.create_future()
        task = asyncio.ensure_future(waits(lone, "lone"))
        await asyncio.sleep(0)
        await in_callback(lambda: (wake(lone), order.append("after wake")))
        assert order == ["lone", "after wake"] and task.done()

        # Watched by something else too (asyncio.wait adds a callback): the loop runs them all.
        shared: asyncio.Future[None] = loop.create_future()
        task = asyncio.ensure_future(waits(shared, "shared"))
        watcher = asyncio.ensure_future(asyncio.wait({shared}))
        await asyncio.sleep(0)
        await in_callback(lambda: (wake(shared), order.append("after wake 2")))
        await task
        await watcher
        assert order[2:] == ["after wake 2", "shared"]

        # A plain callback, not a task: scheduled by the loop, as set_result does.
        plain: asyncio.Future[None] = loop.create_future()
        plain.add_done_callback(lambda f: order.append("plain"))
        await in_callback(lambda: (wake(plain), order.append("after wake 3")))
        await asyncio.sleep(0)
        assert order[4:] == ["after wake 3", "plain"]

        # Called from inside a running task: never resumes another task there.
        inner: asyncio.Future[None] = loop.create_future()
        task = asyncio.ensure_future(waits(inner, "inner"))
        await asyncio.sleep(0)
        wake(inner)
        order.append("after wake 4")
        await task
        assert order[6:] == ["after wake 4", "inner"]

        # Nobody awaits it yet: it is simply done.
        idle: asyncio.Future[None] = loop.create_future()
        wake(idle)
        assert idle.done() and idle.result() is None

    run(main())


# -- on_message: each message by a plain call, replies grouped the same way --------------------


def test_on_message_replies_to_a_burst_leave_in_one_write_in_order() -> None:
    async def main() -> None:
        conn, transport = open_connection()
        conn.on_message = conn.send_nowait
        burst = b"".join(text(f"message {i}") for i in range(20))
        conn.data_received(burst)  # no task to wake: the echoes are written before this returns
        assert len(transport.writes) == 1
        assert sent(transport) == [(Opcode.TEXT, f"message {i}".encode()) for i in range(20)]
        conn.data_received(text("alone") + client_frame(Opcode.BINARY, b"x" * 5000) + text("last"))
        # A large reply is not held: it carries the held one first, then the last leaves alone.
        assert sent(transport)[20:] == [(Opcode.TEXT, b"alone"), (Opcode.BINARY, b"x" * 5000),
                                        (Opcode.TEXT, b"last")]
        assert len(transport.writes) == 3

    run(main())


def test_on_message_replies_are_bounded_and_go_before_the_close_answer() -> None:
    async def main() -> None:
        conn, transport = open_connection()
        conn.on_message = lambda message: [conn.send_nowait(f"{message}-{i}") for i in range(100)]
        conn.data_received(text("m") + client_frame(Opcode.CLOSE, close_payload(1000)))
        frames = sent(transport)
        assert frames == [(Opcode.TEXT, f"m-{i}".encode()) for i in range(100)] + [
            (Opcode.CLOSE, close_payload(1000))]
        assert max(len(parse_frames([w], masked=False)) for w in transport.writes) <= 64
        assert transport.closing

    run(main())


def test_messages_waiting_in_the_queue_go_to_the_callback_when_it_is_set() -> None:
    async def main() -> None:
        conn, transport = open_connection()
        conn.data_received(text("one") + text("two") + text("three"))
        got: list[Any] = []

        def callback(message: Any) -> None:
            got.append(message)
            conn.send_nowait(message.upper())

        conn.on_message = callback
        assert got == ["one", "two", "three"]
        assert len(transport.writes) == 1  # their replies too leave together
        assert sent(transport) == [(Opcode.TEXT, b"ONE"), (Opcode.TEXT, b"TWO"), (Opcode.TEXT, b"THREE")]
        conn.data_received(text("four"))
        assert got[-1] == "four"

    run(main())


def test_a_held_close_goes_out_once_the_callback_took_the_queued_messages() -> None:
    async def main() -> None:
        conn, transport = open_connection()
        # The peer's Close arrives while its messages wait: our answer is held for the replies.
        conn.data_received(text("question") + client_frame(Opcode.CLOSE, close_payload(1000)))
        assert transport.writes == []
        conn.on_message = conn.send_nowait
        assert sent(transport) == [(Opcode.TEXT, b"question"), (Opcode.CLOSE, close_payload(1000))]
        assert transport.closing
        conn.connection_lost(None)
        await conn.wait_closed()
        assert conn.close_code == 1000

    run(main())


@settings(max_examples=60, deadline=None)
@given(messages=st.lists(st.one_of(st.text(max_size=40), st.binary(max_size=300)), min_size=1, max_size=30),
       cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=12),
       switches=st.lists(st.integers(min_value=0, max_value=30), max_size=6),
       takes=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=8))
def test_every_message_reaches_the_callback_or_recv_once_in_order(
        messages: list[str | bytes], cuts: list[int], switches: list[int], takes: list[int]) -> None:
    """Whatever the reads' boundaries, and however often the callback is set and unset."""
    wire = b"".join(client_frame(Opcode.TEXT, m.encode()) if isinstance(m, str) else client_frame(Opcode.BINARY, m)
                    for m in messages)
    bounds = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})
    chunks = [wire[a:b] for a, b in itertools.pairwise(bounds)]

    async def main() -> None:
        conn, transport = open_connection()
        got: list[str | bytes] = []

        def callback(message: str | bytes) -> None:
            got.append(message)
            conn.send_nowait(message)

        for i, chunk in enumerate(chunks):
            if i in switches:  # between reads: take what waits with recv(), or hand it all to the callback
                if conn.on_message is None:
                    conn.on_message = callback
                else:
                    conn.on_message = None
            conn.data_received(chunk)
            if conn.on_message is None:  # recv() takes some; the others wait, maybe for the callback
                for _ in range(min(takes[i % len(takes)], len(conn._queue))):
                    message = await conn.recv()
                    got.append(message)
                    await conn.send(message)
        while len(got) < len(messages):
            conn.on_message = callback if len(got) % 2 else None
            if conn.on_message is None:
                message = await conn.recv()
                got.append(message)
                await conn.send(message)
        assert got == messages
        assert [data for _, data in sent(transport)] == [m.encode() if isinstance(m, str) else m for m in messages]

    run(main())


def test_a_reply_refused_because_the_connection_closes_is_no_callback_failure(
        caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        conn, transport = open_connection()
        conn.on_message = conn.send_nowait
        closing = asyncio.ensure_future(conn.close(1001, "going away"))
        await asyncio.sleep(0)  # our Close is out
        assert sent(transport) == [(Opcode.CLOSE, close_payload(1001, b"going away"))]
        # A message the peer sent before it read our Close: its echo cannot go out any more.
        conn.data_received(text("late") + client_frame(Opcode.CLOSE, close_payload(1001)))
        assert len(sent(transport)) == 1
        assert conn.on_message is not None  # still set: it did not fail
        conn.connection_lost(None)
        await closing
        assert conn.close_code == 1001  # the code of the Close received

    with caplog.at_level("DEBUG"):
        run(main())
    assert not [r for r in caplog.records if r.levelname == "ERROR"]

"""A future-like object that can resume the task awaiting it at once.

``recv()`` waits on a :class:`Waiter`. When a message arrives, the
connection's ``data_received`` completes the waiter with ``eager=True``: the
task waiting in ``recv()`` resumes right there, inside the loop callback that
delivered the bytes, instead of in the loop's next iteration. On a
request/response exchange that saves one pass of the event loop per message,
which is one ``epoll_wait`` system call and the loop's bookkeeping: about a
fifth of a small message's server CPU time (see ``docs/performance.md``).

The waiter follows the protocol :class:`asyncio.Task` uses for futures
(``_asyncio_future_blocking``, ``add_done_callback``, ``result``,
``cancel``, ``get_loop``), so a task may await it like a future. The
synchronous resumption happens only when it is safe: the callback is an
:class:`asyncio.Task`'s wake-up, the task runs on this loop, and no other task
is running (``asyncio.current_task()`` is ``None``: we are in a plain loop
callback). Otherwise the wake-up is scheduled with ``call_soon``, exactly as
a future would do it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Generator
from typing import Any

__all__ = ["Waiter"]

_PENDING, _DONE, _CANCELLED = 0, 1, 2

_current_task = asyncio.current_task
# The C Task and, where it exists, the pure-Python one (not a subclass of it).
_TASK_TYPES = tuple({asyncio.Task, getattr(asyncio.tasks, "_PyTask", asyncio.Task)})


class Waiter:
    """Completed once, with ``None`` or an exception; awaited by one task."""

    __slots__ = ("_loop", "_state", "_error", "_callback", "_context", "_asyncio_future_blocking")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._state = _PENDING
        self._error: BaseException | None = None
        self._callback: Callable[[Any], object] | None = None
        self._context: contextvars.Context | None = None
        self._asyncio_future_blocking = False

    # -- the future protocol asyncio.Task relies on ------------------------------

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """The loop this waiter belongs to."""
        return self._loop

    def done(self) -> bool:
        """Whether the waiter was completed or cancelled."""
        return self._state != _PENDING

    def cancelled(self) -> bool:
        """Whether the waiter was cancelled."""
        return self._state == _CANCELLED

    def result(self) -> None:
        """Return ``None``, or raise the exception or ``CancelledError``."""
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("the waiter is not done")
        if self._error is not None:
            raise self._error
        return None

    def exception(self) -> BaseException | None:
        """The exception the waiter was completed with, if any."""
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("the waiter is not done")
        if self._state == _CANCELLED:
            raise self._error  # type: ignore[misc]
        return self._error

    def add_done_callback(self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None) -> None:
        """Register the awaiting task's wake-up (one callback at most)."""
        if self._state != _PENDING:
            self._loop.call_soon(fn, self, context=context)
            return
        if self._callback is not None:
            raise RuntimeError("a recv() waiter can be awaited by one task only")
        self._callback = fn
        self._context = context

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        """Unregister ``fn``; return how many callbacks were removed."""
        if self._callback is not None and self._callback == fn:
            self._callback = self._context = None
            return 1
        return 0

    def cancel(self, msg: Any = None) -> bool:
        """Cancel the waiter: the awaiting task gets ``CancelledError``."""
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        self._error = asyncio.CancelledError() if msg is None else asyncio.CancelledError(msg)
        self._schedule(eager=False)  # called from another task's cancel(): never resume here
        return True

    def __await__(self) -> Generator[Any, None, None]:
        if self._state == _PENDING:
            self._asyncio_future_blocking = True
            yield self
        if self._state == _PENDING:
            raise RuntimeError("await wasn't used with a task")
        return self.result()

    __iter__ = __await__

    # -- completing ----------------------------------------------------------------

    def set_result(self, eager: bool = False) -> None:
        """Complete the waiter; with ``eager``, resume the task now if that is safe."""
        if self._state == _PENDING:
            self._state = _DONE
            self._schedule(eager)

    def set_exception(self, error: BaseException) -> None:
        """Complete the waiter with ``error`` (raised in the awaiting task)."""
        if self._state == _PENDING:
            self._state = _DONE
            self._error = error
            self._schedule(eager=False)

    def _schedule(self, eager: bool) -> None:
        callback = self._callback
        if callback is None:
            return
        context = self._context
        self._callback = self._context = None
        if (eager and context is not None
                and isinstance(getattr(callback, "__self__", None), _TASK_TYPES)
                and _current_task(self._loop) is None):
            context.run(callback, self)
        else:
            self._loop.call_soon(callback, self, context=context)

"""Resuming the task waiting in ``recv()`` at once, on an ordinary future.

``recv()`` waits on a future made by ``loop.create_future()``. When a
message arrives, the connection's ``data_received`` completes it with
:func:`wake`: the task waiting in ``recv()`` resumes right there, inside the
loop callback that delivered the bytes, instead of in the loop's next
iteration. On a request/response exchange that saves one pass of the event
loop per message, which is one ``epoll_wait`` system call and the loop's
bookkeeping (see ``docs/performance.md``).

:func:`wake` resumes the task itself only when that is safe: the future's
one callback is an :class:`asyncio.Task`'s wake-up (a task awaits it and
nothing else watches it), and no other task is running (we are in a plain
loop callback). It then removes that callback, completes the future, and
calls the wake-up in the task's context, as the loop would have. Otherwise
the future is completed as usual and the loop schedules its callbacks.
Everything else (cancellation, timeouts, ``asyncio.wait``) is the future's
own behaviour.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["wake"]

# The C Task and, where it exists, the pure-Python one (not a subclass of it).
_TASK_TYPES = tuple({asyncio.Task, getattr(asyncio.tasks, "_PyTask", asyncio.Task)})


# current_task(loop) without its Python wrapper where the dict behind it is
# there (Python 3.10 to 3.13: a C lookup, not a Python call).
_running_task: Callable[[asyncio.AbstractEventLoop], Any] = getattr(
    getattr(asyncio.tasks, "_current_tasks", None), "get", asyncio.current_task)


def wake(future: asyncio.Future[None]) -> None:
    """Complete ``future`` with ``None``, resuming the task awaiting it now if that is safe.

    Args:
        future: a pending future of the running loop, made by
            ``loop.create_future()``.
    """
    callbacks = getattr(future, "_callbacks", None)
    if callbacks and len(callbacks) == 1:
        callback, context = callbacks[0]
        if (context is not None and isinstance(getattr(callback, "__self__", None), _TASK_TYPES)
                and _running_task(future.get_loop()) is None):
            future.remove_done_callback(callback)
            future.set_result(None)
            context.run(callback, future)
            return
    future.set_result(None)

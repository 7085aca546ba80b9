"""Workers: several processes serving on one port, started, restarted and stopped together.

One Python process uses one core. :func:`serve_workers` starts ``workers``
processes that each run :func:`wskit.asyncio.serve` on the same host and port
with ``SO_REUSEPORT``: the kernel spreads new connections over them. The
process that called it supervises them:

- it restarts a worker that dies (a crash, a kill); a worker that keeps
  dying at start makes the supervisor stop every worker and raise
  :class:`WorkerError`, rather than loop;
- on SIGINT or SIGTERM it sends SIGTERM to every worker; each one stops
  listening and closes its connections with 1001 (going away), waiting for
  them at most its ``close_timeout``; a worker still running after
  ``stop_timeout`` is killed;
- a worker whose supervisor is gone (killed) stops the same way.

Messages for clients connected to other workers go through a hub
(:mod:`wskit.hub`) with a backend that all the workers share, such as Redis.

:func:`run_workers` is the same supervisor for any coroutine function, for
programs that start their servers themselves (with ``reuse_port=True``).

Workers are started with ``fork`` where the platform has it, so the handler
and its closures need not be picklable; start no event loop and no thread in
the supervising process before calling these functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from .defaults import CLOSE_TIMEOUT

if TYPE_CHECKING:
    from .asyncio.server import Handler, Server
    from .hub import Hub

__all__ = ["WorkerError", "check_reuse_port", "reserve_port", "run_workers", "serve_workers", "worker_ready"]

logger = logging.getLogger("wskit.workers")

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_FAST_EXIT = 1.0  # seconds: a worker that exits sooner after its start failed to start
_MAX_FAST_EXITS = 5  # failed starts in a row, for one worker, before giving up
_ready_fd: int | None = None  # in a worker: where worker_ready() tells the supervisor


class WorkerError(RuntimeError):
    """The workers could not be started or kept running (the message says why)."""


def check_reuse_port() -> None:
    """Check that this platform lets several sockets share a port with ``SO_REUSEPORT``.

    Raises:
        WorkerError: it does not (e.g. Windows), or the kernel refuses the option.
    """
    if not hasattr(socket, "SO_REUSEPORT"):
        raise WorkerError(f"workers share their port with SO_REUSEPORT, which this platform ({sys.platform}) "
                          "does not have: run one process per port behind a load balancer instead")
    with socket.socket() as probe:
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        except OSError as exc:
            raise WorkerError(f"this kernel refuses SO_REUSEPORT ({exc}): workers cannot share a port") from exc


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (without listening) a ``SO_REUSEPORT`` socket to ``host``:``port``.

    While it is open, no other program can take the port, and the workers
    (which listen with ``SO_REUSEPORT`` too) can all bind it; it never gets
    a connection. With ``port=0``, read the chosen port from
    ``getsockname()``.

    Raises:
        WorkerError: no ``SO_REUSEPORT``, or the port is taken (by a program
            that did not set ``SO_REUSEPORT``).
    """
    check_reuse_port()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise WorkerError(f"port {port} on {host} is taken by a program that does not share it "
                              "(SO_REUSEPORT)") from exc
        raise WorkerError(f"cannot bind {host}:{port}: {exc}") from exc
    return sock


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _once(action: Callable[[], Any]) -> Callable[[], None]:
    done = False

    def call() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return call


def worker_ready() -> None:
    """Tell the supervisor that this worker serves now (it logs it, and calls ``on_start`` once all do).

    :func:`serve_workers` calls it once the worker listens; a ``target`` of
    :func:`run_workers` started with ``wait_ready=True`` must call it. Outside
    a worker it does nothing.
    """
    if _ready_fd is not None:
        with contextlib.suppress(OSError):
            os.write(_ready_fd, f"{os.getpid()}\n".encode())


def _worker_main(target: Callable[..., Awaitable[Any]], args: Sequence[Any], index: int, fds: Sequence[int],
                 ready_fd: int) -> None:
    """The body of a worker process: run ``target(*args)``; SIGINT or SIGTERM cancels it."""
    global _ready_fd
    for fd in fds:  # the supervisor's ends of its pipes, inherited through fork
        with contextlib.suppress(OSError):
            os.close(fd)
    _ready_fd = ready_fd
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stop = _once(task.cancel)  # a second signal must not cancel the closing handshakes
        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, stop)
        # The supervisor died (killed): stop too, rather than serve unsupervised.
        parent = multiprocessing.parent_process()
        assert parent is not None  # (always a multiprocessing child)

        def orphaned(fd: int = parent.sentinel) -> None:
            loop.remove_reader(fd)
            stop()

        with contextlib.suppress(Exception):
            loop.add_reader(parent.sentinel, orphaned)
        with contextlib.suppress(asyncio.CancelledError):
            await target(*args)

    asyncio.run(main())


class _Worker:
    __slots__ = ("index", "process", "started", "fast_exits", "restart_at", "ready")

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: Any = None
        self.started = 0.0
        self.fast_exits = 0
        self.restart_at: float | None = None
        self.ready = False


class _Supervisor:
    def __init__(self, target: Callable[..., Awaitable[Any]], args: Sequence[Any], workers: int,
                 stop_timeout: float, on_start: Callable[[list[int]], None] | None, wait_ready: bool) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        if not stop_timeout > 0:
            raise ValueError(f"stop_timeout must be > 0 seconds, got {stop_timeout!r}")
        self.target = target
        self.args = tuple(args)
        self.workers = [_Worker(i + 1) for i in range(workers)]
        self.stop_timeout = stop_timeout
        self.on_start = on_start
        self.wait_ready = wait_ready
        self.context = _context()
        self.stopping = False
        self.failure: str | None = None

    def _start(self, worker: _Worker, fds: Sequence[int]) -> None:
        process = self.context.Process(target=_worker_main, name=f"wskit-worker-{worker.index}", daemon=False,
                                       args=(self.target, self.args, worker.index, fds[:-1], fds[-1]))
        process.start()
        worker.process, worker.started, worker.restart_at, worker.ready = process, time.monotonic(), None, False
        logger.info("worker %d started (pid %d)", worker.index, process.pid)

    def run(self) -> int:
        if threading.current_thread() is not threading.main_thread():
            raise WorkerError("the workers' supervisor must run in the main thread: it handles SIGINT and SIGTERM")
        read_fd, write_fd = os.pipe()
        ready_r, ready_w = os.pipe()
        for fd in (read_fd, write_fd, ready_r):
            os.set_blocking(fd, False)
        previous = {signum: signal.getsignal(signum) for signum in _STOP_SIGNALS}
        old_wakeup = -1

        def on_signal(signum: int, frame: Any) -> None:
            self.stopping = True

        try:
            for signum in _STOP_SIGNALS:
                signal.signal(signum, on_signal)
            old_wakeup = signal.set_wakeup_fd(write_fd)
            fds = (read_fd, write_fd, ready_r, ready_w)  # the last one stays open in the workers
            for worker in self.workers:
                self._start(worker, fds)
            if not self.wait_ready and self.on_start is not None:
                self.on_start([w.process.pid for w in self.workers])
            self._supervise(read_fd, ready_r, fds)
        finally:
            self._stop_all()
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for fd in (read_fd, write_fd, ready_r, ready_w):
                os.close(fd)
        if self.failure is not None:
            raise WorkerError(self.failure)
        return 0

    def _supervise(self, read_fd: int, ready_r: int, fds: Sequence[int]) -> None:
        announced = False
        while not self.stopping:
            now = time.monotonic()
            for waiting in self.workers:
                if waiting.restart_at is not None and waiting.restart_at <= now:
                    self._start(waiting, fds)
            waits = [w.restart_at - now for w in self.workers if w.restart_at is not None]
            timeout = max(0.0, min(waits)) if waits else None
            sentinels = {w.process.sentinel: w for w in self.workers if w.restart_at is None}
            ready = multiprocessing.connection.wait([read_fd, ready_r, *sentinels], timeout)
            if read_fd in ready:
                with contextlib.suppress(OSError):
                    os.read(read_fd, 512)
            if self.stopping:
                return
            if ready_r in ready:
                self._ready(ready_r)
                if not announced and self.wait_ready and all(w.ready for w in self.workers):
                    announced = True
                    if self.on_start is not None:
                        self.on_start([w.process.pid for w in self.workers])
            for fd in ready:
                dead = sentinels.get(fd) if isinstance(fd, int) else None
                if dead is not None:
                    self._died(dead)
                    if self.failure is not None:
                        return

    def _ready(self, ready_r: int) -> None:
        try:
            data = os.read(ready_r, 4096)
        except BlockingIOError:
            return
        by_pid = {w.process.pid: w for w in self.workers if w.process is not None}
        for line in data.split():
            worker = by_pid.get(int(line))
            if worker is not None and not worker.ready:
                worker.ready = True
                worker.fast_exits = 0
                logger.info("worker %d ready (pid %d)", worker.index, worker.process.pid)

    def _died(self, worker: _Worker) -> None:
        process = worker.process
        process.join()
        code = process.exitcode
        lived = time.monotonic() - worker.started
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        worker.fast_exits = worker.fast_exits + 1 if lived < _FAST_EXIT else 0
        if worker.fast_exits >= _MAX_FAST_EXITS:
            self.failure = (f"worker {worker.index} exited {worker.fast_exits} times in a row within "
                            f"{_FAST_EXIT:g} s of its start (last: {how}); see its errors above")
            logger.error("%s; stopping every worker", self.failure)
            return
        delay = 0.0 if worker.fast_exits == 0 else min(5.0, 0.1 * 2 ** worker.fast_exits)
        logger.warning("worker %d (pid %d) died (%s) after %.1f s; restarting it%s", worker.index, process.pid, how,
                       lived, f" in {delay:.1f} s" if delay else "")
        worker.restart_at = time.monotonic() + delay

    def _stop_all(self) -> None:
        running = [w.process for w in self.workers if w.process is not None and w.process.exitcode is None]
        if not running:
            return
        logger.info("stopping %d worker(s)", len(running))
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                logger.warning("worker pid %d still running after %g s: killing it", process.pid, self.stop_timeout)
                process.kill()
                process.join()
        logger.info("every worker stopped")


def run_workers(target: Callable[..., Awaitable[Any]], workers: int, *, args: Sequence[Any] = (),
                stop_timeout: float = CLOSE_TIMEOUT + 5.0,
                on_start: Callable[[list[int]], None] | None = None, wait_ready: bool = False) -> int:
    """Run ``await target(*args)`` in ``workers`` processes until SIGINT or SIGTERM.

    A worker is stopped by cancelling ``target`` (on SIGINT or SIGTERM); a
    server started with ``async with serve(...)`` or running
    ``serve_forever()`` then closes its connections with 1001. A worker that
    dies, or whose ``target`` returns, is started again.

    Args:
        target: a coroutine function, the body of each worker; it usually
            starts a server with ``reuse_port=True``.
        workers: how many processes.
        args: the arguments of ``target``.
        stop_timeout: seconds the workers have to stop before they are killed.
        on_start: called in the supervisor with the workers' process ids once
            they are all started (with ``wait_ready``: once each one called
            :func:`worker_ready`).
        wait_ready: whether ``target`` calls :func:`worker_ready` when it
            serves (then each worker's readiness is logged too).

    Returns:
        0, after a SIGINT or SIGTERM stopped every worker.

    Raises:
        WorkerError: a worker kept failing at its start.
        ValueError: ``workers`` below 1.
    """
    return _Supervisor(target, args, workers, stop_timeout, on_start, wait_ready).run()


async def _serve_one(handler: Handler, host: str, port: int, hub: Hub | None, options: dict[str, Any],
                     on_listen: Callable[[Server], Any] | None) -> None:
    from .asyncio.server import serve

    async with contextlib.AsyncExitStack() as stack:
        if hub is not None:
            await stack.enter_async_context(hub)
        server = await stack.enter_async_context(serve(handler, host, port, reuse_port=True, **options))
        if on_listen is not None:
            on_listen(server)
        worker_ready()
        await server.serve_forever()


def serve_workers(handler: Handler, host: str = "127.0.0.1", port: int = 8765, *, workers: int,
                  hub: Hub | None = None, stop_timeout: float = CLOSE_TIMEOUT + 5.0,
                  on_start: Callable[[int, list[int]], None] | None = None,
                  on_listen: Callable[[Server], Any] | None = None, **options: Any) -> int:
    """Serve ``handler`` on ``host``:``port`` from ``workers`` processes sharing the port.

    Blocks until SIGINT or SIGTERM, then stops every worker (their clients
    get 1001) and returns 0.

    Args:
        handler: the connection handler, as for :func:`wskit.asyncio.serve`.
        host: the interface.
        port: the TCP port (0: one chosen once, for every worker; it is
            passed to ``on_start``).
        workers: how many processes.
        hub: a :class:`~wskit.hub.Hub`, not started: each worker starts its
            own copy (``async with hub``) before serving.
        stop_timeout: seconds the workers have to stop before they are killed.
        on_start: ``(port, pids)`` called in the supervisor once every worker
            listens.
        on_listen: called in each worker with its :class:`~wskit.asyncio.Server` once it listens.
        **options: the options of :func:`wskit.asyncio.serve` (``config=``,
            ``max_size=``...). ``reuse_port`` is always true.

    Returns:
        0, after a SIGINT or SIGTERM stopped every worker.

    Raises:
        WorkerError: no ``SO_REUSEPORT`` here, the port is taken, or a
            worker kept failing at its start.
    """
    for name in ("reuse_port", "sock", "unix"):
        if name in options:
            raise TypeError(f"serve_workers() sets the listening socket itself: {name}= is not accepted")
    reserved = reserve_port(host, port)
    try:
        chosen = reserved.getsockname()[1]
        start = None if on_start is None else (lambda pids: on_start(chosen, pids))
        return run_workers(_serve_one, workers, args=(handler, host, chosen, hub, options, on_listen),
                           stop_timeout=stop_timeout, on_start=start, wait_ready=True)
    finally:
        reserved.close()

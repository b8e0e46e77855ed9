"""One run of one task on a worker: how to stop it, and the thread it runs in.

(Split from trioflow/server/worker.py, which runs them.)
"""
from __future__ import annotations

import os
import threading
import time

import psutil
import trio

from trioflow.server.asyncio_bridge import run_coroutine
from trioflow.server.context import TaskContext, set_thread_task


class Execution:
    """One run of one task: how to stop it."""

    __slots__ = ("key", "cancel_scope", "cancelled", "is_async", "thread_done", "timed_out",
                 "thread_id", "started")

    def __init__(self, key, is_async):
        self.key = key
        self.is_async = is_async
        self.cancel_scope: trio.CancelScope | None = None
        self.cancelled = False
        self.thread_done = False
        self.timed_out = False
        self.thread_id: int | None = None
        self.started = time.time()


class TaskCancelled(BaseException):
    """Raised inside a sync task by ``trioflow.checkpoint()`` once its future
    was cancelled.  A BaseException so that ``except Exception`` in user code
    does not swallow it."""


def without_own_frame(exc: BaseException) -> BaseException:
    """The traceback from the user's function on, without trioflow's frames
    that called it (this module's and the asyncio bridge's)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and \
            tb.tb_frame.f_code.co_filename in _CALLER_FILES:
        tb = tb.tb_next
    return exc.with_traceback(tb)


_CALLER_FILES = frozenset({__file__, os.path.join(os.path.dirname(__file__), "worker.py"),
                           run_coroutine.__code__.co_filename})


def _run_in_thread(execution: Execution, context: TaskContext, func, args, kwargs):
    execution.thread_id = threading.get_ident()
    set_thread_task(context)
    start = time.perf_counter()
    try:
        result = func(*args, **kwargs)
        return "ok", result, time.perf_counter() - start
    except TaskCancelled:
        return "cancelled", None, time.perf_counter() - start
    except BaseException as exc:  # SystemExit too (as in dask); traceback from the user's code
        return "error", without_own_frame(exc), time.perf_counter() - start
    finally:
        execution.thread_done = True
        set_thread_task(None)


_processes: dict = {}  # pid -> psutil.Process: cpu_percent() measures since the last call


def _this_process():
    pid = os.getpid()
    if pid not in _processes:
        _processes.clear()
        _processes[pid] = psutil.Process(pid)
    return _processes[pid]


def _rss() -> int:
    try:
        return _this_process().memory_info().rss
    except psutil.Error:
        return 0


def _cpu_percent() -> float:
    try:
        return _this_process().cpu_percent(None)
    except psutil.Error:
        return 0.0

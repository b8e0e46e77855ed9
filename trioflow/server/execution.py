"""How a worker runs its tasks: sync ones in its task threads, ``async def``
ones in its nursery under a cancel scope of their own, each stopped by a
cancel or by its deadline (``submit(timeout=)``).

``Executor`` holds what runs now (``Execution`` records, by key); the
worker decides *when* to run a task and with which deadline (its state
machine) and what to do with the outcome, and calls ``Executor.run`` in
between.  (Split from trioflow/server/worker.py.)
"""
from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections import OrderedDict
from functools import partial

import psutil
import trio

from trioflow.core.keys import key_prefix
from trioflow.protocol.tasks import loads_args
from trioflow.server.asyncio_bridge import carries_cancel, run_coroutine
from trioflow.server.context import TaskContext, reset_async_task, set_async_task, set_thread_task
from trioflow.server.threads import TaskThreads


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


class Executor:
    """Runs one worker's tasks and stops them.  ``executing`` maps each key
    running now to its ``Execution``; ``tasks_running`` is set while any
    sync task runs (it wakes the profiler's sampling thread)."""

    def __init__(self, worker, threads: TaskThreads):
        self.worker = worker
        self.threads = threads
        self.executing: dict = {}
        self.tasks_running = threading.Event()
        self._sync_running = 0
        self._functions: OrderedDict = OrderedDict()  # pickled function -> function

    # ------------------------------------------------------------ loading

    def load(self, run_spec, data):
        """``(func, args, kwargs)`` of a task from its run spec and the
        worker's ``data`` (its dependencies' values)."""
        if len(run_spec) == 3:
            # ("graph-part", part, index): node ``index`` of a part of a dask
            # graph, which is the value of the dependency ``part``
            _, part, index = run_spec
            func = data[part][index]
            return func, ({d: data[d] for d in func.dependencies},), {}
        func_payload, args_payload = run_spec
        args, kwargs = loads_args(args_payload, data)
        return self._function(func_payload), args, kwargs

    def forget_functions(self) -> None:
        """Unpickle task functions afresh from now on (a module they come
        from was uploaded again)."""
        self._functions.clear()

    def _function(self, payload: bytes):
        func = self._functions.get(payload)
        if func is None:
            func = deserialize_function(payload)
            self._functions[payload] = func
            if len(self._functions) > 256:
                self._functions.popitem(last=False)
        return func

    # ------------------------------------------------------------ running

    async def run(self, nursery: trio.Nursery, key, func, args, kwargs, is_async: bool,
                  deadline: float | None = None):
        """Run one task to its end; returns ``(status, value, duration,
        execution)``, status "ok", "error" (value is the exception) or
        "cancelled", or "timed-out" for a run stopped past its ``deadline``
        (seconds) that raised nothing of its own (what it returned is dropped)."""
        execution = Execution(key, is_async)
        self.executing[key] = execution
        context = TaskContext(self.worker, key, execution)
        timer = (await nursery.start(self._enforce_deadline, execution, deadline)
                 if deadline else None)
        try:
            if is_async:
                status, value, duration = await _run_async(execution, context, func, args,
                                                           kwargs)
            else:
                status, value, duration = await self._run_sync(execution, context, func, args,
                                                               kwargs)
        finally:
            if timer is not None:
                timer.cancel()
            if self.executing.get(key) is execution:
                del self.executing[key]
        if execution.timed_out and status != "error":
            # whatever it produced, or whether it stopped at a checkpoint: the
            # worker's state turns this into the task's TimeoutError
            status, value = "timed-out", None
        return status, value, duration, execution

    async def _run_sync(self, execution, context, func, args, kwargs):
        self._sync_running += 1
        self.tasks_running.set()
        try:
            return await self.threads.run(
                partial(_run_in_thread, execution, context, func, args, kwargs))
        finally:
            self._sync_running -= 1
            if not self._sync_running:
                self.tasks_running.clear()

    def cancel(self, key) -> None:
        """Stop the run of ``key``, if one runs: an async task at once, a sync
        one at its next ``checkpoint()``."""
        execution = self.executing.get(key)
        if execution is None:
            return
        execution.cancelled = True
        if execution.cancel_scope is not None:
            execution.cancel_scope.cancel()

    def cancel_all(self) -> None:
        for key in list(self.executing):
            self.cancel(key)

    async def _enforce_deadline(self, execution: Execution, seconds: float,
                                task_status=trio.TASK_STATUS_IGNORED):
        """Stop ``execution`` once it has run for ``seconds`` (as a cancel)."""
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await trio.sleep(seconds)
            execution.timed_out = True
            self.cancel(execution.key)

    # ------------------------------------------------------------ looking at runs

    def sync_running(self) -> list:
        """Keys of the sync tasks whose threads are still running."""
        return [e.key for e in self.executing.values() if not e.is_async and not e.thread_done]

    async def wait_for_threads(self, grace: float) -> list:
        """Wait up to ``grace`` seconds for the sync tasks' threads to end;
        returns the keys of those still running (a thread cannot be killed)."""
        with trio.move_on_after(grace):
            while self.sync_running():
                await trio.sleep(0.01)
        return self.sync_running()

    def task_threads(self) -> list:
        """(thread id, key prefix, boundary) of the sync tasks running now;
        called from the profiler's sampling thread."""
        return [(execution.thread_id, key_prefix(key), _run_in_thread.__code__)
                for key, execution in list(self.executing.items())
                if execution.thread_id and not execution.thread_done]

    def call_stacks(self, keys=None) -> dict:
        """The current stack of each running task (sync tasks: their thread's)."""
        frames = sys._current_frames()
        stacks = {}
        for key, execution in list(self.executing.items()):
            if keys is not None and key not in keys:
                continue
            frame = frames.get(execution.thread_id) if execution.thread_id else None
            stacks[key] = (traceback.format_stack(frame) if frame is not None
                           else ["async task: awaiting in the worker's event loop"])
        return stacks


def deserialize_function(payload: bytes):
    import pickle
    return pickle.loads(payload)


def without_own_frame(exc: BaseException) -> BaseException:
    """The traceback from the user's function on, without trioflow's frames
    that called it (this module's and the asyncio bridge's)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and \
            tb.tb_frame.f_code.co_filename in _CALLER_FILES:
        tb = tb.tb_next
    return exc.with_traceback(tb)


_CALLER_FILES = frozenset({__file__, run_coroutine.__code__.co_filename})


async def _run_async(execution: Execution, context: TaskContext, func, args, kwargs):
    token = set_async_task(context)
    start = time.perf_counter()
    try:
        with trio.CancelScope() as scope:
            execution.cancel_scope = scope
            if execution.cancelled:
                scope.cancel()
            try:
                result = await run_coroutine(func(*args, **kwargs))
                return "ok", result, time.perf_counter() - start
            except BaseException as exc:  # SystemExit too: it errs the future, as in dask
                if carries_cancel(exc):
                    raise
                return "error", without_own_frame(exc), time.perf_counter() - start
        return "cancelled", None, time.perf_counter() - start
    finally:
        reset_async_task(token)


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

"""Threads that run a worker's sync tasks.

A thread returns itself to the idle list *before* it reports its result, so
the next task (started when the result arrives) reuses it instead of
starting a new thread.  There is no size limit: the worker's slot accounting
decides how many tasks run, and a seceded task keeps its thread while the
slot goes to another task.  ``shutdown`` ends the idle threads and lets busy
ones end after their current task.

Whatever ``fn`` does, its thread survives and the caller hears of it: the
call's outcome (a value, or any exception, ``SystemExit`` and
``KeyboardInterrupt`` included) is captured with ``outcome`` and re-raised
in the caller, never left to end the thread with the caller waiting forever.
"""
from __future__ import annotations

import itertools
import queue
import threading

import outcome
import trio

_ids = itertools.count()


class _TaskThread:
    def __init__(self, pool: "TaskThreads"):
        self.pool = pool
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, daemon=True,
                                       name=f"{pool.name}-{next(_ids)}")
        self.thread.start()

    def _loop(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            fn, deliver = job
            result = outcome.capture(fn)
            # an idle thread keeps nothing of its last task alive
            del job, fn
            keep_running = self.pool._return_idle(self)
            deliver(result)
            del result, deliver
            if not keep_running:
                return


class TaskThreads:
    def __init__(self, name: str = "trioflow-task"):
        self.name = name
        self._lock = threading.Lock()
        self._idle: list[_TaskThread] = []
        self._all: set[_TaskThread] = set()
        self._closed = False

    def _return_idle(self, thread: _TaskThread) -> bool:
        with self._lock:
            if self._closed:
                self._all.discard(thread)
                return False
            self._idle.append(thread)
            return True

    async def run(self, fn):
        """Run ``fn()`` in a pool thread; return what it returns, or raise what
        it raised (any BaseException).  If the caller is cancelled, the
        thread is abandoned and its outcome dropped."""
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        box = []

        def deliver(result):
            def set_result():
                box.append(result)
                done.set()
            try:
                token.run_sync_soon(set_result)
            except trio.RunFinishedError:
                pass

        with self._lock:
            if self._closed:
                raise RuntimeError("the worker's task threads are shut down")
            thread = self._idle.pop() if self._idle else None
            if thread is None:
                thread = _TaskThread(self)
                self._all.add(thread)
        thread.jobs.put((fn, deliver))
        await done.wait()
        return box[0].unwrap()

    def busy(self) -> int:
        with self._lock:
            return len(self._all) - len(self._idle)

    def shutdown(self) -> None:
        """Stop idle threads (joined) and mark busy ones to stop after their task."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            for thread in idle:
                self._all.discard(thread)
        for thread in idle:
            thread.jobs.put(None)
        for thread in idle:
            thread.thread.join()

"""Which worker and task the current code runs in (for get_worker, secede...).

Sync tasks run in threads: a thread-local says which.  Async tasks run in the
worker's trio loop: a context variable says which."""
from __future__ import annotations

import contextvars
import threading

_thread = threading.local()
_task_var: contextvars.ContextVar = contextvars.ContextVar("trioflow_task", default=None)


class TaskContext:
    __slots__ = ("worker", "key", "execution")

    def __init__(self, worker, key, execution):
        self.worker = worker
        self.key = key
        self.execution = execution


def current_task() -> TaskContext | None:
    ctx = getattr(_thread, "task", None)
    if ctx is not None:
        return ctx
    return _task_var.get()


def set_thread_task(ctx: TaskContext | None):
    _thread.task = ctx


def set_async_task(ctx: TaskContext | None):
    return _task_var.set(ctx)


def reset_async_task(token) -> None:
    """Undo the ``set_async_task`` that returned ``token``."""
    _task_var.reset(token)

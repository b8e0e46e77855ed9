"""What a running task can do about the worker it runs on: ``get_worker``,
``secede``/``rejoin`` and ``checkpoint`` (re-exported by
``trioflow.task_context``; ``get_client`` and ``worker_client`` are the
client layer's, in ``trioflow.client.task_context``).

Sync tasks run in threads and reach the worker's loop through trio's
``from_thread``; ``async def`` tasks run in the worker's loop and call it
directly.
"""
from __future__ import annotations

import trio

from trioflow.server.context import TaskContext, current_task
from trioflow.server.execution import TaskCancelled


def task_context() -> TaskContext:
    """The running task's context; ValueError outside a task."""
    ctx = current_task()
    if ctx is None:
        raise ValueError("not inside a trioflow task: no worker found")
    return ctx


def in_worker_loop(ctx: TaskContext) -> bool:
    """True when called from the worker's own trio loop (an async task)."""
    try:
        return trio.lowlevel.current_trio_token() is ctx.worker.trio_token
    except RuntimeError:
        return False


def get_worker():
    """The Worker running the current task."""
    return task_context().worker


def secede():
    """Give the current task's execution slot back to the worker, so other
    tasks can run while this one waits (e.g. on tasks it submitted).  The
    task keeps running; ``rejoin()`` takes a slot again."""
    ctx = task_context()
    if in_worker_loop(ctx):
        ctx.worker.secede_task(ctx.key)
    else:
        trio.from_thread.run_sync(ctx.worker.secede_task, ctx.key,
                                  trio_token=ctx.worker.trio_token)


def rejoin():
    """Wait for a free execution slot after ``secede()``.  In an ``async def``
    task this returns an awaitable: ``await rejoin()``."""
    ctx = task_context()
    if in_worker_loop(ctx):
        return ctx.worker.rejoin_task(ctx.key)
    trio.from_thread.run(ctx.worker.rejoin_task, ctx.key, trio_token=ctx.worker.trio_token)


def checkpoint():
    """A point where a running task stops if its future was cancelled (or its
    deadline passed): raises inside the task, which then ends without a result.
    Call it in long loops of sync tasks; ``async def`` tasks are cancelled at
    any ``await`` and need it only in CPU-bound loops."""
    ctx = current_task()
    if ctx is not None and ctx.execution.cancelled:
        raise TaskCancelled(f"task {ctx.key!r} was cancelled")

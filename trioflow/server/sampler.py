"""The sampling thread behind a server's statistical profile.

Every ``interval`` seconds it takes the stacks of the server's event-loop
thread and of the threads running sync tasks, and counts them into the
server's ``Profiler`` (see ``trioflow.profiling``).  It is a thread, not a
trio task, because a task cannot see the loop's stack from inside it; it is
owned by the server's nursery and stops within one interval of the server
closing.

``TRIOFLOW_PROFILE_INTERVAL`` sets the interval in seconds (default 0.01, as
dask's); 0 turns sampling off.

A thread that wakes 100 times a second takes the GIL from the event loop as
often: measured in one process with a scheduler and two workers, that cost
8% of round-trip latency and 12% of task throughput.  So by default a worker
samples only while sync tasks run (the thread sleeps on an event the worker
sets), and nothing samples the event loops themselves;
``TRIOFLOW_PROFILE_SERVERS=1`` turns on continuous sampling of the loops,
for ``profile(server=True)`` and ``profile(scheduler=True)``.
"""
from __future__ import annotations

import os
import sys
import threading
from functools import partial

import trio

from trioflow.profiling import INTERVAL, Profiler, stack

ENV_VAR = "TRIOFLOW_PROFILE_INTERVAL"
SERVERS_ENV_VAR = "TRIOFLOW_PROFILE_SERVERS"


def profile_servers(environ=os.environ) -> bool:
    """Whether the servers' own event loops are sampled."""
    return environ.get(SERVERS_ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def require_server_profiles() -> None:
    if not profile_servers():
        raise RuntimeError(f"the servers' event loops are not being profiled: start the "
                           f"scheduler and workers with {SERVERS_ENV_VAR}=1 (it costs "
                           "some latency), then ask again")


def sampling_interval(environ=os.environ) -> float:
    text = environ.get(ENV_VAR, "")
    try:
        return max(0.0, float(text)) if text.strip() else INTERVAL
    except ValueError:
        raise ValueError(f"{ENV_VAR}={text!r}: give the seconds between samples, "
                         "or 0 to turn sampling off") from None


async def sample(profiler: Profiler, task_threads=None, interval: float | None = None,
                 *, tasks_running: threading.Event | None = None, sample_loop: bool = True):
    """Sample until cancelled.  ``task_threads()`` (if given; called in the
    sampling thread) lists ``(thread id, key prefix, boundary code)`` for the sync
    tasks running now; frames from ``boundary`` outwards are the worker's,
    not the task's, and are left out.  Without ``sample_loop`` the thread
    sleeps while ``tasks_running`` is clear."""
    interval = sampling_interval() if interval is None else interval
    if interval <= 0 or (not sample_loop and tasks_running is None):
        return  # nothing to sample
    loop_thread = threading.get_ident()
    stop = threading.Event()

    def sample_once():
        # every frame reference stays local to this call: a frame kept past
        # the sample would keep its task's locals (and what they hold) alive
        frames = sys._current_frames()
        try:
            loop_frame = frames.get(loop_thread) if sample_loop else None
            if loop_frame is not None:
                profiler.record(None, stack(loop_frame))
            for thread_id, prefix, boundary in task_threads() if task_threads else ():
                frame = frames.get(thread_id)
                task_stack = stack(frame, boundary) if frame is not None else None
                if task_stack is not None:
                    profiler.record(prefix, task_stack)
        finally:
            frames.clear()

    def sample_until_stopped():
        while True:
            if not sample_loop:
                tasks_running.wait()
            if stop.wait(interval):
                return
            sample_once()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.to_thread.run_sync, sample_until_stopped))
        try:
            await trio.sleep_forever()
        finally:
            stop.set()
            if tasks_running is not None:
                tasks_running.set()  # the thread may be waiting for tasks

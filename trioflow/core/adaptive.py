"""How many workers the load asks for, and which workers can go: the
scheduler's side of ``cluster.adapt()`` (sans-I/O: it reads the state only).

The rules are dask's:

- the work a cluster holds is the expected run time of every task being
  processed plus every task waiting for a thread or for a worker that fits
  (each task's expected time is the average of its key prefix's finished
  tasks, half a second while none has finished); a cluster wants enough
  threads to get through it in ``target_duration``, but never more threads
  than there are such tasks, so a few long tasks do not ask for many cores;
- threads are turned into workers with the workers' average thread count;
- a cluster whose workers hold more than 60% of their memory limit wants
  twice as many workers;
- below the current size, only workers that may close count against it:
  idle ones (nothing processing), those holding the least data first, and
  only while the others keep room (twice the data) for what they hold.
"""
from __future__ import annotations

import math

#: dask looks at this many waiting tasks and scales up their sum
_SAMPLE = 100


def adaptive_target(state, target_duration: float) -> int:
    """The number of workers the current load asks for."""
    if target_duration <= 0:
        raise ValueError(f"target_duration must be > 0 seconds, not {target_duration!r}")
    workers = list(state.workers.values())
    waiting = [*state.queued_set, *state.unrunnable]
    sample = waiting[:_SAMPLE]
    waiting_time = sum(state.expected_duration(ts) for ts in sample)
    if len(waiting) > _SAMPLE:
        waiting_time *= len(waiting) / _SAMPLE
    processing_time = sum(state.expected_duration(ts) for ws in workers for ts in ws.processing
                          if ts not in ws.long_running)
    cpu = math.ceil((processing_time + waiting_time) / target_duration)
    # no more threads than there are tasks to run
    tasks = len(waiting) + sum(len(ws.processing) for ws in workers)
    cpu = min(cpu, tasks)
    if workers:
        threads = sum(ws.nthreads for ws in workers)
        cpu = math.ceil(cpu / max(threads, 1) * len(workers))
    elif waiting:
        cpu = max(1, cpu)
    limit = sum(ws.memory_limit or 0 for ws in workers)
    used = sum(ws.nbytes for ws in workers)
    memory = 2 * len(workers) if limit > 0 and used > 0.6 * limit else 0
    target = max(memory, cpu)
    if target >= len(workers):
        return target
    return len(workers) - len(workers_to_close(state, target=target))


def workers_to_close(state, target: int | None = None, n: int | None = None,
                     memory_ratio: float | None = None, attribute: str = "address") -> list:
    """Idle workers that could close now: ``n`` of them at most, or as many
    as leave ``target``; given neither, as many as leave the others
    ``memory_ratio`` (2) times the memory the cluster's data takes (a
    ``memory_ratio`` given counts in every case); never the last worker
    while the cluster holds data.  ``attribute``: what to
    return of each (``"address"`` or ``"name"``)."""
    workers = list(state.workers.values())
    if target is not None and n is None:
        n = len(workers) - target
    if n is not None:
        n = max(0, n)
    elif memory_ratio is None:
        memory_ratio = 2.0
    idle = [ws for ws in workers if not ws.processing]
    # fewest bytes first: the cheapest to move
    idle.sort(key=lambda ws: (ws.nbytes, -_order(ws.name)))
    total = sum(ws.nbytes for ws in workers)
    limit = sum(ws.memory_limit or 0 for ws in workers)
    if total:  # the data needs somewhere to go: one worker stays
        n = min(len(workers) - 1, len(workers) if n is None else n)
    closing = []
    for ws in idle:
        if n is not None and len(closing) >= n:
            break
        limit -= ws.memory_limit or 0
        if memory_ratio is not None and limit < memory_ratio * total:
            break
        closing.append(ws)
    return [getattr(ws, attribute) for ws in closing]


def bounded_reply(target: int, state, minimum=None, maximum=None) -> dict:
    """What ``cluster.adapt()`` asks for: the target within its bounds, and the
    names of the workers that could go to reach it."""
    target = max(minimum or 0, target if maximum is None else min(maximum, target))
    return {"target": target,
            "close": workers_to_close(state, target=target, attribute="name")}


def _order(name) -> float:
    """Newest (highest numbered) workers close first among equals."""
    return name if isinstance(name, (int, float)) else -1

"""Work stealing as a pure function: which tasks assigned to busy workers
should move to idle ones.

The rule is the one dask's work-stealing documentation gives. Moving a task
costs the transfer of the dependencies the thief lacks; it pays if that is
small against the task's compute time. With ``transfer = latency + bytes the
thief lacks / bandwidth`` the *cost multiplier* is ``1 + transfer /
compute``; a task whose multiplier is above ``MAX_MULTIPLIER`` is never
moved. A move from victim to thief is made when the thief, with the task at
its cost, would still be less busy than the victim is without it:
``thief + compute * multiplier < victim - compute``, occupancy being the
seconds of work a worker has per thread. Only tasks that have not started
(``executing_on`` is None) and are not pinned (``worker_restrictions``,
``resources``, actors) may move, and only to a running worker; a paused or
retiring worker starts nothing new, so all its unstarted tasks may leave it.
Nothing here recurses or does I/O; the
scheduler decides when to ask and carries the moves out.
"""
from __future__ import annotations

from itertools import islice

#: the expected run time of a task whose prefix has never finished (dask's
#: distributed.scheduler.unknown-task-duration)
UNKNOWN_TASK_DURATION = 0.5
#: a task whose transfer would cost more than this many times its compute
#: time stays where it is (dask's levels end at 100)
MAX_MULTIPLIER = 100.0
#: tasks of one victim looked at per plan: a worker holding 100k assigned
#: tasks is relieved a slice at a time instead of sorted whole every tick
MAX_CANDIDATES = 2000


def steal_moves(workers, duration, bandwidth: float = 100e6, latency: float = 0.01) -> list[tuple]:
    """``[(task, victim, thief), ...]`` for ``workers`` (objects with
    ``address``, ``nthreads``, ``processing``: the tasks assigned there).
    ``duration(task)`` is the expected compute time of a task in seconds.
    Busiest victims give first, their cheapest-to-move tasks first, each to
    the currently least busy worker; occupancies are updated as moves are
    planned, so the plan never makes a thief busier than its victim."""
    # seceded and async tasks hold no thread: they neither load a worker nor move
    load = {ws: sum(duration(ts) for ts in ws.processing if ts not in ws.long_running)
            for ws in workers}

    def occupancy(ws) -> float:
        return load[ws] / max(ws.nthreads, 1)

    moves = []
    for victim in sorted(workers, key=lambda w: (-occupancy(w), w.address)):
        # a paused or retiring worker starts nothing new: all it has may go
        keep = len(victim.processing) - len(victim.long_running) - (
            victim.nthreads if _running(victim) else 0)
        if keep <= 0:
            continue  # every task it has is running or about to: nothing to give
        candidates = islice((ts for ts in victim.processing
                             if _movable(ts) and ts not in victim.long_running), MAX_CANDIDATES)
        stealable = sorted(candidates, key=lambda t: (-duration(t), str(t.key)))
        for ts in stealable:
            if keep <= 0:
                break
            compute = duration(ts)
            if compute <= 0:
                continue
            thief = min((w for w in workers if w is not victim and _running(w)),
                        key=lambda w: (occupancy(w), w.address), default=None)
            if thief is None:
                return moves
            transfer = latency + _missing_bytes(ts, thief) / bandwidth
            multiplier = 1 + transfer / compute
            if multiplier > MAX_MULTIPLIER:
                continue
            victim_after = (load[victim] - compute) / max(victim.nthreads, 1)
            thief_after = (load[thief] + compute * multiplier) / max(thief.nthreads, 1)
            if thief_after >= victim_after:
                continue
            moves.append((ts, victim, thief))
            keep -= 1
            load[victim] -= compute
            load[thief] += compute * multiplier
    return moves


def could_steal(workers) -> bool:
    """Whether ``steal_moves`` could find anything: some worker has a free
    thread while another has more tasks than threads.  O(workers), so the
    scheduler can ask often and plan only when it pays."""
    idle = surplus = False
    for ws in workers:
        busy = len(ws.processing) - len(ws.long_running)
        if not _running(ws):
            surplus = surplus or busy > 0
        elif busy < ws.nthreads:
            idle = True
        elif busy > ws.nthreads:
            surplus = True
    return idle and surplus


def _running(ws) -> bool:
    """Takes new tasks: not paused for memory, not retiring."""
    return getattr(ws, "status", "running") == "running"


def _movable(ts) -> bool:
    return (getattr(ts, "executing_on", None) is None and not getattr(ts, "worker_restrictions", None)
            and not getattr(ts, "resources", None) and not getattr(ts, "actor", False))


def _missing_bytes(ts, thief) -> int:
    return sum(d.nbytes for d in ts.dependencies if thief not in d.who_has)

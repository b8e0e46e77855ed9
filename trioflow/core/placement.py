"""Where tasks run and where data goes: pure functions of the scheduler's
records, no state of their own.

A task with dependencies goes to the running worker that already holds the
most bytes of them (less a penalty for a long backlog), else to the least
occupied one; ``workers=`` narrows the choice (only a preference with
``allow_other_workers``) and ``resources`` are hard limits.  A task with no
placement constraint and no real dependencies ("root-ish") is queued on the
scheduler and handed to the least busy worker that has room.

The plans (``rebalance_plan``, ``replicate_plan``, ``retire_plan``) say
which copies to make; the shell carries them out.
"""
from __future__ import annotations

import math
from collections import defaultdict

from trioflow.core.records import TaskState, WorkerState

#: a task prefix whose runs take less than this many seconds is "tiny": more
#: of them are kept in flight per thread to hide a scheduler round trip
TINY_TASK = 0.005


def is_rootish(ts: TaskState) -> bool:
    """Queued on the scheduler (not sent at once) when every worker is busy."""
    # async tasks wait on I/O, not CPU: thousands may share a worker, so they
    # are not held back by the per-thread in-flight limit.  The part of a dask
    # graph a task was packed in (client/graphs.py) does not tie it to a
    # worker: such tasks queue as if they had no dependencies
    return (not ts.worker_restrictions and not ts.resources and not ts.is_async
            and all(d.prefix == "graph-part" for d in ts.dependencies))


def has_room(ws: WorkerState, ts: TaskState, prefix_duration: dict) -> bool:
    """Whether ``ws`` may be sent one more task like ``ts`` now."""
    duration = prefix_duration.get(ts.prefix)
    if duration is None or duration >= TINY_TASK:
        per_thread = 1.0
    else:
        per_thread = 1 + min(50, int(TINY_TASK / max(duration, 1e-5)))
    limit = max(1, math.ceil(ws.nthreads * per_thread))
    return len(ws.processing) - len(ws.long_running) < limit


def least_busy_with_room(workers, ts: TaskState, prefix_duration: dict) -> WorkerState | None:
    """The least occupied running worker of ``workers`` with room for ``ts``."""
    best = None
    for ws in workers:
        if ws.status == "running" and has_room(ws, ts, prefix_duration) and (
                best is None or ws.occupancy < best.occupancy):
            best = ws
    return best


def candidates(workers, ts: TaskState) -> list[WorkerState]:
    """The workers of ``workers`` that ``ts`` may run on now."""
    # a paused worker gets no new task until its memory drops
    allowed = [ws for ws in workers if ws.status == "running"]
    # resources are hard limits; loose worker restrictions only a preference
    # among the workers that fit, else a preferred worker lacking the
    # resource would leave the task no-worker while another one could run it
    if ts.resources:
        allowed = [ws for ws in allowed
                   if all(ws.resources.get(r, 0) >= amount for r, amount in ts.resources.items())]
    if ts.worker_restrictions:
        restricted = [ws for ws in allowed if ws.address in ts.worker_restrictions
                      or ws.name in ts.worker_restrictions
                      or host(ws.address) in ts.worker_restrictions]
        if restricted or not ts.allow_other_workers:
            allowed = restricted
    return allowed


def decide_worker(workers, ts: TaskState) -> WorkerState | None:
    """Where ``ts`` runs, among ``workers``; None if none may run it."""
    allowed = candidates(workers, ts)
    if not allowed:
        return None
    if len(allowed) == 1:
        return allowed[0]
    if ts.dependencies:
        local_bytes: dict[WorkerState, int] = defaultdict(int)
        allowed_set = set(allowed)
        for dep in ts.dependencies:
            for holder in dep.who_has:
                if holder in allowed_set:
                    local_bytes[holder] += dep.nbytes
        if local_bytes:
            return max(allowed, key=lambda ws: (local_bytes.get(ws, 0) - transfer_penalty(ws),
                                                -ws.occupancy))
    return min(allowed, key=lambda ws: ws.occupancy)


def transfer_penalty(ws: WorkerState) -> float:
    # a busy worker's local bytes are worth less: prefer moving small data to
    # an idle worker over queueing behind a long backlog
    return ws.occupancy * 1_000_000


def host(address: str) -> str:
    """The host part of a worker address (``ws://host:port`` -> ``host``)."""
    rest = address.split("://", 1)[-1]
    return rest.rsplit(":", 1)[0]


# ------------------------------------------------------------------ data plans

def rebalance_plan(tasks: dict, workers: dict, keys=None, pool=None) -> list[tuple]:
    """Moves ``(key, sender, recipient)`` that even out the bytes of ``keys``
    (default: all in memory) across the workers named in ``pool`` (default:
    all).  Actors stay on their worker."""
    chosen = [workers[w] for w in (pool or workers) if w in workers]
    if len(chosen) < 2:
        return []
    in_scope = [tasks[k] for k in (keys if keys is not None else tasks)
                if k in tasks and tasks[k].state == "memory" and not tasks[k].actor]
    load = {ws: 0 for ws in chosen}
    held: dict = {ws: [] for ws in chosen}
    for ts in in_scope:
        for ws in ts.who_has:
            if ws in load:
                load[ws] += ts.nbytes
                held[ws].append(ts)
    mean = sum(load.values()) / len(chosen)
    moves = []
    moved = set()  # a key held twice moves once: two senders must not pick one recipient
    for sender in sorted(chosen, key=load.get, reverse=True):
        for ts in sorted(held[sender], key=lambda t: t.nbytes, reverse=True):
            if load[sender] <= mean:
                break
            recipient = min(chosen, key=load.get)
            if (ts in moved or recipient in ts.who_has
                    or load[recipient] + ts.nbytes > load[sender]):
                continue
            moved.add(ts)
            moves.append((ts.key, sender.address, recipient.address))
            load[sender] -= ts.nbytes
            load[recipient] += ts.nbytes
    return moves


def replicate_plan(tasks: dict, workers: dict, keys, n=None, pool=None) -> dict:
    """``{worker: {key: [holder, ...]}}``: the copies that put each of ``keys``
    on ``n`` of the workers named in ``pool`` (default: all; ``n`` None: all
    of them), each copy going to the pool worker holding fewest of the keys
    so far.  Keys held nowhere are left out."""
    chosen = list(pool) if pool else list(workers)
    target = len(chosen) if n is None else min(n, len(chosen))
    holders_of = {k: [ws.address for ws in tasks[k].who_has] if k in tasks else [] for k in keys}
    load = {w: 0 for w in chosen}
    for holders in holders_of.values():
        for w in holders:
            if w in load:
                load[w] += 1
    plan: dict = {}
    for key, holders in holders_of.items():
        if not holders:
            continue
        have = [w for w in holders if w in load]
        for w in sorted((w for w in chosen if w not in holders), key=load.get):
            if len(have) >= target:
                break
            plan.setdefault(w, {})[key] = list(holders)
            have.append(w)
            load[w] += 1
    return plan


def retire_plan(workers: dict, retiring) -> dict:
    """``{retiring worker: (recipient, [key, ...])}``: where the keys that only
    a retiring worker holds go before it closes, each batch to the staying
    worker with the fewest bytes (counting the batches planned before it)."""
    retiring = [a for a in retiring if a in workers]
    staying = [ws for a, ws in workers.items() if a not in retiring]
    if retiring and not staying:
        raise ValueError("cannot retire every worker: the data would have nowhere to go")
    planned = {ws: ws.nbytes for ws in staying}
    plan = {}
    for address in retiring:
        ws = workers[address]
        only_here = [ts for ts in ws.has_what if ts.who_has == {ws}]
        if only_here:
            recipient = min(staying, key=planned.get)
            planned[recipient] += sum(ts.nbytes for ts in only_here)
            plan[address] = (recipient.address, [ts.key for ts in only_here])
    return plan

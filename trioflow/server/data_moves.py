"""Requests that move data between workers: rebalance, replicate, retire.

The core plans each move (core/placement.py); these shells ask the
receiving worker to fetch the keys and tell the core what arrived.  Each
takes the scheduler as its first argument, like the scheduler's own request
handlers.
"""
from __future__ import annotations

import trio

from trioflow.core import events as ev
from trioflow.server.stimuli import new_stimulus_id

# retirement copies what only the retiring workers hold, then looks again:
# tasks that finished there meanwhile left new results to copy
RETIRE_COPY_ROUNDS = 5
RETIRE_CLOSE_TIMEOUT = 30


async def rebalance(scheduler, client_id, msg):
    """Even out memory: each planned key moves from a sender to a recipient."""
    moves = scheduler.state.rebalance_plan(msg.get("keys"), msg.get("workers"))
    by_pair: dict = {}
    for key, sender, recipient in moves:
        by_pair.setdefault((sender, recipient), []).append(key)
    moved = 0
    for (sender, recipient), keys in by_pair.items():
        got = await _copy(scheduler, recipient, {k: [sender] for k in keys}, "rebalance")
        for key in got:
            scheduler.stimulus(ev.ReplicaDropped(sender, key, new_stimulus_id("rebalance")))
            moved += 1
    return moved


async def replicate(scheduler, client_id, msg):
    """Copy ``keys`` until each is on ``n`` of ``workers``."""
    plan = scheduler.state.replicate_plan(msg["keys"], msg.get("n"), msg.get("workers"))
    async with trio.open_nursery() as nursery:
        for address, who_has in plan.items():
            # the worker reports its new replicas itself (add-keys)
            nursery.start_soon(scheduler.worker_connection(address).request,
                               {"op": "replicate", "who_has": who_has})
    return True


async def retire(scheduler, client_id, msg):
    """Retire workers gracefully: mark them ``closing_gracefully`` (no new
    tasks; their unstarted ones move to running workers at the next stealing
    tick), copy the keys only they hold to the others, then close them
    unless ``close`` is false.  Their leaving counts no task deaths.
    Returns the retired workers' info."""
    state = scheduler.state
    retiring = [a for a in dict.fromkeys(msg.get("workers") or []) if a in state.workers]
    state.retire_plan(retiring)  # refuses retiring every worker before anything changes
    info = {a: scheduler.identity()["workers"][a] for a in retiring}
    stimulus_id = new_stimulus_id("retire")
    for address in retiring:
        scheduler.stimulus(ev.WorkerStatusChanged(address, "closing_gracefully", stimulus_id))
    for _ in range(RETIRE_COPY_ROUNDS):
        plan = state.retire_plan([a for a in retiring if a in state.workers])
        if not plan:
            break
        for address, (target, keys) in plan.items():
            if address in state.workers and target in state.workers:
                await _copy(scheduler, target, {k: [address] for k in keys}, "retire")
    if msg.get("close", True):
        for address in retiring:
            worker = scheduler.worker_comms.get(address)
            if worker is not None:
                worker.send({"op": "close", "reason": "retired"})
        with trio.move_on_after(RETIRE_CLOSE_TIMEOUT):
            while set(retiring) & set(state.workers):
                await scheduler.worker_set_changed()
    return info


async def _copy(scheduler, recipient: str, who_has: dict, why: str) -> dict:
    # told here as well as by the worker's add-keys, so that the core knows
    # of the copy before anything that depends on it (a drop, a close)
    got = await scheduler.worker_connection(recipient).request(
        {"op": "replicate", "who_has": who_has})
    scheduler.stimulus(ev.ReplicaAdded(recipient, dict(got), new_stimulus_id(why)))
    return got

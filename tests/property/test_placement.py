"""Properties of placement (``core/placement.py``) over random clusters:
workers with random threads, status, names, resources and assigned tasks;
tasks with random restrictions, resources and dependencies held by random
workers.  Each property is checked against a plain-Python statement of the
rule, not against the function's own arithmetic.

* ``candidates``: only running workers, every one with the resources; with
  ``workers=`` only those named (address, name or host) unless none is and
  ``allow_other_workers`` lets any fitting worker run it;
* ``decide_worker``: None exactly when there is no candidate; otherwise a
  candidate; among idle candidates one holding the most dependency bytes;
  with no dependency held by a candidate, a least occupied one;
* ``least_busy_with_room``: a running worker with room and no running worker
  with room is less occupied; None exactly when none has room; a worker
  has room for a task of unknown or normal duration while fewer tasks than
  threads run on it (seceded ones not counted), and for tiny tasks more
  (up to 51 a thread);
* ``rebalance_plan``: each move takes a key from a holder to a non-holder,
  never an actor, and no key moves twice; replayed, the moves
  keep the total and never make the most loaded worker more loaded;
* ``replicate_plan``: copies go only to pool workers lacking the key, name
  its holders, and leave each held key on ``n`` pool workers (or as many as
  it had, or the whole pool); keys held nowhere get none;
* ``retire_plan``: each retiring worker's batch is exactly the keys only it
  holds, to a staying worker, the first to the one with the fewest bytes;
  retiring every worker is refused.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioflow.core import placement
from trioflow.core.records import TaskState, WorkerState

pytestmark = pytest.mark.timeout(120)

RESOURCES = ("GPU", "MEM")


@st.composite
def workers_st(draw, min_size=1):
    workers = []
    for i in range(draw(st.integers(min_size, 5))):
        host = draw(st.sampled_from(["10.0.0.1", "10.0.0.2"]))
        resources = {r: draw(st.integers(1, 4)) for r in draw(st.sets(st.sampled_from(RESOURCES)))}
        ws = WorkerState(f"ws://{host}:{4000 + i}", draw(st.integers(1, 4)),
                         name=draw(st.sampled_from([None, f"alice-{i}", "bob"])),
                         resources=resources)
        ws.status = draw(st.sampled_from(["running", "running", "paused"]))
        for j in range(draw(st.integers(0, 6))):
            busy = TaskState(f"busy-{i}-{j}")
            ws.processing.add(busy)
            if draw(st.integers(0, 3)) == 0:
                ws.long_running.add(busy)
        workers.append(ws)
    return workers


@st.composite
def task_st(draw, workers):
    ts = TaskState(draw(st.sampled_from(["inc-1", "sum-2", "graph-part-3"])))
    if draw(st.booleans()):
        names = [ws.address for ws in workers] + [ws.name for ws in workers] + [
            "10.0.0.1", "ws://elsewhere:1"]
        ts.worker_restrictions = set(draw(st.sets(st.sampled_from(names), min_size=1)))
        ts.allow_other_workers = draw(st.booleans())
    if draw(st.booleans()):
        ts.resources = {r: draw(st.integers(1, 3))
                        for r in draw(st.sets(st.sampled_from(RESOURCES), min_size=1))}
    deps = set()
    for i in range(draw(st.integers(0, 4))):
        dep = TaskState(f"dep-{i}")
        dep.nbytes = draw(st.integers(0, 10**6))
        dep.who_has = frozenset(draw(st.sets(st.sampled_from(workers))))
        deps.add(dep)
    ts.dependencies = deps
    return ts


@st.composite
def clusters(draw):
    workers = draw(workers_st())
    return workers, draw(task_st(workers))


def _fits(ws, ts):
    return all(ws.resources.get(r, 0) >= n for r, n in (ts.resources or {}).items())


def _named(ws, ts):
    host = ws.address.split("://")[1].split(":")[0]
    return bool({ws.address, ws.name, host} & ts.worker_restrictions)


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_candidates_honour_status_resources_and_restrictions(cluster):
    workers, ts = cluster
    chosen = placement.candidates(workers, ts)
    fitting = [ws for ws in workers if ws.status == "running" and _fits(ws, ts)]
    if not ts.worker_restrictions:
        assert chosen == fitting
        return
    named = [ws for ws in fitting if _named(ws, ts)]
    if named or not ts.allow_other_workers:
        assert chosen == named
    else:
        assert chosen == fitting


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_decide_worker_picks_a_candidate_near_its_data(cluster):
    workers, ts = cluster
    chosen = placement.candidates(workers, ts)
    ws = placement.decide_worker(workers, ts)
    if not chosen:
        assert ws is None
        return
    assert ws in chosen
    local = {w: sum(d.nbytes for d in ts.dependencies if w in d.who_has) for w in chosen}
    if not any(w in d.who_has for d in ts.dependencies for w in chosen):
        assert ws.occupancy == min(w.occupancy for w in chosen)
    elif len(chosen) > 1 and all(w.occupancy == 0 for w in chosen):
        assert local[ws] == max(local.values())


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_least_busy_with_room(cluster):
    workers, ts = cluster
    ts.dependencies = set()
    durations = {}  # unknown duration: one task per thread
    ws = placement.least_busy_with_room(workers, ts, durations)
    for w in workers:
        assert placement.has_room(w, ts, durations) == (
            len(w.processing) - len(w.long_running) < w.nthreads)
    roomy = [w for w in workers if w.status == "running"
             and len(w.processing) - len(w.long_running) < w.nthreads]
    if not roomy:
        assert ws is None
    else:
        assert ws in roomy and ws.occupancy == min(w.occupancy for w in roomy)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 8), st.integers(0, 200), st.floats(1e-6, 10.0))
def test_tiny_tasks_get_more_room_per_thread(nthreads, running, duration):
    ws = WorkerState("ws://a:1", nthreads)
    ws.processing.update(TaskState(f"t-{i}") for i in range(running))
    ts = TaskState("t-0a1b2c3d")
    assert ts.prefix == "t", ts.prefix
    room = placement.has_room(ws, ts, {"t": duration})
    if duration >= placement.TINY_TASK:
        assert room == (running < nthreads)
    else:  # more in flight, never fewer than one per thread nor over 51
        assert room or running >= nthreads
        assert not room or running < 51 * nthreads


@settings(max_examples=200, deadline=None)
@given(workers_st(min_size=2), st.data())
def test_rebalance_plan_moves_toward_balance(workers, data):
    tasks = {}
    for i in range(data.draw(st.integers(0, 12))):
        ts = TaskState(f"x-{i}")
        ts.state = "memory"
        ts.nbytes = data.draw(st.integers(1, 1000))
        ts.who_has = frozenset(data.draw(st.sets(st.sampled_from(workers), min_size=1)))
        ts.actor = data.draw(st.integers(0, 5)) == 0
        tasks[ts.key] = ts
    by_address = {ws.address: ws for ws in workers}
    moves = placement.rebalance_plan(tasks, by_address)
    load = {ws.address: sum(t.nbytes for t in tasks.values() if ws in t.who_has and not t.actor)
            for ws in workers}
    before_max, before_total = max(load.values()), sum(load.values())
    holders = {k: {ws.address for ws in t.who_has} for k, t in tasks.items()}
    assert len({key for key, _, _ in moves}) == len(moves)
    for key, sender, recipient in moves:
        assert not tasks[key].actor
        assert sender in holders[key] and recipient not in holders[key]
        holders[key] = holders[key] - {sender} | {recipient}
        load[sender] -= tasks[key].nbytes
        load[recipient] += tasks[key].nbytes
    assert sum(load.values()) == before_total
    assert max(load.values()) <= before_max


@st.composite
def held_data(draw):
    workers = draw(workers_st(min_size=1))
    tasks = {}
    for i in range(draw(st.integers(0, 10))):
        ts = TaskState(f"x-{i}")
        ts.nbytes = draw(st.integers(1, 1000))
        ts.who_has = frozenset(draw(st.sets(st.sampled_from(workers))))
        ts.state = "memory" if ts.who_has else "released"
        for ws in ts.who_has:
            ws.has_what.add(ts)
            ws.nbytes += ts.nbytes
        tasks[ts.key] = ts
    return workers, tasks


@settings(max_examples=200, deadline=None)
@given(held_data(), st.data())
def test_replicate_plan_puts_each_key_on_n_workers_of_the_pool(cluster, data):
    workers, tasks = cluster
    by_address = {ws.address: ws for ws in workers}
    keys = data.draw(st.lists(st.sampled_from(sorted(tasks) + ["unknown-1"]), unique=True))
    pool = data.draw(st.none() | st.lists(st.sampled_from(sorted(by_address)), min_size=1,
                                          unique=True))
    n = data.draw(st.none() | st.integers(0, 6))
    plan = placement.replicate_plan(tasks, by_address, keys, n, pool)
    chosen = pool or sorted(by_address)
    target = len(chosen) if n is None else min(n, len(chosen))
    copies = {k: set() for k in keys}
    for worker, who_has in plan.items():
        assert worker in chosen
        for key, holders in who_has.items():
            held = {ws.address for ws in tasks[key].who_has}
            assert set(holders) == held and held and worker not in held
            copies[key].add(worker)
    for key in keys:
        if key not in tasks or not tasks[key].who_has:
            assert not copies[key]
            continue
        in_pool = {ws.address for ws in tasks[key].who_has} & set(chosen)
        assert len(in_pool | copies[key]) == max(len(in_pool), target)


@settings(max_examples=200, deadline=None)
@given(held_data(), st.data())
def test_retire_plan_moves_only_the_data_nobody_else_holds(cluster, data):
    workers, tasks = cluster
    by_address = {ws.address: ws for ws in workers}
    retiring = data.draw(st.lists(st.sampled_from(sorted(by_address)), unique=True))
    staying = [a for a in by_address if a not in retiring]
    if retiring and not staying:
        with pytest.raises(ValueError, match="cannot retire every worker"):
            placement.retire_plan(by_address, retiring)
        return
    plan = placement.retire_plan(by_address, retiring)
    for address in retiring:
        only_here = {k for k, ts in tasks.items()
                     if {ws.address for ws in ts.who_has} == {address}}
        if not only_here:
            assert address not in plan
            continue
        recipient, keys = plan[address]
        assert recipient in staying and set(keys) == only_here
    if plan:
        first_recipient, _ = plan[next(a for a in retiring if a in plan)]
        assert by_address[first_recipient].nbytes == min(by_address[a].nbytes for a in staying)

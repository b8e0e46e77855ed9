"""Properties of the work-stealing rule (``core/stealing.py``), over random
clusters: workers with random thread counts and assigned tasks, tasks with
random compute times and dependencies of random sizes held by random workers.

* only tasks that have not started and are not pinned move, each at most
  once, from the worker it is assigned to, and a victim keeps at least one
  task per thread;
* every move, replayed in order, leaves the thief (with the task at its
  transfer-inflated cost) less busy than the victim without it;
* the busiest worker is never busier after the moves than before;
* a worker that joins idle next to a saturated one gets work when moving is
  cheap (dependencies small against compute time), and none when the
  transfer would cost over ``MAX_MULTIPLIER`` times the compute.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioflow.core.records import TaskState, WorkerState
from trioflow.core.stealing import MAX_MULTIPLIER, steal_moves

pytestmark = pytest.mark.timeout(120)
BANDWIDTH, LATENCY = 100e6, 0.01


@st.composite
def clusters(draw):
    workers = [WorkerState(f"w{i}", draw(st.integers(1, 3)))
               for i in range(draw(st.integers(1, 4)))]
    deps = []
    for i in range(draw(st.integers(0, 4))):
        dep = TaskState(f"dep-{i}")
        dep.nbytes = draw(st.integers(0, 10**9))
        dep.who_has = frozenset(draw(st.sets(st.sampled_from(workers), min_size=1)))
        deps.append(dep)
    durations = {}
    for i in range(draw(st.integers(0, 40))):
        ts = TaskState(f"t-{i}")
        ts.dependencies = set(draw(st.sets(st.sampled_from(deps)))) if deps else set()
        ws = draw(st.sampled_from(workers))
        ws.processing.add(ts)
        ts.processing_on = ws
        if draw(st.integers(0, 4)) == 0:
            ts.executing_on = ws
        if draw(st.integers(0, 9)) == 0:
            ts.worker_restrictions = {ws.address}
        durations[ts] = draw(st.sampled_from([0.0, 0.001, 0.05, 1.0, 30.0]))
    return workers, durations


def _cost(ts, thief, compute):
    missing = sum(d.nbytes for d in ts.dependencies if thief not in d.who_has)
    return compute * (1 + (LATENCY + missing / BANDWIDTH) / compute)


@settings(max_examples=50, deadline=None)
@given(clusters())
def test_moves_follow_the_rule(cluster):
    workers, durations = cluster
    moves = steal_moves(workers, durations.__getitem__, BANDWIDTH, LATENCY)
    load = {ws: sum(durations[t] for t in ws.processing) for ws in workers}
    before = max((load[w] / w.nthreads for w in workers), default=0)
    moved, given_by = set(), {}
    for ts, victim, thief in moves:
        assert ts in victim.processing and thief is not victim and ts not in moved
        assert ts.executing_on is None and not ts.worker_restrictions
        moved.add(ts)
        given_by[victim] = given_by.get(victim, 0) + 1
        compute = durations[ts]
        cost = _cost(ts, thief, compute)
        assert cost / compute <= MAX_MULTIPLIER
        assert (load[thief] + cost) / thief.nthreads < (load[victim] - compute) / victim.nthreads
        load[victim] -= compute
        load[thief] += cost
    for victim, n in given_by.items():
        assert len(victim.processing) - n >= victim.nthreads
    assert max((load[w] / w.nthreads for w in workers), default=0) <= before + 1e-9


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 50), st.sampled_from([0.05, 1.0]), st.booleans())
def test_a_new_worker_gets_work_when_moving_is_cheap(n, compute, heavy):
    busy, new = WorkerState("busy", 1), WorkerState("new", 1)
    dep = TaskState("dep")
    dep.nbytes = 10**12 if heavy else 1_000
    dep.who_has = frozenset({busy})
    durations = {}
    for i in range(n):
        ts = TaskState(f"t-{i}")
        ts.dependencies = {dep}
        busy.processing.add(ts)
        durations[ts] = compute
    moves = steal_moves([busy, new], durations.__getitem__, BANDWIDTH, LATENCY)
    if heavy:
        assert moves == []
    else:
        assert moves and all(thief is new for _, _, thief in moves)
        assert len(moves) >= (n - 1) // 3  # a fair share, not a token task

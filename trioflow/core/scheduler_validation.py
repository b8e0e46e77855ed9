"""The scheduler state's invariants, in one place.

``SchedulerState.validate()`` checks all of them; with ``validate=True`` the
state checks them after every event (all of them for small graphs, only the
moved tasks' for large ones, so that a step stays linear).
"""
from __future__ import annotations

from trioflow.core.records import TaskState
from trioflow.core.scheduler_moves import ACTIVE, STATES
from trioflow.core.transitions import validate_moved


def validate_state(state) -> None:
    """Raise AssertionError if any invariant of ``state`` is broken."""
    for key, ts in state.tasks.items():
        assert ts.key == key
        validate_task(state, ts)
    for ts in state.queued_set:
        assert state.tasks.get(ts.key) is ts, ts
    for ts in state.unrunnable:
        assert ts.state == "no-worker" and ts.key in state.tasks, ts
    for address, ws in state.workers.items():
        assert ws.address == address
        for ts in ws.processing:
            assert ts.processing_on is ws and state.tasks.get(ts.key) is ts, ts
        assert ws.long_running <= ws.processing
        for ts in ws.has_what:
            assert ws in ts.who_has and state.tasks.get(ts.key) is ts, ts


def validate_tasks(state, tasks) -> None:
    """The invariants of these tasks only (those still known)."""
    validate_moved(tasks, state.tasks, lambda ts: validate_task(state, ts))


def validate_task(state, ts: TaskState) -> None:
    """The invariants of one known task and its relations."""
    assert ts.state in STATES, ts
    if ts.state == "processing":
        assert ts.processing_on is not None, ts
        assert ts.processing_on.address in state.workers, ts
        assert state.workers[ts.processing_on.address] is ts.processing_on, ts
        assert ts in ts.processing_on.processing, ts
        assert not ts.waiting_on, ts
        assert all(d.state == "memory" for d in ts.dependencies), ts
        assert ts.executing_on in (None, ts.processing_on), ts
    else:
        assert ts.processing_on is None, ts
        assert not ts.long_running, ts
    if ts.state == "memory":
        assert ts.who_has, ts
        for ws in ts.who_has:
            assert ws.address in state.workers and state.workers[ws.address] is ws, ts
            assert ts in ws.has_what, ts
    else:
        assert not ts.who_has, ts
    if ts.state == "waiting":
        assert ts.waiting_on, f"runnable task left waiting: {ts}"
        assert ts.waiting_on <= ts.dependencies, ts
        assert all(d.state in ("waiting", "queued", "processing", "no-worker")
                   for d in ts.waiting_on), (ts, ts.waiting_on)
    else:
        assert not ts.waiting_on, ts
    if ts.state == "no-worker":
        assert ts in state.unrunnable, ts
    assert (ts.state == "queued") == (ts in state.queued_set), ts
    if ts.state == "released":
        assert not ts.who_wants and not ts.waiters, f"needed task left released: {ts}"
    if ts.state in ACTIVE:
        for dep in ts.dependencies:
            assert ts in dep.waiters, (ts, dep)
    for dep in ts.dependencies:
        assert state.tasks.get(dep.key) is dep, (ts, dep)
        assert ts in dep.dependents, (ts, dep)
    for dependent in ts.dependents:
        assert dependent.key in state.tasks, (ts, dependent)
    for waiter in ts.waiters:
        assert waiter.state in ACTIVE, waiter
    assert ts.who_wants or ts.dependents, f"unneeded task not forgotten: {ts}"
    assert ts.who_wants <= state.clients, ts

"""Both state machines driven directly with graphs of tens of thousands of tasks: deep
chains, wide fan-ins and independent tasks are computed, cancelled, released,
retried and forgotten without recursion, and leave nothing behind."""
from __future__ import annotations

import pytest

from trioflow.core import events as ev, scheduler_messages as msgs
from trioflow.core.scheduler_state import SchedulerState
from trioflow.core.transitions import InvalidTransition
from trioflow.core.worker_state import WorkerState

pytestmark = pytest.mark.timeout(120)

W = "tcp://10.0.0.1:8000"
#: far deeper than Python's recursion limit, small enough for a quick test
N = 20_000
TIP = f"t-{N - 1}"


def _scheduler(nthreads=1):
    state = SchedulerState()
    state.handle(ev.ClientConnected("c", "connect"))
    state.handle(ev.WorkerJoined(W, nthreads, stimulus_id="join"))
    return state


def _chain(n, prefix="t"):
    return tuple([ev.TaskSpec(f"{prefix}-0", b"f")]
                 + [ev.TaskSpec(f"{prefix}-{i}", b"f", (f"{prefix}-{i - 1}",)) for i in range(1, n)])


def _run_to_end(state, out, fail=()):
    """Play the worker: finish (or fail) every compute-task until none is left."""
    pending = _computed(out)
    steps = 0
    while pending:
        key = pending.pop()
        steps += 1
        event = (ev.TaskErred(W, key, text="boom", stimulus_id=f"err-{key}") if key in fail
                 else ev.TaskFinished(W, key, 8, "int", 0.01, f"done-{key}"))
        out = state.handle(event, float(steps))
        pending += _computed(out)
    return steps


def _computed(out):
    return [m.key for m in out if isinstance(m, msgs.ComputeTaskOnWorker)]


def _client_ops(out, kind):
    return [m.key for m in out if isinstance(m, kind)]


def test_cancelling_a_deep_chain_whose_first_task_runs_forgets_all_of_it():
    state = _scheduler()
    out = state.handle(ev.GraphSubmitted("c", _chain(N), (TIP,), stimulus_id="g"))
    assert state.tasks["t-0"].state == "processing"
    out = state.handle(ev.KeysCancelled("c", (TIP,), stimulus_id="cancel-1"))
    assert not state.tasks, "a cancelled chain left tasks behind"
    assert msgs.FreeKeysOnWorker(W, ("t-0",), "cancel-1") in out
    assert _client_ops(out, msgs.KeyCancelled) == [TIP]
    assert not state.workers[W].processing
    state.validate()


def test_deep_chain_computes_then_is_forgotten_on_release():
    state = _scheduler()
    out = state.handle(ev.GraphSubmitted("c", _chain(N), (TIP,), stimulus_id="g"))
    assert _run_to_end(state, out) == N
    ts = state.tasks[TIP]
    assert ts.state == "memory"
    # the data behind it was freed; only its recipe is kept, should it be lost
    assert state.workers[W].has_what == {ts}
    assert all(t.state == "released" for t in state.tasks.values() if t is not ts)
    state.handle(ev.KeysReleased("c", (TIP,), stimulus_id="release"))
    assert not state.tasks and not state.workers[W].has_what
    state.validate()


def test_many_independent_tasks_and_a_10k_fan_in():
    state = _scheduler(nthreads=4)
    leaves = tuple(ev.TaskSpec(f"x-{i}", b"f") for i in range(N))
    out = state.handle(ev.GraphSubmitted("c", leaves, tuple(s.key for s in leaves),
                                         stimulus_id="g"))
    assert _run_to_end(state, out) == N
    assert all(ts.state == "memory" for ts in state.tasks.values())
    state.handle(ev.KeysReleased("c", tuple(s.key for s in leaves), stimulus_id="r"))
    assert not state.tasks
    parts = tuple(ev.TaskSpec(f"p-{i}", b"f") for i in range(10_000))
    total = ev.TaskSpec("total", b"f", tuple(p.key for p in parts))
    out = state.handle(ev.GraphSubmitted("c", parts + (total,), ("total",), stimulus_id="g2"))
    assert _run_to_end(state, out) == 10_001
    assert {ts.key for ts in state.workers[W].has_what} == {"total"}
    state.handle(ev.KeysReleased("c", ("total",), stimulus_id="r2"))
    assert not state.tasks
    state.validate()


def test_a_deep_chain_whose_root_fails_errs_then_retries_to_memory():
    state = _scheduler()
    out = state.handle(ev.GraphSubmitted("c", _chain(N), (TIP,), stimulus_id="g"))
    _run_to_end(state, out, fail={"t-0"})
    assert state.tasks[TIP].state == "erred"
    assert all(ts.state == "erred" for ts in state.tasks.values())
    out = state.handle(ev.TasksRetried("c", (TIP,), stimulus_id="retry"))
    assert _run_to_end(state, out) == N
    assert state.tasks[TIP].state == "memory"
    state.handle(ev.KeysReleased("c", (TIP,), stimulus_id="r"))
    assert not state.tasks
    state.validate()


def test_a_worker_lost_in_the_middle_of_a_deep_chain_recomputes_it():
    state = _scheduler()
    other = "tcp://10.0.0.2:8000"
    out = state.handle(ev.GraphSubmitted("c", _chain(5_000), ("t-4999",), stimulus_id="g"))
    key = "t-0"
    for _ in range(2_000):
        out = state.handle(ev.TaskFinished(W, key, 8, stimulus_id=f"done-{key}"))
        (key,) = _computed(out)
    state.handle(ev.WorkerJoined(other, 1, stimulus_id="join-2"))
    out = state.handle(ev.WorkerLeft(W, stimulus_id="left"))
    state.validate()
    assert _run_to_end_on(state, other, out) == 5_000
    assert state.tasks["t-4999"].state == "memory"


def test_a_started_task_whose_input_died_with_its_worker_counts_that_death():
    # t-1 runs on W with its input t-0 held only there: W's death sends t-1
    # back to waiting through t-0's loss before the running tasks are
    # visited, and the death must still count against t-1 (as dask counts it)
    state = _scheduler()
    state.handle(ev.WorkerJoined("tcp://10.0.0.2:8000", 1, stimulus_id="join-2"))
    out = state.handle(ev.GraphSubmitted("c", _chain(2), ("t-1",), stimulus_id="g"))
    (root,) = _computed(out)
    worker = state.tasks[root].processing_on.address
    out = state.handle(ev.TaskFinished(worker, root, 8, stimulus_id="done-0"))
    assert _computed(out) == ["t-1"] and state.tasks["t-1"].processing_on.address == worker
    state.handle(ev.TaskStarted(worker, "t-1", "started-1"))
    state.handle(ev.WorkerLeft(worker, stimulus_id="left"))
    state.validate()
    assert state.tasks["t-1"].suspicious == 1
    assert state.tasks["t-0"].suspicious == 0  # it had finished, not died running


def _run_to_end_on(state, worker, out):
    pending = _computed(out)
    steps = 0
    while pending:
        key = pending.pop()
        steps += 1
        out = state.handle(ev.TaskFinished(worker, key, 8, stimulus_id=f"done-{key}"))
        pending += _computed(out)
    return steps


def test_every_scheduler_move_is_in_the_story_with_its_stimulus():
    state = _scheduler()
    out = state.handle(ev.GraphSubmitted("c", _chain(3), ("t-2",), stimulus_id="graph-1"), 1.0)
    _run_to_end(state, out)
    story = state.story("t-1")
    assert [(s, f) for _, s, f, _, _ in story] == [
        ("released", "waiting"), ("waiting", "processing"), ("processing", "memory"),
        ("memory", "released")]  # kept, without data, for its dependent
    assert story[0][3] == "graph-1" and story[2][3] == "done-t-1"
    state.handle(ev.KeysReleased("c", ("t-2",), stimulus_id="let-go"), 9.0)
    assert state.story("t-1")[-1][1:4] == ("released", "forgotten", "let-go")
    assert all(entry[0] == "t-1" for entry in story)
    assert state.story("graph-1")  # by stimulus too


def test_an_illegal_scheduler_move_raises_inside_the_core():
    state = _scheduler()
    state.handle(ev.GraphSubmitted("c", _chain(1), ("t-0",), stimulus_id="g"))
    ts = state.tasks["t-0"]
    with pytest.raises(InvalidTransition, match="t-0.*memory -> waiting") as info:
        ts.state = "memory"  # what a bug elsewhere could leave behind
        state._run({ts: "waiting"})
    assert info.value.story  # the key's story travels with the error


def test_a_worker_frees_a_deep_chain_computed_here_in_one_event():
    state = WorkerState("w0", 1)
    keys = [f"t-{i}" for i in range(N)]
    # the scheduler sent the whole chain: each link waits on the previous one
    for i, key in enumerate(keys):
        deps = (keys[i - 1],) if i else ()
        state.handle(ev.ComputeTask(key, b"f", {d: ("w1",) for d in deps}, {d: 8 for d in deps},
                                    (0, i), stimulus_id=f"compute-{key}"))
    # freed root first: each key stays as a dependency of the next until the end
    state.handle(ev.FreeKeys(tuple(keys), stimulus_id="free"))
    state.handle(ev.ExecuteCancelled("t-0", stimulus_id="stopped"))
    assert not state.tasks
    state.validate()


def test_a_worker_fetches_a_10k_fan_in_and_forgets_it():
    state = WorkerState("w0", 2)
    deps = {f"d-{i}": (f"w{1 + i % 3}",) for i in range(10_000)}
    out = state.handle(ev.ComputeTask("total", b"f", deps, {d: 8 for d in deps}, (0,),
                                      stimulus_id="compute"))
    while True:
        fetches = [i for i in out if isinstance(i, ev.Fetch)]
        if not fetches:
            break
        out = []
        for f in fetches:
            out += state.handle(ev.GatherDone(f.peer, {k: 8 for k in f.keys},
                                              stimulus_id=f"got-{f.peer}"))
    assert state.tasks["total"].state == "executing"
    state.handle(ev.ExecuteSuccess("total", 8, stimulus_id="ran"))
    # the fetched copies are replicas the scheduler knows of: it frees them
    state.handle(ev.FreeKeys(("total", *deps), stimulus_id="free"))
    assert not state.tasks
    story = state.story("total")
    assert [(s, f) for _, s, f, _, _ in story] == [
        ("released", "waiting"), ("waiting", "ready"), ("ready", "executing"),
        ("executing", "memory"), ("memory", "forgotten")]

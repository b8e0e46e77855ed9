"""Stateful tests of one worker's sans-I/O core (``WorkerState``).

The machine plays the worker's shell and the scheduler around one
``WorkerState("w0")``: the scheduler sends ``compute-task`` (with dependencies
held by peers ``w1``..``w5`` or already here) and ``free-keys`` for anything at
any time; the shell carries out the instructions the state returns and
reports back only what a real shell could: results of the runs it was told to
start, outcomes of the fetches it was told to make, secede/rejoin from
running tasks, scattered data, closing.

Besides ``state.validate()``, the machine keeps the shell's side of the story
(runs started and not yet reported, fetches in flight, the data dict) and
checks after every step that

* no more sync runs hold a thread than ``nthreads`` (seceded runs don't), and
  no more async runs than ``async_slots``;
* a key is never told to run twice at once, and never fetched from ``w0`` itself
  or from a peer already being fetched from;
* every key the state has in memory is in the shell's data dict;
* memory (spill, unspill, pause): every key in memory is in exactly one of
  fast or slow storage, and the shell's disk holds exactly the slow keys; no
  task starts and no fetch begins while the worker is paused, and it is
  paused exactly when the last measured memory (less what that measurement
  made it spill) is past the pause threshold;
  a task starts only with all its dependencies in memory (read back first);
  managed memory stays below target unless only unspillable keys are left.

The ``drain`` (a rule, and again at teardown) finishes every run and fetch,
then checks that every slot is free and no task is left running, ready, or
cancelled; teardown then frees every key and checks that the shell holds no
data the state forgot about.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trioflow.core import events as ev
from trioflow.core.worker_state import WorkerState

pytestmark = pytest.mark.timeout(300)

SELF = "w0"
PEERS = ("w1", "w2", "w3", "w4", "w5")  # more than FETCH_CONCURRENCY
ASYNC_SLOTS = 2
RUNNING = ("executing", "long-running", "cancelled")


def _has_run(*modes):
    """Precondition: the shell has a run in one of ``modes``."""
    return lambda self: any(mode in modes for mode in self.runs.values())


class WorkerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.state: WorkerState | None = None
        # the shell's side
        self.runs: dict = {}  # key -> "active" | "seceded" | "rejoining"
        self.cancel_asked: set = set()  # runs told CancelExecution
        self.fetches: dict[str, tuple] = {}  # peer -> keys in flight
        self.data: set = set()  # keys in the shell's data dict (fast storage)
        self.slow_data: set = set()  # keys the shell wrote to disk
        self.fail_spills = False  # the shell's disk is full
        # the scheduler's side
        self.known_keys: list = []  # in creation order
        self.deps_of: dict = {}  # key -> its dependencies, fixed at its first compute-task
        self.asked: set = set()  # keys sent compute-task and not free-keys since
        self._counter = 0
        self._events = 0
        self._pending = False

    # ------------------------------------------------------------ plumbing

    @initialize(nthreads=st.integers(1, 3), gpus=st.sampled_from([None, None, 1, 2]),
                memory_limit=st.sampled_from([0, 200, 200]),
                target_at=st.sampled_from([False, 0.5, 0.5]),
                spill_at=st.sampled_from([False, 0.7]),
                pause_at=st.sampled_from([False, 0.8, 0.8]))
    def start_worker(self, nthreads, gpus, memory_limit, target_at, spill_at, pause_at):
        self.state = WorkerState(SELF, nthreads, {"GPU": gpus} if gpus else None,
                                 async_slots=ASYNC_SLOTS, memory_limit=memory_limit,
                                 memory_target_fraction=target_at,
                                 memory_spill_fraction=spill_at, memory_pause_fraction=pause_at)

    def _put(self, keys):
        """The shell stores new values in memory (replacing any copy on disk)."""
        self.data |= set(keys)
        self.slow_data -= set(keys)

    def _new_key(self, prefix):
        self._counter += 1
        key = f"{prefix}-{self._counter}"
        self.known_keys.append(key)
        return key

    def handle(self, event):
        self._pending = True
        self._events += 1
        was_paused = self.state.paused
        out = self.state.handle(event)
        follow_up = []
        if self.state.paused or (was_paused and not isinstance(event, ev.MemoryMeasured)):
            assert not any(type(i) in (ev.Execute, ev.Fetch) for i in out), (
                f"a paused worker started a run or a fetch: {out}")
        for inst in out:
            kind = type(inst)
            if kind is ev.Execute:
                assert inst.key not in self.runs, f"second Execute for running {inst.key!r}"
                ts = self.state.tasks.get(inst.key)
                assert ts is not None and ts.state == "executing", (inst, ts)
                for dep in ts.dependencies:
                    assert dep.key in self.data, f"{inst.key!r} runs before {dep.key!r} is read back"
                self.runs[inst.key] = "active"
            elif kind is ev.Spill:
                assert inst.key in self.data and inst.key not in self.slow_data, inst
                if self.fail_spills:
                    follow_up.append(ev.SpillFailed(inst.key, "disk full", "spill-failed"))
                else:
                    self.data.discard(inst.key)
                    self.slow_data.add(inst.key)
            elif kind is ev.Unspill:
                assert inst.key in self.slow_data, f"unspill of {inst.key!r}, not on disk"
                self.slow_data.discard(inst.key)
                self.data.add(inst.key)
            elif kind is ev.Fetch:
                assert inst.peer != SELF, f"fetch from self: {inst}"
                assert inst.peer not in self.fetches, f"second fetch from {inst.peer}: {inst}"
                assert inst.keys, inst
                for key in inst.keys:
                    ts = self.state.tasks.get(key)
                    assert ts is not None and ts.state == "flight" and ts.peer == inst.peer, ts
                self.fetches[inst.peer] = inst.keys
            elif kind is ev.DeleteData:
                self.data.discard(inst.key)
                self.slow_data.discard(inst.key)
            elif kind is ev.CancelExecution:
                assert inst.key in self.runs, f"cancel of {inst.key!r}, which is not running"
                self.cancel_asked.add(inst.key)
            elif kind is ev.GrantRejoin:
                if self.runs.get(inst.key) == "rejoining":
                    self.runs[inst.key] = "active"
            elif kind is ev.SendToScheduler:
                self._scheduler_msg(inst.msg)
            else:
                raise AssertionError(f"unknown instruction {inst!r}")
        for event in follow_up:  # as the shell does: after this event's instructions
            out = out + self.handle(event)
        return out

    def _scheduler_msg(self, msg):
        op = msg["op"]
        if op in ("task-finished", "task-erred", "task-cancelled", "long-running"):
            # about a task the scheduler still has here; not one it freed
            assert msg["key"] in self.asked, f"{op} for {msg['key']!r}, which was freed"
        if op == "task-finished":
            assert msg["key"] in self.data | self.slow_data, msg
        elif op == "add-keys":
            assert set(msg["nbytes"]) <= self.data | self.slow_data, msg
        elif op == "worker-status-change":
            assert msg["status"] == ("paused" if self.state.paused else "running"), msg
        elif op == "missing-data":
            assert msg["holder"] in PEERS, msg
        else:
            assert op in ("task-erred", "task-cancelled", "long-running"), msg

    def _end_run(self, key):
        del self.runs[key]
        self.cancel_asked.discard(key)

    def _draw_run(self, data, *modes):
        keys = sorted(k for k, mode in self.runs.items() if mode in modes)
        return data.draw(st.sampled_from(keys), label="run")

    # ------------------------------------------------------------ the scheduler

    @precondition(lambda self: self.state is not None)
    @rule(data=st.data(), priority=st.integers(-1, 1),
          resources=st.sampled_from([None, None, None, {"GPU": 1}, {"GPU": 2}]),
          is_async=st.sampled_from([False, False, False, True]))
    def compute_task(self, data, priority, resources, is_async):
        if resources and resources["GPU"] > self.state.total_resources.get("GPU", 0):
            resources = None  # the scheduler sends a task only to a worker it fits
        if self.known_keys and data.draw(st.integers(0, 4), label="again?") == 0:
            key = data.draw(st.sampled_from(self.known_keys), label="key again")
            earlier = self.known_keys[:self.known_keys.index(key)]
            fresh = 0
        else:
            key, earlier = None, list(self.known_keys)
            fresh = data.draw(st.integers(0, 2), label="new remote deps")
        if key in self.deps_of:
            deps = self.deps_of[key]  # a key always has the same dependencies
        else:
            # dependencies come earlier in creation order: the graph stays acyclic
            deps = [self._new_key("d") for _ in range(fresh)]
            if earlier:
                deps += data.draw(st.lists(st.sampled_from(earlier), max_size=2, unique=True),
                                  label="known deps")
            deps = tuple(dict.fromkeys(deps))
            if key is None:
                key = self._new_key("t")
            self.deps_of[key] = deps
        who_has, nbytes = {}, {}
        for dep in deps:
            holders = data.draw(st.lists(st.sampled_from(PEERS + (SELF,)), min_size=1,
                                         max_size=3, unique=True), label="holders")
            dep_ts = self.state.tasks.get(dep)
            if set(holders) == {SELF} and (dep_ts is None or dep_ts.state != "memory"):
                # the scheduler names w0 as a holder only if w0 reported holding it
                holders.append(PEERS[0])
            who_has[dep] = tuple(holders)
            nbytes[dep] = 8
        self.asked.add(key)
        self.handle(ev.ComputeTask(key, ("func", key), who_has, nbytes, (priority, self._counter),
                                   resources, False, is_async, "compute-task"))

    @precondition(lambda self: self.state is not None and self.state.tasks)
    @rule(data=st.data())
    def free_keys(self, data):
        pool = sorted(self.state.tasks, key=repr)
        running = [k for k in pool if self.state.tasks[k].state in RUNNING]
        if running and data.draw(st.booleans(), label="a running one?"):
            pool = running  # the rare, racy case: a client releases a running task
        keys = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
        if data.draw(st.integers(0, 3)) == 0:
            keys.append(data.draw(st.sampled_from(self.known_keys)))  # perhaps unknown here
        self.asked -= set(keys)
        self.handle(ev.FreeKeys(tuple(dict.fromkeys(keys)), "free-keys"))

    # ------------------------------------------------------------ the shell: runs

    @precondition(_has_run("active", "seceded"))
    @rule(data=st.data(), nbytes=st.integers(0, 100))
    def execute_success(self, data, nbytes):
        key = self._draw_run(data, "active", "seceded")
        self._end_run(key)
        self._put([key])
        self.handle(ev.ExecuteSuccess(key, nbytes, "int", 0.01, "execute-success"))

    @precondition(_has_run("active", "seceded"))
    @rule(data=st.data())
    def execute_failure(self, data):
        key = self._draw_run(data, "active", "seceded")
        self._end_run(key)
        self.handle(ev.ExecuteFailure(key, b"exc", b"tb", "ZeroDivisionError", "",
                                      "execute-failure"))

    @precondition(lambda self: self.cancel_asked)
    @rule(data=st.data())
    def execute_cancelled(self, data):
        """A run told CancelExecution stopped (a deadline reports ExecuteFailure)."""
        key = data.draw(st.sampled_from(sorted(self.cancel_asked)), label="run")
        self._end_run(key)
        self.handle(ev.ExecuteCancelled(key, "execute-cancelled"))

    @precondition(_has_run("active"))
    @rule(data=st.data())
    def secede(self, data):
        key = self._draw_run(data, "active")
        self.runs[key] = "seceded"
        self.handle(ev.Seceded(key, "secede"))

    @precondition(_has_run("seceded"))
    @rule(data=st.data())
    def rejoin(self, data):
        key = self._draw_run(data, "seceded")
        self.runs[key] = "rejoining"
        self.handle(ev.RejoinRequested(key, "rejoin"))

    # ------------------------------------------------------------ the shell: data

    @precondition(lambda self: self.fetches)
    @rule(data=st.data(), outcome=st.sampled_from(["ok", "ok", "some missing", "peer failed"]))
    def gather_done(self, data, outcome):
        peer = data.draw(st.sampled_from(sorted(self.fetches)))
        keys = self.fetches.pop(peer)
        if outcome == "peer failed":
            self.handle(ev.GatherDone(peer, {}, tuple(keys), True, "gather-failed"))
            return
        got = list(keys)
        if outcome == "some missing":
            got = data.draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys) - 1))
        self._put(got)
        missing = tuple(k for k in keys if k not in got)
        self.handle(ev.GatherDone(peer, {k: 8 for k in got}, missing, False, "gather-done"))

    @precondition(lambda self: self.state is not None and len(self.data) < 4)
    @rule(data=st.data())
    def data_received(self, data):
        """A scatter or replicate put data here directly."""
        keys = []
        for _ in range(data.draw(st.integers(1, 2))):
            if self.known_keys and data.draw(st.booleans()):
                keys.append(data.draw(st.sampled_from(self.known_keys)))
            else:
                keys.append(self._new_key("s"))
        self._put(keys)
        self.handle(ev.DataReceived({k: 8 for k in keys}, "update-data"))

    # ------------------------------------------------------------ the shell: memory

    @precondition(lambda self: self.state is not None)
    @rule(rss=st.integers(0, 300))
    def memory_measured(self, rss):
        self.handle(ev.MemoryMeasured(rss, "memory-monitor"))

    @precondition(lambda self: self.state is not None)
    @rule()
    def disk_fills_or_frees(self):
        self.fail_spills = not self.fail_spills

    # late in a run only: after it nothing new starts
    @precondition(lambda self: self.state is not None and not self.state.closing
                  and self._events >= 30)
    @rule()
    def worker_closing(self):
        self.handle(ev.WorkerClosing("worker-close"))

    # ------------------------------------------------------------ liveness

    @precondition(lambda self: self.state is not None)
    @rule()
    def drain(self):
        self._drain()

    def _drain(self):
        """Finish every run and fetch as a healthy shell would, then check
        that nothing is left holding a slot or waiting for a run."""
        if self.state.paused:  # a healthy worker's memory drops again
            self.handle(ev.MemoryMeasured(0, "memory-monitor"))
        for _ in range(1000):
            if self.fetches:
                peer = sorted(self.fetches)[0]
                keys = self.fetches.pop(peer)
                self._put(keys)
                self.handle(ev.GatherDone(peer, {k: 8 for k in keys}, (), False, "gather-done"))
                continue
            ending = sorted(k for k, mode in self.runs.items()
                            if mode != "rejoining" or k in self.cancel_asked)
            if not ending:
                break
            key = ending[0]
            cancelled = key in self.cancel_asked or self.runs[key] == "rejoining"
            self._end_run(key)
            if cancelled:
                self.handle(ev.ExecuteCancelled(key, "execute-cancelled"))
            else:
                self._put([key])
                self.handle(ev.ExecuteSuccess(key, 8, "int", 0.01, "execute-success"))
        else:
            raise AssertionError("the worker did not quiesce")
        assert not self.runs, f"runs waiting for a rejoin that is never granted: {self.runs}"
        state = self.state
        assert state.busy_slots == 0 and state.async_busy == 0, (
            state.busy_slots, state.async_busy)
        for key, ts in state.tasks.items():
            assert ts.state not in RUNNING, f"{ts} still running after every run ended"
            if not state.closing:
                assert ts.state != "ready", f"{ts} ready while every slot is free"
                assert ts.state != "fetch", f"{ts} never fetched (who_has={ts.who_has})"
            if ts.state == "waiting" and not state.closing:
                # only the scheduler can help a task blocked behind a dependency
                # that no known peer had
                stack, seen, blocked = list(ts.waiting_for), set(), False
                while stack and not blocked:
                    dep = stack.pop()
                    if dep not in seen:
                        seen.add(dep)
                        blocked = dep.state == "missing"
                        stack.extend(dep.waiting_for)
                assert blocked, (ts, ts.waiting_for)

    def teardown(self):
        if self._pending or self.state is None:
            return  # a step already failed; do not mask its error
        self._drain()
        self.check()
        # the scheduler lets go of everything, one key per message as it does
        for key in sorted(self.state.tasks, key=repr):
            self.asked.discard(key)
            self.handle(ev.FreeKeys((key,), "free-keys"))
            self.check()
        self._drain()
        assert not self.state.tasks, f"freed keys left behind: {self.state.tasks}"
        assert not self.data, f"the shell still holds data nobody will free: {self.data}"
        assert not self.slow_data, f"spilled data nobody will free: {self.slow_data}"

    # ------------------------------------------------------------ invariants

    @invariant()
    def check(self):
        state = self.state
        if state is None:
            return
        state.validate()
        assert 0 <= state.busy_slots <= state.nthreads, state.busy_slots
        assert 0 <= state.async_busy <= state.async_slots, state.async_busy
        on_threads = on_loop = 0
        for key, mode in self.runs.items():
            ts = state.tasks.get(key)
            # a run the shell still has is one the state still counts
            assert ts is not None and ts.state in RUNNING, (key, mode, ts)
            if mode == "active":
                if ts.is_async:
                    on_loop += 1
                else:
                    on_threads += 1
            assert ts.holds_slot == (mode == "active"), (ts, mode)
        assert on_threads <= state.nthreads, (on_threads, self.runs)
        assert on_loop <= state.async_slots, (on_loop, self.runs)
        for key, ts in state.tasks.items():
            if ts.state in RUNNING:
                assert key in self.runs, f"{ts} is running but the shell was never told"
            if ts.state == "memory":
                # in exactly one of fast and slow storage, where the shell has it
                assert (key in state.fast) != (key in state.slow), ts
                if key in state.fast:
                    assert key in self.data, f"{ts} in memory but not in the shell's data"
                else:
                    assert key in self.slow_data, f"{ts} spilled but not on the shell's disk"
            if ts.state == "flight":
                assert key in self.fetches.get(ts.peer, ()), ts
        assert set(state.slow) == self.slow_data, (set(state.slow), self.slow_data)
        if state.memory_limit and state.pause_fraction:
            # (on the measurement less what it made the worker spill)
            assert state.memory_after_spill <= state.process_memory
            assert state.paused == (state.memory_after_spill > state.pause_fraction
                                    * state.memory_limit), (state.paused, state.process_memory)
        else:
            assert not state.paused
        if state.memory_limit and state.target_fraction:
            assert state.fast_bytes <= state.target_fraction * state.memory_limit or all(
                ts.unspillable for ts in state.fast.values()), state.fast_bytes
        self._pending = False


WorkerMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestWorkerState = WorkerMachine.TestCase


class BigGraphWorkerMachine(WorkerMachine):
    """The same machine, also sent hundreds of tasks per rule: a deep chain
    computed here, or a wide fan-in of dependencies held by peers, and freed
    all at once in either order.  Nothing may recurse per task."""

    def __init__(self):
        super().__init__()
        self.big_graphs: list[tuple] = []  # keys of each big graph, in creation order

    @precondition(lambda self: self.state is not None)
    @rule(shape=st.sampled_from(["chain", "fan-in"]), size=st.sampled_from([150, 500]))
    def compute_big_graph(self, shape, size):
        keys = []
        if shape == "chain":
            # as a scheduler drives a chain through one worker: each link is
            # sent once the one before it is in memory here
            for i in range(size):
                key = self._new_key("t")
                deps = (keys[-1],) if keys else ()
                self.deps_of[key] = deps
                self.asked.add(key)
                self.handle(ev.ComputeTask(key, ("func", key), {d: (SELF,) for d in deps},
                                           {d: 8 for d in deps}, (0, self._counter), None,
                                           False, False, "compute-task"))
                keys.append(key)
                if self.runs.get(key) == "active" and not self.state.tasks[key].waiting_for:
                    self._end_run(key)
                    self.data.add(key)
                    self.handle(ev.ExecuteSuccess(key, 8, "int", 0.0, "execute-success"))
                if self.state.tasks.get(key) is None or self.state.tasks[key].state != "memory":
                    break  # a thread is busy with another run: the chain waits here
        else:
            deps = tuple(self._new_key("d") for _ in range(size))
            key = self._new_key("t")
            self.deps_of[key] = deps
            self.asked.add(key)
            who_has = {d: (PEERS[i % len(PEERS)],) for i, d in enumerate(deps)}
            self.handle(ev.ComputeTask(key, ("func", key), who_has, {d: 8 for d in deps},
                                       (0, self._counter), None, False, False, "compute-task"))
            keys = [*deps, key]
        self.big_graphs.append(tuple(keys))

    @precondition(lambda self: self.big_graphs)
    @rule(data=st.data(), root_first=st.booleans())
    def free_big_graph(self, data, root_first):
        keys = self.big_graphs.pop(data.draw(st.integers(0, len(self.big_graphs) - 1)))
        keys = [k for k in keys if k in self.state.tasks]
        if not root_first:
            keys.reverse()
        self.asked -= set(keys)
        if keys:
            self.handle(ev.FreeKeys(tuple(keys), "free-keys"))


BigGraphWorkerMachine.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestWorkerStateBigGraphs = BigGraphWorkerMachine.TestCase


def test_each_run_of_a_task_carries_the_deadline_it_was_computed_with():
    """The worker's state, not its shell, says which deadline a run has (the
    one in the task's compute-task, on every run of it, a retry too) and
    that a run stopped at it errs with TimeoutError."""
    state = WorkerState("w0", 1)
    out = state.handle(ev.ComputeTask("slow-1", b"f", {}, {}, (0,), stimulus_id="compute",
                                      timeout=0.5))
    assert [i for i in out if isinstance(i, ev.Execute)] == [ev.Execute("slow-1", 0.5)]
    out = state.handle(ev.ExecuteTimedOut("slow-1", stimulus_id="timed-out"))
    [erred] = [i.msg for i in out if isinstance(i, ev.SendToScheduler)]
    assert (erred["op"], erred["kind"], erred["exception"]) == ("task-erred", "TimeoutError", None)
    assert "ran longer than its timeout of 0.5 s" in erred["text"]
    out = state.handle(ev.ComputeTask("slow-1", b"f", {}, {}, (0,), stimulus_id="retry",
                                      timeout=0.5))
    assert [i for i in out if isinstance(i, ev.Execute)] == [ev.Execute("slow-1", 0.5)]
    out = state.handle(ev.ComputeTask("quick-1", b"f", {}, {}, (0,), stimulus_id="compute"))
    assert state.tasks["quick-1"].timeout is None

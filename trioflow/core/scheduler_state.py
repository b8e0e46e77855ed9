"""The scheduler's state machine: tasks, workers and clients, no I/O.

``SchedulerState.handle(event, now)`` applies one event and returns the
messages it causes: small frozen records of scheduler_messages.py, each
addressed to one worker or one client.  The shell turns them into wire
messages and sends them; it makes no decisions.

Task states follow dask's vocabulary: released, waiting, queued, processing,
memory, erred, no-worker.  A task that no client wants and no remaining task
depends on is forgotten (removed).

The state is split by concern: the records (records.py), placement
(placement.py, pure functions), the transition table and its moves
(scheduler_moves.py), the event handlers (scheduler_handlers.py), queries
(scheduler_queries.py) and the invariants (scheduler_validation.py).  This
class holds the data and is the one entry: ``handle``, ``validate``.
"""
from __future__ import annotations

from collections import defaultdict
from itertools import count
from typing import Any

from trioflow.core import events as ev, placement, scheduler_messages as out
from trioflow.core import scheduler_queries as queries
from trioflow.core.records import TaskState, WorkerState, SetSharer
from trioflow.core.scheduler_handlers import EventHandlers
from trioflow.core.scheduler_messages import FIRE_AND_FORGET
from trioflow.core.scheduler_moves import ACTIVE, MOVES, STATES, TaskMoves
from trioflow.core.scheduler_validation import validate_state, validate_tasks
from trioflow.core.transitions import TRANSITION_LOG_LENGTH, TransitionLog

__all__ = ["ALLOWED_FAILURES", "ACTIVE", "FIRE_AND_FORGET", "MOVES", "STATES", "SchedulerState"]

#: dask's ``distributed.scheduler.allowed-failures``: a task may be executing on
#: this many workers that die; one more death makes it KilledWorker
ALLOWED_FAILURES = 3

#: up to this many tasks, validation after an event checks everything;
#: above it only the tasks the event moved, so that it stays linear
FULL_VALIDATE_TASKS = 300


class SchedulerState(EventHandlers, TaskMoves):
    """All of the scheduler's bookkeeping.  ``handle`` is the one way in
    for events: it never blocks and returns the messages to send.

    Handlers never change a task's state themselves: they recommend
    ``{task: finish}`` and ``_run`` applies the recommendations one at a
    time through the methods named in ``MOVES``; each move may recommend
    more.  So no path recurses per task, however deep or wide the graph."""

    def __init__(self, worker_ttl: float = 30.0, validate: bool = False,
                 allowed_failures: int = ALLOWED_FAILURES,
                 transition_log_length: int = TRANSITION_LOG_LENGTH):
        if isinstance(allowed_failures, bool) or not isinstance(allowed_failures, int) \
                or allowed_failures < 0:
            raise ValueError(f"allowed_failures must be an int >= 0, not {allowed_failures!r}")
        self.allowed_failures = allowed_failures
        self.tasks: dict[Any, TaskState] = {}
        self.workers: dict[str, WorkerState] = {}
        self.clients: set[str] = {FIRE_AND_FORGET}
        self._done_unowned: list = []  # fire-and-forget keys that finished in this event
        self.queued: list[tuple[tuple, TaskState]] = []  # heap; entries not in queued_set are stale
        self.queued_set: set[TaskState] = set()
        self.unrunnable: set[TaskState] = set()
        self.worker_ttl = worker_ttl
        #: how often the shell should send CheckHeartbeats (seconds)
        self.heartbeat_check_interval = max(0.5, min(5.0, worker_ttl / 4))
        self.validate_each_step = validate
        self.now = 0.0
        self.log = TransitionLog(transition_log_length)
        self.steals = 0  # tasks moved by work stealing (BalanceWork), ever
        self.stimulus_id = ""
        self._moved: list[TaskState] = []  # tasks moved by the current event (for validation)
        self._generation = count()
        #: task prefix -> its runs' recent mean duration (s), as the workers report them
        self.prefix_duration: dict[str, float] = {}
        self.n_forgotten = 0  # tasks ever forgotten (a Prometheus counter)
        self._out: list = []  # messages of the current event, to clients; workers' are batched
        self._share = SetSharer()
        self._worker_batches: dict[str, list] = defaultdict(list)
        self._moves = {pair: getattr(self, name) for pair, name in MOVES.items()}
        self._handlers = {
            ev.ClientConnected: self._client_connected,
            ev.ClientDisconnected: self._client_disconnected,
            ev.GraphSubmitted: self._graph_submitted,
            ev.KeysWanted: self._keys_wanted,
            ev.KeysFireAndForget: self._keys_fire_and_forget,
            ev.KeysReleased: self._keys_released,
            ev.KeysCancelled: self._keys_cancelled,
            ev.TasksRetried: self._tasks_retried,
            ev.DataScattered: self._data_scattered,
            ev.WorkerJoined: self._worker_joined,
            ev.WorkerLeft: self._worker_left,
            ev.WorkerHeartbeat: self._worker_heartbeat,
            ev.WorkerStatusChanged: self._worker_status_changed,
            ev.CheckHeartbeats: self._check_heartbeats,
            ev.BalanceWork: self._balance_work,
            ev.TaskFinished: self._task_finished,
            ev.TaskErred: self._task_erred,
            ev.TaskCancelledOnWorker: self._task_cancelled_on_worker,
            ev.TaskStarted: self._task_started,
            ev.TaskSeceded: self._task_seceded,
            ev.ReplicaAdded: self._replica_added,
            ev.DataMissing: self._data_missing,
            ev.DataUnserializable: self._data_unserializable,
            ev.ClusterRestarted: self._cluster_restarted,
            ev.ReplicaDropped: self._replica_dropped,
        }

    # ------------------------------------------------------------ entry point

    def handle(self, event, now: float = 0.0) -> list:
        """Apply one event; return the messages it causes (scheduler_messages.py).

        An exception escaping from here is a bug in trioflow and leaves the
        state inconsistent: the caller must stop using this object."""
        self.now = now
        self.stimulus_id = event.stimulus_id or type(event).__name__
        self._handlers[type(event)](event)
        self._drain_queue()
        while self._done_unowned:  # each round may finish more (a loop, not recursion)
            done, self._done_unowned = self._done_unowned, []
            self._keys_released(ev.KeysReleased(FIRE_AND_FORGET, tuple(done), self.stimulus_id))
            self._drain_queue()
        return self._flush()

    def story(self, *keys_or_stimuli) -> list[tuple]:
        """This scheduler's transitions of these keys (or caused by these
        stimuli): ``(key, start, finish, stimulus_id, time)``, oldest first."""
        return self.log.story(*keys_or_stimuli)

    def _flush(self) -> list:
        for address, to_worker in self._worker_batches.items():
            if address in self.workers:
                self._out.extend(to_worker)
        self._worker_batches.clear()
        messages, self._out = self._out, []
        moved, self._moved = self._moved, []
        if self.validate_each_step:
            if len(self.tasks) <= FULL_VALIDATE_TASKS:
                self.validate()
            else:
                self.validate_tasks(moved)
        return messages

    def _to_worker(self, msg):
        self._worker_batches[msg.worker].append(msg)

    def _free_on_worker(self, ws: WorkerState, keys):
        self._to_worker(out.FreeKeysOnWorker(ws.address, tuple(keys), self.stimulus_id))

    def _to_client(self, msg):
        if msg.client == FIRE_AND_FORGET:
            # nobody to tell: the pseudo-client lets go of a key once it is done
            if isinstance(msg, out.KEY_DONE):
                self._done_unowned.append(msg.key)
        elif msg.client in self.clients:
            self._out.append(msg)

    # ------------------------------------------------------------ queries and plans

    def who_has(self, keys=None) -> dict:
        return queries.who_has(self, keys)

    def has_what(self, workers=None) -> dict:
        return queries.has_what(self, workers)

    def identity(self) -> dict:
        return queries.identity(self)

    def rebalance_plan(self, keys=None, workers=None) -> list[tuple]:
        """Moves ``(key, sender, recipient)`` that even out the bytes of
        ``keys`` (default: all in memory) across ``workers`` (default: all)."""
        return placement.rebalance_plan(self.tasks, self.workers, keys, workers)

    def replicate_plan(self, keys, n=None, workers=None) -> dict:
        """``{worker: {key: holders}}``: copies putting each key on ``n`` of ``workers``."""
        return placement.replicate_plan(self.tasks, self.workers, keys, n, workers)

    def retire_plan(self, retiring) -> dict:
        """``{retiring worker: (recipient, keys)}``: the data only they hold, and where it goes."""
        return placement.retire_plan(self.workers, retiring)

    # ------------------------------------------------------------ invariants

    def validate(self) -> None:
        """Raise AssertionError if any invariant is broken."""
        validate_state(self)

    def validate_tasks(self, tasks) -> None:
        """The invariants of these tasks only (those still known)."""
        validate_tasks(self, tasks)

"""Events fed into the core state machines.

Every event is a small frozen dataclass.  ``stimulus_id`` says where the event
came from so that a log line can explain why a task moved.  Payloads the core
never looks into (pickled functions, exceptions) travel as opaque bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Key = Any  # str or tuple of str/int; hashable


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task of a submitted graph, as the scheduler needs it."""

    key: Key
    run_spec: Any  # opaque to the scheduler; None for data-only keys
    dependencies: tuple = ()
    priority: int = 0  # user priority, higher runs first
    workers: tuple | None = None  # addresses or names, None for any
    allow_other_workers: bool = False
    retries: int = 0
    resources: dict | None = None
    actor: bool = False
    timeout: float | None = None
    is_async: bool = False  # an ``async def`` task: runs in the worker's loop


# ---------------------------------------------------------------- scheduler


@dataclass(frozen=True, slots=True)
class ClientConnected:
    client: str
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class ClientDisconnected:
    client: str
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class GraphSubmitted:
    """A client submits tasks and says which keys it wants (holds futures for)."""

    client: str
    tasks: tuple  # of TaskSpec
    wanted: tuple  # keys the client holds futures for
    fifo_timeout: float = 0.0
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class KeysWanted:
    """A client holds a new future for keys the scheduler may already know."""

    client: str
    keys: tuple
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class KeysFireAndForget:
    """Compute these keys even though no client will hold them, and forget
    each once it is done (``fire_and_forget``)."""

    keys: tuple
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class KeysReleased:
    """A client dropped its last future for these keys."""

    client: str
    keys: tuple
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class KeysCancelled:
    client: str
    keys: tuple
    force: bool = False
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class TasksRetried:
    client: str
    keys: tuple
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class DataScattered:
    """A client put data directly on workers: key -> (nbytes, holders)."""

    client: str
    nbytes: dict
    who_has: dict
    type_names: dict = field(default_factory=dict)
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class WorkerJoined:
    address: str
    nthreads: int
    memory_limit: int = 0
    name: Any = None
    resources: dict | None = None
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class WorkerLeft:
    address: str
    stimulus_id: str = ""
    #: how its process ended, when known ("exit code 3", "signal SIGKILL");
    #: named in the KilledWorker error of the tasks it was running
    cause: str = ""


@dataclass(frozen=True, slots=True)
class WorkerStatusChanged:
    """A worker paused (its memory passed the pause threshold: send it no
    new tasks) or runs again (``status`` "paused" or "running"), or is being
    retired ("closing_gracefully": no new tasks, its data is copied away,
    and its closing counts against none of its tasks; it stays so)."""

    address: str
    status: str
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class WorkerHeartbeat:
    address: str
    metrics: dict | None = None
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class CheckHeartbeats:
    """Periodic tick: workers silent for longer than the TTL are removed."""

    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class BalanceWork:
    """Periodic tick: move tasks that have not started from saturated
    workers to idle ones (work stealing, ``core/stealing.py``)."""

    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class TaskFinished:
    worker: str
    key: Key
    nbytes: int = 0
    type_name: str = ""
    duration: float = 0.0
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class TaskErred:
    worker: str
    key: Key
    exception: Any = None  # opaque pickled exception
    traceback: Any = None  # opaque pickled traceback
    text: str = ""
    kind: str = ""  # an error class name from trioflow.errors, for non-user errors
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class TaskCancelledOnWorker:
    """A worker stopped a task it was told to run (its deadline passed or the
    worker closes) and the task was still wanted: rerun or err it."""

    worker: str
    key: Key
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """A worker began running a task it was sent: from now until the task
    ends there, the worker's death counts against the task."""

    worker: str
    key: Key
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class TaskSeceded:
    worker: str
    key: Key
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class ReplicaAdded:
    """A worker holds a copy of keys (fetched as dependencies, or replicated)."""

    worker: str
    nbytes: dict
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class DataMissing:
    """A worker asked ``holder`` for ``key`` and did not get it."""

    worker: str
    key: Key
    holder: str
    stimulus_id: str = ""


# ---------------------------------------------------------------- worker


@dataclass(frozen=True, slots=True)
class ComputeTask:
    key: Key
    run_spec: Any
    who_has: dict  # dependency key -> tuple of holder addresses
    nbytes: dict  # dependency key -> nbytes
    priority: tuple = ()
    resources: dict | None = None
    actor: bool = False
    is_async: bool = False
    stimulus_id: str = ""
    timeout: float | None = None  # seconds a run of it may take (submit timeout=)


@dataclass(frozen=True, slots=True)
class FreeKeys:
    keys: tuple
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class ExecuteSuccess:
    key: Key
    nbytes: int
    type_name: str = ""
    duration: float = 0.0
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class ExecuteFailure:
    key: Key
    exception: Any = None
    traceback: Any = None
    text: str = ""
    kind: str = ""
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class ExecuteTimedOut:
    """A run was stopped at its deadline (``Execute.timeout``): whatever it
    produced does not count."""

    key: Key
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class ExecuteCancelled:
    """A running task stopped because it was cancelled (no result)."""

    key: Key
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class GatherDone:
    """A fetch from ``peer`` ended: ``nbytes`` for keys received, ``missing``
    for keys the peer did not have, ``failed`` True if the peer was unreachable."""

    peer: str
    nbytes: dict
    missing: tuple = ()
    failed: bool = False
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Data was put on this worker directly (scatter, replicate)."""

    nbytes: dict
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class Seceded:
    key: Key
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class RejoinRequested:
    key: Key
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class WorkerClosing:
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class MemoryMeasured:
    """The shell measured this worker's process memory (RSS, bytes): spill
    past the spill threshold, pause past the pause threshold."""

    process_memory: int
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class SpillFailed:
    """The shell could not write ``key`` to disk (it cannot be pickled, or the
    disk is full): it stays in memory, and is not tried again."""

    key: Key
    text: str = ""
    stimulus_id: str = ""


# ---------------------------------------------------------------- worker instructions


@dataclass(frozen=True, slots=True)
class Execute:
    key: Key
    timeout: float | None = None  # stop this run after so many seconds; it errs


@dataclass(frozen=True, slots=True)
class Fetch:
    peer: str
    keys: tuple


@dataclass(frozen=True, slots=True)
class SendToScheduler:
    msg: dict


@dataclass(frozen=True, slots=True)
class DeleteData:
    key: Key


@dataclass(frozen=True, slots=True)
class CancelExecution:
    key: Key


@dataclass(frozen=True, slots=True)
class GrantRejoin:
    key: Key


@dataclass(frozen=True, slots=True)
class Spill:
    """Move ``key``'s value from memory to the worker's disk storage."""

    key: Key


@dataclass(frozen=True, slots=True)
class Unspill:
    """Read ``key``'s value back from disk into memory (a task here needs it)."""

    key: Key


@dataclass(frozen=True, slots=True)
class DataUnserializable:
    """A worker holds ``key`` but cannot pickle it to send it anywhere."""

    worker: str
    key: Key
    text: str
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class ClusterRestarted:
    """Forget every task: clients are told their futures are cancelled."""

    reason: str = "the cluster was restarted"
    stimulus_id: str = ""


@dataclass(frozen=True, slots=True)
class ReplicaDropped:
    """Drop one of several copies of a key (rebalancing)."""

    worker: str
    key: Key
    stimulus_id: str = ""

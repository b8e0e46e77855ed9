"""The scheduler's per-task and per-worker records, kept small.

A million held tasks cost a million ``TaskState`` objects, so each one is
``__slots__`` only, its relations start as one shared empty frozenset and
get a set of their own only while they have members, the sets of clients
and holders (``who_wants``, ``who_has``) are frozensets shared by every task
with the same members, and a priority is one int that sorts as the
``(-user priority, graph, position)`` tuple it stands for.
"""
from __future__ import annotations

from trioflow.core.keys import key_prefix

#: the empty set every task's relations start as (never mutated)
EMPTY: frozenset = frozenset()


def plus(members, item):
    """``members`` with ``item`` added: a set of the task's own once needed."""
    if members is EMPTY:
        return {item}
    members.add(item)
    return members


def minus(members, item):
    """``members`` without ``item``; the shared empty set once none is left."""
    if members:
        members.discard(item)
        if members:
            return members
    return EMPTY


class TaskState:
    __slots__ = (
        "key", "prefix", "run_spec", "state", "dependencies", "dependents",
        "waiting_on", "waiters", "who_wants", "who_has", "processing_on",
        "priority", "nbytes", "type_name", "error", "exception_blame", "retries",
        "worker_restrictions", "allow_other_workers", "resources", "deaths", "executing_on",
        "actor", "timeout", "long_running", "is_async",
    )

    def __init__(self, key, run_spec=None):
        self.key = key
        self.prefix = key_prefix(key)
        self.run_spec = run_spec
        self.state = "released"
        # relations start as the shared empty set: a task gets a set of its
        # own only while it has members (see plus, minus), and who_wants /
        # who_has are frozensets shared by every task with the same members
        # (SetSharer), so a held task costs no set at all
        self.dependencies: set[TaskState] = EMPTY
        self.dependents: set[TaskState] = EMPTY
        self.waiting_on: set[TaskState] = EMPTY
        self.waiters: set[TaskState] = EMPTY
        self.who_wants: frozenset[str] = EMPTY
        self.who_has: frozenset[WorkerState] = EMPTY
        self.processing_on: WorkerState | None = None
        # one int ordered as (-user priority, graph, position) is: 32 bytes
        # instead of a tuple's 64 and its ints' (see priority_int, priority_tuple)
        self.priority: int = 0
        self.nbytes = 0
        self.type_name = ""
        #: (exception, traceback, text, kind) of its own failure, or None
        self.error: tuple | None = None
        self.exception_blame: TaskState | None = None
        self.retries = 0
        self.worker_restrictions: set | None = None
        self.allow_other_workers = False
        self.resources: dict | None = None
        # dask's rule: a worker's death counts against a task only if the
        # worker had started running it, not if it was only assigned there
        self.deaths: tuple[str, ...] = ()  # "address (how it died)" of each counted death
        # the worker that reported starting the current run; meaningful only
        # while processing_on is that same worker
        self.executing_on: WorkerState | None = None
        self.actor = False
        self.timeout = None
        self.long_running = False
        self.is_async = False

    def __repr__(self):
        return f"<Task {self.key!r} {self.state}>"

    @property
    def suspicious(self) -> int:
        """How many workers died while running it (dask's ``suspicious``)."""
        return len(self.deaths)

    @property
    def exception(self):
        return self.error[0] if self.error else None

    @property
    def traceback(self):
        return self.error[1] if self.error else None

    @property
    def text(self) -> str:
        return self.error[2] if self.error else ""

    @property
    def kind(self) -> str:
        return self.error[3] if self.error else ""

    def __hash__(self):
        # by key, not id(): set iteration order (and so every decision made
        # while walking a set of tasks) must not change from run to run
        return hash(self.key)

    def __lt__(self, other):  # for heaps of (priority, task)
        return self.priority < other.priority


class WorkerState:
    __slots__ = ("address", "nthreads", "memory_limit", "name", "resources",
                 "processing", "long_running", "has_what", "nbytes", "last_seen",
                 "metrics", "status")

    def __init__(self, address, nthreads, memory_limit=0, name=None, resources=None):
        self.address = address
        self.nthreads = nthreads
        self.memory_limit = memory_limit
        self.name = name if name is not None else address
        self.resources = dict(resources or {})
        self.processing: set[TaskState] = set()
        self.long_running: set[TaskState] = set()
        self.has_what: set[TaskState] = set()
        self.nbytes = 0
        self.last_seen = 0.0
        self.metrics: dict = {}
        #: "paused" while its memory is past the pause threshold, or
        #: "closing_gracefully" once retired: sent no new tasks
        self.status = "running"

    def __repr__(self):
        return f"<Worker {self.address!r} processing={len(self.processing)}>"

    def __hash__(self):
        return hash(self.address)  # deterministic set order, as for TaskState

    @property
    def occupancy(self) -> float:
        return (len(self.processing) - len(self.long_running)) / max(self.nthreads, 1)



_GRAPH_BITS = 40  # graphs and positions in a graph below 2**40 each


def priority_int(user_priority: int, generation: int, order: int) -> int:
    """``(-user_priority, generation, order)`` as one int that sorts the same."""
    return ((-int(user_priority) << _GRAPH_BITS) + generation << _GRAPH_BITS) + order


def priority_tuple(priority: int) -> tuple:
    """The ``(-user priority, graph, position)`` tuple a priority int stands for."""
    rest, order = divmod(priority, 1 << _GRAPH_BITS)
    user, generation = divmod(rest, 1 << _GRAPH_BITS)
    return (user, generation, order)




class Interner:
    """The one object kept for each distinct (hashable) value it is given:
    a million tasks with the same who_wants, or the same pickled function,
    share one object instead of holding a copy each.  Bounded: past
    ``limit`` values it starts again, losing only the sharing."""

    __slots__ = ("_values", "_limit")

    def __init__(self, limit: int = 4096):
        self._values: dict = {}
        self._limit = limit

    def __call__(self, value):
        shared = self._values.get(value)
        if shared is None:
            if len(self._values) >= self._limit:
                self._values.clear()
            shared = self._values[value] = value
        return shared

    def clear(self):
        self._values.clear()


class SetSharer(Interner):
    """An Interner of frozensets: ``share(ts.who_wants | {client})``."""

    __slots__ = ()

    def __call__(self, members) -> frozenset:
        return super().__call__(frozenset(members))

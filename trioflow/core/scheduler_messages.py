"""What the scheduler's state machine asks the shell to send.

``SchedulerState.handle`` returns a list of these small frozen records, each
addressed to one worker (``worker``) or one client (``client``); the shell
turns them into wire messages (server/scheduler_wire.py) and sends them.
``CloseWorker`` is for the shell itself: it closes that worker's connection.
Payloads the core never looks into (pickled functions, exceptions) travel
as they came.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Key = Any

#: the pseudo-client that holds fire_and_forget keys until they are done; the
#: state never returns a message for it
FIRE_AND_FORGET = "fire-and-forget"


# ---------------------------------------------------------------- to a worker


@dataclass(frozen=True, slots=True)
class ComputeTaskOnWorker:
    """Run ``key``: its dependencies are on ``who_has`` ({key: [address]})."""

    worker: str
    key: Key
    run_spec: Any
    who_has: dict
    nbytes: dict
    priority: tuple
    resources: dict | None
    actor: bool
    timeout: float | None
    is_async: bool
    stimulus_id: str


@dataclass(frozen=True, slots=True)
class FreeKeysOnWorker:
    """Drop these keys: their data, or their run if one is going on."""

    worker: str
    keys: tuple
    stimulus_id: str


# ---------------------------------------------------------------- to a client


@dataclass(frozen=True, slots=True)
class KeyInMemory:
    """The client's futures for ``key`` are finished; ``workers`` hold it."""

    client: str
    key: Key
    type_name: str
    workers: tuple


@dataclass(frozen=True, slots=True)
class KeyErred:
    """The client's futures for ``key`` err: with this exception, or with an
    error of trioflow's (``kind``, ``text``) when there is none."""

    client: str
    key: Key
    exception: Any
    traceback: Any
    text: str
    kind: str


@dataclass(frozen=True, slots=True)
class KeyCancelled:
    """The client's futures for ``key`` are cancelled (``reason``: why, if said)."""

    client: str
    key: Key
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class KeyLost:
    """``key`` was in memory and its last copy is gone: pending again."""

    client: str
    key: Key


@dataclass(frozen=True, slots=True)
class KeyRetried:
    """``key`` erred and is being computed again: pending again."""

    client: str
    key: Key


# ---------------------------------------------------------------- to the shell


@dataclass(frozen=True, slots=True)
class CloseWorker:
    """The state removed this worker (``reason``): close its connection."""

    worker: str
    reason: str


TO_WORKER = (ComputeTaskOnWorker, FreeKeysOnWorker)
TO_CLIENT = (KeyInMemory, KeyErred, KeyCancelled, KeyLost, KeyRetried)
#: what finishes a key for the client that wanted it
KEY_DONE = (KeyInMemory, KeyErred, KeyCancelled)

"""The scheduler core's messages (core/scheduler_messages.py) as the wire
dicts workers and clients read (their schemas: protocol/messages.py)."""
from __future__ import annotations

from trioflow.core import scheduler_messages as out


def _compute(m: out.ComputeTaskOnWorker) -> dict:
    return {"op": "compute-task", "key": m.key, "run_spec": m.run_spec, "who_has": m.who_has,
            "nbytes": m.nbytes, "priority": m.priority, "resources": m.resources,
            "actor": m.actor, "timeout": m.timeout, "is_async": m.is_async,
            "stimulus_id": m.stimulus_id}


def _free(m: out.FreeKeysOnWorker) -> dict:
    return {"op": "free-keys", "keys": list(m.keys), "stimulus_id": m.stimulus_id}


def _in_memory(m: out.KeyInMemory) -> dict:
    return {"op": "key-in-memory", "key": m.key, "type": m.type_name, "workers": list(m.workers)}


def _erred(m: out.KeyErred) -> dict:
    return {"op": "task-erred", "key": m.key, "exception": m.exception,
            "traceback": m.traceback, "text": m.text, "kind": m.kind}


def _cancelled(m: out.KeyCancelled) -> dict:
    if m.reason is None:
        return {"op": "cancelled-key", "key": m.key}
    return {"op": "cancelled-key", "key": m.key, "reason": m.reason}


_TO_WORKER = {out.ComputeTaskOnWorker: _compute, out.FreeKeysOnWorker: _free}
_TO_CLIENT = {
    out.KeyInMemory: _in_memory,
    out.KeyErred: _erred,
    out.KeyCancelled: _cancelled,
    out.KeyLost: lambda m: {"op": "lost-data", "key": m.key},
    out.KeyRetried: lambda m: {"op": "task-retried", "key": m.key},
}


def to_worker(m) -> dict | None:
    """The wire dict of a message for ``m.worker``, or None if ``m`` is for a client."""
    encode = _TO_WORKER.get(type(m))
    return None if encode is None else encode(m)


def to_client(m) -> dict:
    """The wire dict of a message for ``m.client``."""
    return _TO_CLIENT[type(m)](m)

"""What a worker answers: requests from its peers and clients (``get-data``,
``update-data``, ``identity``) and from its scheduler (``run``,
``replicate``, ``task-stream-since``, ``story``), and how values another
process sent are taken in (one path for fetches, scattered data and replicas).

(Split from trioflow/server/worker.py; each handler is ``(worker, msg, inproc)``.)
"""
from __future__ import annotations

import logging

from trioflow.core import events as ev
from trioflow.errors import SerializationError
from trioflow.protocol.serialize import deserialize, serialize, sizeof
from trioflow.server.dispatch import call_sent_function
from trioflow.server.stimuli import new_stimulus_id, story_in_wall_time

logger = logging.getLogger("trioflow.worker")


def get_data(worker, msg, inproc):
    data, errors = {}, {}
    for key in msg["keys"]:
        if key not in worker.data:
            continue
        if inproc:
            data[key] = worker.data[key]
            continue
        try:
            data[key] = worker.data.serialized(key)  # a spilled one: its file's frames
        except Exception as exc:
            value = worker.data.fast.get(key)
            text = (f"cannot pickle the result of {key!r} ({type(value).__name__}) to send "
                    f"it from {worker.address}: {type(exc).__name__}: {exc}")
            errors[key] = text
            worker.scheduler.send({"op": "unserializable", "key": key, "text": text})
    return {"data": data, "errors": errors}


def load(worker, payloads: dict, source: str) -> tuple[dict, dict]:
    """Values another process sent (a peer's results, a client's data):
    ``({key: value}, {key: why it could not be unpickled here})``."""
    values, unloadable = {}, {}
    for key, payload in payloads.items():
        try:
            values[key] = deserialize(payload)
        except Exception as exc:
            unloadable[key] = (f"cannot unpickle {key!r} from {source} on worker "
                               f"{worker.address}: {type(exc).__name__}: {exc}")
    return values, unloadable


def keep(worker, values: dict) -> dict:
    """Hold ``values`` in ``data``; returns their sizes by key."""
    nbytes = {}
    for key, value in values.items():
        worker.data[key] = value
        nbytes[key] = sizeof(value)
    return nbytes


def update_data(worker, msg, inproc):
    values, unloadable = load(worker, msg["data"], "the client")
    if unloadable:  # none kept: the caller is told the whole call failed
        raise SerializationError("; ".join(unloadable.values()))
    nbytes = keep(worker, values)
    worker._handle(ev.DataReceived(nbytes, new_stimulus_id("update-data")))
    return {"nbytes": nbytes, "types": {k: type(worker.data[k]).__name__ for k in nbytes}}


async def run_function(worker, msg, inproc):
    result = await call_sent_function(msg, "dask_worker", worker)
    return result if inproc else serialize(result)


async def replicate(worker, msg, inproc):
    """Fetch copies of keys from their holders; report them as replicas."""
    by_holder: dict = {}
    for key, holders in msg["who_has"].items():
        if key not in worker.data and holders:
            by_holder.setdefault(holders[0], []).append(key)
    nbytes = {}
    for holder, keys in by_holder.items():
        conn = await worker._peers.get(holder)
        result = await conn.request({"op": "get-data", "keys": keys})
        values, unloadable = load(worker, result.get("data") or {}, holder)
        for text in unloadable.values():
            logger.warning("worker %s keeps no replica: %s", worker.address, text)
        nbytes.update(keep(worker, values))
    if nbytes:
        worker._handle(ev.DataReceived(nbytes, new_stimulus_id("replicate")))
        worker.scheduler.send({"op": "add-keys", "nbytes": nbytes})
    return nbytes


def task_stream_since(worker, msg, inproc):
    """What the dashboard polls: runs and transfers since ``cursor``, and
    this worker's counts now."""
    found = worker.task_stream.since(int(msg.get("cursor") or 0),
                                   min(int(msg.get("limit") or 2_000), 10_000))
    found["metrics"] = worker.metrics()
    return found


def story(worker, msg, inproc):
    return story_in_wall_time(worker.state.story(*(msg.get("keys") or ())))


def identity(worker, msg, inproc):
    return {"type": "Worker", "address": worker.address, "name": worker.name,
            "nthreads": worker.nthreads, "memory_limit": worker.memory_limit,
            "keys": list(worker.data)}


#: what a worker's listening port answers (see messages.PEER_TO_WORKER)
PEER_REQUESTS = {
    "get-data": get_data,
    "update-data": update_data,
    "identity": identity,
}


#: requests only the worker's scheduler may send, over the worker's own connection


#: (the dashboard's polls included)
SCHEDULER_REQUESTS = {
    "run": run_function,
    "replicate": replicate,
    "task-stream-since": task_stream_since,
    "story": story,
}

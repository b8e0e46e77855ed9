"""What each op's message must hold, checked where a message enters a server.

One small schema per op: its required and optional fields and each field's
type.  ``Accepts`` is the set of ops one end of a connection takes (a
scheduler from clients, a scheduler from workers, a worker's listening port,
a worker from its scheduler); a message with an op outside it, a missing
field or a field of the wrong type raises ``BadMessage``, and the connection
it came on is closed (see ``comm.connection``).  So no handler inside a
server ever sees a wrong type from a peer.

Hand-written rather than msgspec structs: messages are already decoded by
msgpack (with our own extension type for pickled payloads) into dicts the
handlers read; msgspec would mean a second decoder and a new dependency for
checks that are a few ``type(x) is`` tests per field.  Fields a schema does
not name are allowed (a newer peer may send more).
"""
from __future__ import annotations

from trioflow.protocol import primitives
from trioflow.protocol.schema import (  # noqa: F401 - messages.X is how servers name them
    ANY, ADDRESSES, BOOL, BYTES, INT, KEY, KEYS, NAME, NUMBER, PAYLOAD, RESOURCES, STR, TIMEOUT,
    Accepts, BadMessage, Field, Schema, _shown, dict_of, list_of, opt, record)


# ---------------------------------------------------------------- replies (every connection)

#: ops a Connection handles itself, on every connection
CONNECTION_OPS = {
    "reply": {"rid": INT, "error": opt(STR), "exception": opt(PAYLOAD),
              "traceback": opt(PAYLOAD), "cancelled": opt(BOOL)},
    "cancel-request": {"rid": INT},
}

# ---------------------------------------------------------------- the handshake

HELLO = Schema({"version": ANY, "proof": opt(BYTES), "info": opt(dict_of(STR, ANY))})

_WORKER_INFO = Schema({
    "address": STR, "nthreads": opt(INT), "memory_limit": opt(INT), "name": opt(NAME),
    "resources": opt(RESOURCES), "pid": opt(INT), "nanny": opt(STR), "host": opt(STR)})
_INFO_BY_ROLE = {
    "client": Schema({"id": opt(STR), "name": opt(NAME)}),
    "worker": _WORKER_INFO,
    "peer": Schema({"address": opt(STR)}),
    "nanny": Schema({"pid": opt(INT)}),
    "scheduler": Schema({}),
}


def check_peer_info(info: dict, roles: tuple[str, ...]) -> None:
    """Raise BadMessage unless ``info`` (a hello's) names one of ``roles``
    and has that role's fields."""
    role = info.get("role")
    if type(role) is not str or role not in roles:
        raise BadMessage(f"the hello names role {_shown(role)}; this server takes "
                         + ", ".join(map(repr, roles)))
    error = _INFO_BY_ROLE[role].error(info)
    if error is not None:
        raise BadMessage(f"bad hello from a {role}: {error}")
    nthreads = info.get("nthreads")
    if nthreads is not None and nthreads < 1:
        raise BadMessage(f"bad hello from a {role}: nthreads must be at least 1, not {nthreads}")


# ---------------------------------------------------------------- client -> scheduler

_TASK = record(key=KEY, run_spec=opt(ANY), deps=opt(KEYS), priority=opt(ANY),
               workers=opt(list_of(NAME)), allow_other_workers=opt(BOOL), retries=opt(INT),
               resources=opt(RESOURCES), actor=opt(BOOL), timeout=opt(TIMEOUT),
               is_async=opt(BOOL))

#: what every task of a graph shares (client/options.graph_options)
_GRAPH_OPTIONS = record(priority=opt(ANY), workers=opt(list_of(NAME)),
                        allow_other_workers=opt(BOOL), retries=opt(INT),
                        resources=opt(RESOURCES), timeout=opt(TIMEOUT))

CLIENT_TO_SCHEDULER = {
    "update-graph": {"tasks": list_of(_TASK), "wanted": opt(KEYS), "hold": opt(BOOL)},
    # a dask collection's pickled expression, its graph built by the scheduler
    "update-graph-expr": {"expr": BYTES, "wanted": KEYS, "options": opt(_GRAPH_OPTIONS)},
    "release-keys": {"keys": KEYS, "hold": opt(BOOL)},
    "want-keys": {"keys": KEYS},
    "cancel-keys": {"keys": KEYS, "force": opt(BOOL)},
    "fire-and-forget": {"keys": KEYS},
    "retry-keys": {"keys": KEYS},
    "heartbeat": {},
}

#: requests a client (or a worker) may make of the scheduler
SCHEDULER_REQUESTS = {
    "scatter-done": {"nbytes": dict_of(KEY, INT), "who_has": dict_of(KEY, ADDRESSES),
                     "types": opt(dict_of(KEY, STR))},
    "who-has": {"keys": opt(KEYS)},
    "has-what": {"workers": opt(ADDRESSES)},
    "nthreads": {"workers": opt(list_of(NAME))},
    "identity": {},
    "wait-for-workers": {"n": INT},
    "run-on-scheduler": {"function": PAYLOAD, "args": opt(PAYLOAD), "kwargs": opt(PAYLOAD)},
    "broadcast": {"workers": ADDRESSES, "function": PAYLOAD, "args": opt(PAYLOAD),
                  "kwargs": opt(PAYLOAD)},
    "replicate": {"keys": KEYS, "n": opt(INT), "workers": opt(ADDRESSES)},
    "worker-addresses": {},
    "retire-workers": {"workers": opt(ADDRESSES)},
    "terminate": {},
    "restart": {"timeout": opt(TIMEOUT)},
    "nbytes": {"keys": opt(KEYS)},
    "story": {"keys": opt(KEYS), "on_error": opt(STR)},
    "processing": {"workers": opt(list_of(NAME))},
    "retire": {"workers": opt(ADDRESSES), "close": opt(BOOL)},
    "rebalance": {"keys": opt(KEYS), "workers": opt(ADDRESSES)},
    # what cluster.adapt() asks each interval (deploy/adaptive.py)
    "adaptive-target": {"target_duration": opt(TIMEOUT), "minimum": opt(INT),
                        "maximum": opt(INT)},
}

# the coordination primitives' scheduler halves (protocol/primitives.py)
EXTENSION_REQUESTS = primitives.TO_SCHEDULER

# ---------------------------------------------------------------- worker -> scheduler

WORKER_TO_SCHEDULER = {
    "task-finished": {"key": KEY, "nbytes": opt(INT), "type": opt(STR),
                      "duration": opt(NUMBER)},
    "task-erred": {"key": KEY, "exception": opt(PAYLOAD), "traceback": opt(PAYLOAD),
                   "text": opt(STR), "kind": opt(STR)},
    "add-keys": {"nbytes": dict_of(KEY, INT)},
    "missing-data": {"key": KEY, "holder": STR},
    "long-running": {"key": KEY},
    "task-cancelled": {"key": KEY},
    "unserializable": {"key": KEY, "text": opt(STR)},
    "heartbeat": {"metrics": opt(dict_of(STR, ANY))},
    "worker-status-change": {"status": Field("'paused' or 'running'",
                                             lambda v, inproc=False: v in ("paused", "running"))},
}

# ---------------------------------------------------------------- nanny -> scheduler

#: a nanny's reports on the worker process it runs (see server/deaths.py)
NANNY_TO_SCHEDULER = {
    "worker-started": {"address": STR},
    "worker-ended": {"address": STR, "cause": STR},
}

# ---------------------------------------------------------------- to a worker

#: what peers (other workers) and clients may ask of a worker's listening port:
#: data, actors and Pub/Sub; never ``run`` or what only its scheduler sends
PEER_TO_WORKER = {
    "get-data": {"keys": KEYS},
    "update-data": {"data": dict_of(KEY, PAYLOAD)},
    "identity": {},
    **primitives.PEER_TO_WORKER,
}

SCHEDULER_TO_WORKER = {
    "compute-task": {"key": KEY, "run_spec": ANY, "who_has": opt(dict_of(KEY, ADDRESSES)),
                     "nbytes": opt(dict_of(KEY, INT)), "priority": opt(ANY),
                     "resources": opt(RESOURCES), "actor": opt(BOOL), "is_async": opt(BOOL),
                     "timeout": opt(TIMEOUT)},
    "free-keys": {"keys": KEYS},
    "story": {"keys": opt(KEYS)},
    "close": {"reason": opt(STR), "restart": opt(BOOL)},
    "run": {"function": PAYLOAD, "args": opt(PAYLOAD), "kwargs": opt(PAYLOAD)},
    "replicate": {"who_has": dict_of(KEY, ADDRESSES)},
    **primitives.SCHEDULER_TO_WORKER,
    "task-stream-since": {"cursor": opt(INT)},
}

# the scheduler answers an op it does not know with an error reply; a
# worker's port refuses it: what it takes is exactly the list above
FROM_CLIENT = Accepts("the scheduler (from a client)", CONNECTION_OPS, CLIENT_TO_SCHEDULER,
                      SCHEDULER_REQUESTS, EXTENSION_REQUESTS, primitives.CLIENT_ONLY_FIELDS, strict=False)
FROM_WORKER = Accepts("the scheduler (from a worker)", CONNECTION_OPS, WORKER_TO_SCHEDULER,
                      SCHEDULER_REQUESTS, EXTENSION_REQUESTS, strict=False)
FROM_NANNY = Accepts("the scheduler (from a nanny)", CONNECTION_OPS, NANNY_TO_SCHEDULER)
FROM_PEER = Accepts("a worker's listening port", CONNECTION_OPS, PEER_TO_WORKER)
FROM_SCHEDULER = Accepts("a worker (from its scheduler)", CONNECTION_OPS, SCHEDULER_TO_WORKER,
                         strict=False)

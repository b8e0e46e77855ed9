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

from trioflow.errors import ProtocolError
from trioflow.protocol.serialize import Serialized


class BadMessage(ProtocolError):
    """A peer's message that does not match its op's schema."""


# ---------------------------------------------------------------- field types
# A field type is a predicate with a name for error messages.

class Field:
    __slots__ = ("name", "test")

    def __init__(self, name: str, test):
        self.name = name
        self.test = test  # (value, inproc) -> bool


_SCALARS = (str, int, float, bytes, bool, type(None))
#: tuple keys nest (("x", 0), 1) but never deeply; deeper is refused
_MAX_KEY_TUPLES = 64


def _is_key(value, inproc=False) -> bool:
    """A task key: str, bytes, int or float, or a tuple of those (nested)."""
    kind = type(value)
    if kind is str or kind is int or kind is bytes or kind is float:
        return True
    if kind is not tuple:
        return False
    pending = [value]
    seen = 0
    while pending:  # a worklist, not recursion: keys come from peers
        seen += 1
        if seen > _MAX_KEY_TUPLES:
            return False
        for item in pending.pop():
            if type(item) is tuple:
                pending.append(item)
            elif type(item) not in _SCALARS:
                return False
    return True


def _instance(*types):
    return lambda value, inproc=False: isinstance(value, types) and not (
        type(value) is bool and bool not in types)


STR = Field("a string", _instance(str))
INT = Field("an integer", _instance(int))
NUMBER = Field("a number", _instance(int, float))
BOOL = Field("a boolean", lambda v, inproc=False: type(v) is bool or v in (0, 1))
BYTES = Field("bytes", _instance(bytes))
KEY = Field("a key (a string, number, bytes or a tuple of them)", _is_key)
ANY = Field("anything", lambda v, inproc=False: True)
#: a pickled value (pickle bytes, or frames); in-process connections pass the object itself
PAYLOAD = Field("a pickled value", lambda v, inproc=False: inproc or v is None or type(v) in (
    Serialized, bytes))
NAME = Field("a name (a string, number or tuple)", _is_key)
TIMEOUT = Field("a number of seconds", lambda v, inproc=False: v is None or (
    type(v) in (int, float)))


def list_of(item: Field) -> Field:
    test = item.test

    def check(value, inproc=False):
        return type(value) in (list, tuple) and all(test(x, inproc) for x in value)
    return Field(f"a list, each item {item.name}", check)


def dict_of(key: Field, value: Field) -> Field:
    key_test, value_test = key.test, value.test

    def check(mapping, inproc=False):
        return type(mapping) is dict and all(
            key_test(k, inproc) and value_test(v, inproc) for k, v in mapping.items())
    return Field(f"a map of {key.name} to {value.name}", check)


def one_of(*fields: Field) -> Field:
    return Field(" or ".join(f.name for f in fields),
                 lambda v, inproc=False: any(f.test(v, inproc) for f in fields))


def record(**fields) -> Field:
    """A nested message-like map with its own schema."""
    schema = Schema(fields)

    def check(value, inproc=False):
        return type(value) is dict and schema.error(value, inproc) is None
    check.schema = schema
    return Field("a map of " + ", ".join(fields), check)


KEYS = list_of(KEY)
ADDRESSES = list_of(STR)
RESOURCES = dict_of(STR, NUMBER)


class Optional:
    """A field that may be missing or None."""

    __slots__ = ("field",)

    def __init__(self, field: Field):
        self.field = field


def opt(field: Field) -> Optional:
    return Optional(field)


# ---------------------------------------------------------------- schemas

class Schema:
    __slots__ = ("required", "optional")

    def __init__(self, fields: dict):
        self.required = [(n, f) for n, f in fields.items() if isinstance(f, Field)]
        self.optional = [(n, f.field) for n, f in fields.items() if isinstance(f, Optional)]

    def error(self, msg: dict, inproc: bool = False) -> str | None:
        """What is wrong with ``msg``, or None."""
        for name, field in self.required:
            if name not in msg:
                return f"field {name!r} is missing"
            if not field.test(msg[name], inproc):
                return f"field {name!r} must be {field.name}, not {_shown(msg[name])}"
        for name, field in self.optional:
            value = msg.get(name)
            if value is not None and not field.test(value, inproc):
                return f"field {name!r} must be {field.name}, not {_shown(value)}"
        return None


def _shown(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '...' if len(text) > 40 else text}"


class Accepts:
    """The ops one end of a connection takes, each with its schema.  Not
    ``strict``: an op without a schema still reaches the handler, which
    answers that it does not know it (so a newer peer's request fails
    alone); strict ends close the connection instead."""

    def __init__(self, what: str, *tables: dict, strict: bool = True):
        self.what = what
        self.strict = strict
        self.schemas = {op: Schema(fields) for table in tables for op, fields in table.items()}

    def __contains__(self, op) -> bool:
        return op in self.schemas

    def check(self, msg: dict, inproc: bool = False) -> None:
        """Raise BadMessage unless ``msg`` is a message this end takes."""
        op = msg.get("op")
        schema = self.schemas.get(op) if type(op) is str else None
        if schema is None and not self.strict and type(op) is str:
            schema = _NO_FIELDS
        if schema is None:
            raise BadMessage(f"{self.what} does not take op {_shown(op)}"
                             if type(op) is str or op is None and "op" in msg
                             else f"a message without a valid op: {_shown(op)}")
        rid = msg.get("rid")
        if rid is not None and type(rid) is not int:
            raise BadMessage(f"{op!r}: field 'rid' must be an integer, not {_shown(rid)}")
        error = schema.error(msg, inproc)
        if error is not None:
            raise BadMessage(f"bad {op!r} message: {error}")


_NO_FIELDS = Schema({})

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

CLIENT_TO_SCHEDULER = {
    "update-graph": {"tasks": list_of(_TASK), "wanted": opt(KEYS), "hold": opt(BOOL)},
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
    "replicate": {"plan": dict_of(STR, dict_of(KEY, ADDRESSES))},
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

# the coordination primitives' scheduler halves (extensions/)
_NAMED = {"name": NAME}
_DELIVERY = {"delivery": opt(INT)}
_SEMAPHORE = {
    "acquire": {"name": NAME, "lease": NAME, "max_leases": opt(INT), "timeout": opt(TIMEOUT)},
    "release": {"name": NAME, "lease": NAME},
    "value": _NAMED,
    "close": {"name": NAME, "leases": opt(list_of(NAME))},
}
EXTENSION_REQUESTS = {
    "queue-put": {"name": NAME, "maxsize": opt(INT), "payload": PAYLOAD, "keys": opt(KEYS),
                  "timeout": opt(TIMEOUT)},
    "queue-get": {"name": NAME, "maxsize": opt(INT), "batch": opt(one_of(BOOL, INT)),
                  "timeout": opt(TIMEOUT)},
    "queue-qsize": _NAMED,
    "queue-delivered": _DELIVERY,
    "queue-release": _NAMED,
    "queue-put-back": {"name": NAME, "maxsize": opt(INT), "delivery": opt(INT),
                       "items": list_of(Field("a (payload, keys) pair",
                                              lambda v, inproc=False: type(v) in (list, tuple)
                                              and len(v) == 2 and PAYLOAD.test(v[0], inproc)
                                              and KEYS.test(v[1], inproc)))},
    "variable-set": {"name": NAME, "payload": PAYLOAD, "keys": opt(KEYS)},
    "variable-get": {"name": NAME, "timeout": opt(TIMEOUT)},
    "variable-delivered": _DELIVERY,
    "variable-delete": _NAMED,
    "event-set": _NAMED, "event-clear": _NAMED, "event-is-set": _NAMED,
    "event-wait": {"name": NAME, "timeout": opt(TIMEOUT)},
    **{f"{kind}-{op}": fields for kind in ("lock", "semaphore")
       for op, fields in _SEMAPHORE.items()},
    "channel-append": {"name": NAME, "maxlen": opt(INT), "keys": opt(KEYS), "stop": opt(BOOL)},
    "channel-read": {"name": NAME, "maxlen": opt(INT), "index": opt(INT), "wait": opt(TIMEOUT)},
    "publish-dataset": {"names": list_of(NAME), "payloads": list_of(PAYLOAD),
                        "keys": list_of(KEYS), "override": opt(BOOL)},
    "get-dataset": {"names": list_of(NAME)},
    "list-datasets": {},
    "unpublish-dataset": {"names": list_of(NAME)},
    "dataset-delivered": _DELIVERY,
    "log-event": {"topic": one_of(STR, list_of(STR)), "msg": opt(ANY)},
    "get-events": {"topic": opt(STR)},
    "subscribe-topic": {"topic": STR},
    "unsubscribe-topic": {"topic": STR},
    "set-metadata": {"keys": list_of(KEY), "value": opt(ANY)},
    "get-metadata": {"keys": list_of(KEY)},
    "register-worker-plugin": {"name": NAME, "plugin": PAYLOAD, "idempotent": opt(BOOL)},
    "unregister-worker-plugin": _NAMED,
    "pubsub-add-publisher": {"name": NAME, "registration": INT},
    "pubsub-remove-publisher": {"name": NAME, "registration": INT},
    # a worker subscribes as itself; a client names which of its Subs
    "pubsub-add-subscriber": {"name": NAME, "sub": opt(NAME)},
    "pubsub-remove-subscriber": {"name": NAME, "sub": opt(NAME)},
    "pubsub-confirm": _NAMED,
    "pubsub-msg": {"name": NAME, "msg": PAYLOAD, "clients_only": opt(BOOL)},
    "pubsub-get": {"name": NAME, "sub": NAME, "wait": opt(TIMEOUT)},
}

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
    "actor-call": {"key": KEY, "method": STR, "args": PAYLOAD},
    "actor-getattr": {"key": KEY, "attribute": STR},
    "pubsub-msg": {"name": NAME, "msg": PAYLOAD},
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
    "register-worker-plugin": {"name": NAME, "plugin": PAYLOAD},
    "unregister-worker-plugin": _NAMED,
    "pubsub-update": {"name": NAME, "registration": INT, "workers": ADDRESSES,
                      "clients": BOOL},
    "pubsub-ping": {},
    "pubsub-msg": {"name": NAME, "msg": PAYLOAD},
    "task-stream-since": {"cursor": opt(INT)},
}

# the scheduler answers an op it does not know with an error reply; a
# worker's port refuses it: what it takes is exactly the list above
_CLIENT_ONLY_FIELDS = {"pubsub-add-subscriber": {"name": NAME, "sub": NAME}}
FROM_CLIENT = Accepts("the scheduler (from a client)", CONNECTION_OPS, CLIENT_TO_SCHEDULER,
                      SCHEDULER_REQUESTS, EXTENSION_REQUESTS, _CLIENT_ONLY_FIELDS, strict=False)
FROM_WORKER = Accepts("the scheduler (from a worker)", CONNECTION_OPS, WORKER_TO_SCHEDULER,
                      SCHEDULER_REQUESTS, EXTENSION_REQUESTS, strict=False)
FROM_NANNY = Accepts("the scheduler (from a nanny)", CONNECTION_OPS, NANNY_TO_SCHEDULER)
FROM_PEER = Accepts("a worker's listening port", CONNECTION_OPS, PEER_TO_WORKER)
FROM_SCHEDULER = Accepts("a worker (from its scheduler)", CONNECTION_OPS, SCHEDULER_TO_WORKER,
                         strict=False)

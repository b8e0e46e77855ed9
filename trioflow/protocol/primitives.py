"""The messages the two halves of each coordination primitive agree on: op
names and payload shapes, as schemas (see ``schema``).  The user object
(``trioflow/client/primitives/``) sends them; the server half
(``trioflow/server/extensions/``) registers a handler under each op name.

A new primitive adds its ops here, in the table of the end that receives
them; ``messages`` merges these tables into what each end accepts, so a
handler never sees a field of the wrong type.
"""
from __future__ import annotations

import msgpack

from trioflow.protocol.schema import (
    ANY, BOOL, INT, KEY, KEYS, NAME, PAYLOAD, STR, TIMEOUT, ADDRESSES, Field, list_of, one_of,
    opt)

_NAMED = {"name": NAME}
_DELIVERY = {"delivery": opt(INT)}
_SEMAPHORE = {
    "acquire": {"name": NAME, "lease": NAME, "max_leases": opt(INT), "timeout": opt(TIMEOUT)},
    "release": {"name": NAME, "lease": NAME},
    "value": _NAMED,
    "close": {"name": NAME, "leases": opt(list_of(NAME))},
}
#: most entries one ``channel-read`` answers (a reader that gets this many reads on)
CHANNEL_READ_LIMIT = 1000

#: what user objects (and workers) send the scheduler halves
TO_SCHEDULER = {
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

#: what workers (and clients) send a worker's listening port: actor calls,
#: Pub/Sub messages between workers
PEER_TO_WORKER = {
    "actor-call": {"key": KEY, "method": STR, "args": PAYLOAD},
    "actor-getattr": {"key": KEY, "attribute": STR},
    "pubsub-msg": {"name": NAME, "msg": PAYLOAD},
}

#: what the scheduler halves send the worker halves
SCHEDULER_TO_WORKER = {
    "register-worker-plugin": {"name": NAME, "plugin": PAYLOAD},
    "unregister-worker-plugin": _NAMED,
    "pubsub-update": {"name": NAME, "registration": INT, "workers": ADDRESSES,
                      "clients": BOOL},
    "pubsub-ping": {},
    "pubsub-msg": {"name": NAME, "msg": PAYLOAD},
}

#: fields a client must send where a worker need not (a client names which Sub)
CLIENT_ONLY_FIELDS = {"pubsub-add-subscriber": {"name": NAME, "sub": NAME}}


def check_msgpack(value, what: str) -> None:
    """Raise TypeError unless ``value`` can travel as it is (event-log
    messages and metadata are stored on the scheduler unpickled, as in dask)."""
    try:
        msgpack.packb(value, use_bin_type=True)
    except Exception as exc:
        raise TypeError(f"{what} must be msgpack serializable (numbers, strings, bytes, lists, "
                        f"dicts); got {type(value).__name__}: {exc}") from None

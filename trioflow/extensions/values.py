"""Values that travel through extensions and may contain futures.

``pack`` pickles a value and lists the keys of the futures inside it (which
the extension then holds on the scheduler, keeping them alive while stored).
``unpack`` rebuilds the value in a receiving client, turning each key back
into a Future of that client (which tells the scheduler it wants the key if
it had no future of it yet).  The extension must keep the keys held until
then: hand them over before replying (``SchedulerExtension.hand_over``), or
hold them until the client acknowledges (``_common.Deliveries``, needed when
the client may drop older futures of the same keys meanwhile).
"""
from __future__ import annotations

import io
import pickle

import cloudpickle

from trioflow.errors import SerializationError
from trioflow.protocol.serialize import describe, pickle_error


def _persistent_id(keys: list, obj):
    if getattr(type(obj), "_trioflow_is_future", False):
        keys.append(obj.key)
        return ("future", obj.key)
    return None


class _Pickler(cloudpickle.Pickler):
    def __init__(self, file, keys):
        super().__init__(file, protocol=5)
        self.keys = keys

    def persistent_id(self, obj):
        return _persistent_id(self.keys, obj)


def pack(value) -> tuple[bytes, list]:
    """``(payload, keys of the futures inside value)``."""
    keys: list = []
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, keys).dump(value)
    except Exception as exc:
        raise SerializationError(pickle_error(describe(value), exc)) from exc
    return buffer.getvalue(), list(dict.fromkeys(keys))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, client):
        super().__init__(file)
        self.client = client

    def persistent_load(self, pid):
        from trioflow.client.future import Future
        _, key = pid
        # inform: the scheduler's news about the key (already in memory, erred)
        # reached this client before the reply, when it had no future to tell
        return Future(key, self.client, inform=True)


def unpack(payload: bytes, client):
    return _Unpickler(io.BytesIO(payload), client).load()

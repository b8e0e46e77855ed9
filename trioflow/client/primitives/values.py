"""Values that travel through the coordination primitives and may contain futures.

``pack`` pickles a value and lists the keys of the futures inside it (which
the scheduler half then holds, keeping them alive while stored).
``unpack`` rebuilds the value in a receiving client, turning each key back
into a Future of that client (through its port) (which tells the scheduler it wants the key if
it had no future of it yet).  The scheduler half must keep the keys held until
then: hand them over before replying (``SchedulerExtension.hand_over``), or
hold them until the client acknowledges (``Deliveries`` in
``trioflow/server/extensions/base.py``, needed when the client may drop
older futures of the same keys meanwhile).
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
    def __init__(self, file, port):
        super().__init__(file)
        self.port = port

    def persistent_load(self, pid):
        _, key = pid
        # inform: the scheduler's news about the key (already in memory, erred)
        # reached this client before the reply, when it had no future to tell
        return self.port.future(key, inform=True)


def unpack(payload: bytes, port):
    """The value of ``pack``'s payload, its futures belonging to ``port``'s client."""
    return _Unpickler(io.BytesIO(payload), port).load()

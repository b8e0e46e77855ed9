"""Pickling of user objects with out-of-band buffers (protocol 5).

A ``Serialized`` holds the pickle stream as ``frames[0]`` and each large
buffer (numpy array data, bytes) as its own frame, so a 200 MB array travels
as a view of its own memory instead of being copied into one bytestring.
The scheduler forwards ``Serialized`` values without ever unpickling them.
"""
from __future__ import annotations

import pickle
from typing import Any

import cloudpickle

from trioflow.protocol.sizeof import sizeof  # noqa: F401 - its former home

#: buffers smaller than this are kept in-band: a frame of their own costs more
_OUT_OF_BAND_MIN = 8 * 1024


class Serialized:
    __slots__ = ("frames",)

    def __init__(self, frames: list):
        self.frames = frames

    @property
    def nbytes(self) -> int:
        return sum(memoryview(f).nbytes for f in self.frames)

    def __repr__(self):
        return f"<Serialized {len(self.frames)} frames, {self.nbytes} bytes>"


def _dumps(obj, pickler_dumps) -> list:
    buffers: list = []

    def keep(buf: pickle.PickleBuffer):
        view = buf.raw()  # raises BufferError for non-contiguous data: pickle in-band then
        if view.nbytes < _OUT_OF_BAND_MIN:
            return True
        buffers.append(view)
        return False

    try:
        header = pickler_dumps(obj, protocol=5, buffer_callback=keep)
    except BufferError:
        buffers.clear()
        header = pickler_dumps(obj, protocol=5)
    return [header, *buffers]


#: frames[0] of a large bytes object sent as itself (no pickle stream starts so)
_RAW_BYTES = b"trioflow-raw-bytes"


def dumps(obj) -> list:
    """Pickle ``obj`` into frames.  Plain pickle first (fast); cloudpickle for
    what plain pickle cannot do or would pickle by a reference to __main__,
    which workers cannot import.  A large ``bytes`` object is not pickled at
    all: pickle would copy it into the stream, and again out of it."""
    if type(obj) is bytes and len(obj) >= _OUT_OF_BAND_MIN:
        return [_RAW_BYTES, obj]
    try:
        frames = _dumps(obj, pickle.dumps)
        if b"__main__" not in frames[0]:
            return frames
    except Exception:
        pass
    return _dumps(obj, cloudpickle.dumps)


def serialize(obj) -> Serialized:
    return Serialized(dumps(obj))


def deserialize(value) -> Any:
    if isinstance(value, Serialized):
        frames = value.frames
        if len(frames) == 2 and bytes(frames[0][:len(_RAW_BYTES)]) == _RAW_BYTES:
            data = frames[1]
            return data if type(data) is bytes else bytes(data)
        return pickle.loads(frames[0], buffers=frames[1:])
    return value


def dumps_function(func) -> bytes:
    """Pickle a task's function; functions from __main__ go by value."""
    return cloudpickle.dumps(func, protocol=5)


def describe(obj) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if callable(obj) and name:
        return f"function {name!r}"
    text = repr(obj)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(obj).__name__} object {text}"


def pickle_error(what: str, exc: BaseException) -> str:
    return f"cannot pickle {what}: {type(exc).__name__}: {exc}"

"""Task payloads: a function pickled once, and arguments pickled with their
dependencies (futures, or keys of a raw graph) replaced by references that
the worker swaps for the dependency's value while unpickling."""
from __future__ import annotations

import hashlib
import io
import pickle

import cloudpickle

from trioflow.errors import SerializationError
from trioflow.protocol.serialize import describe, dumps_function, pickle_error


class KeyRef:
    """A reference to another task's result inside a task's arguments."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key

    def __repr__(self):
        return f"KeyRef({self.key!r})"


# type -> whether its objects are dependencies (Futures, KeyRefs).  The
# pickler asks about every object it writes (~150 per dask task), so the
# answer is looked up per type once instead of with getattr each time.
_is_dep_type: dict = {KeyRef: True}


def _is_dep(cls) -> bool:
    is_dep = _is_dep_type.get(cls)
    if is_dep is None:
        if len(_is_dep_type) > 10_000:  # classes made on the fly must not pile up
            _is_dep_type.clear()
            _is_dep_type[KeyRef] = True
        is_dep = _is_dep_type[cls] = bool(getattr(cls, "_trioflow_is_future", False))
    return is_dep


def _persistent_id(pickler, obj):
    """The pickler's ``persistent_id``: one Python call per object pickled."""
    if _is_dep(type(obj)):
        pickler.deps[obj.key] = obj
        return ("dep", obj.key)
    return None


class _ArgPickler(pickle.Pickler):
    def __init__(self, file, deps):
        super().__init__(file, protocol=5)
        self.deps = deps

    persistent_id = _persistent_id


class _CloudArgPickler(cloudpickle.Pickler):
    def __init__(self, file, deps):
        super().__init__(file, protocol=5)
        self.deps = deps

    persistent_id = _persistent_id


def _pickle_with(pickler_class, value, deps) -> bytes:
    buffer = io.BytesIO()
    pickler_class(buffer, deps).dump(value)
    return buffer.getvalue()


def dumps_args(args: tuple, kwargs: dict) -> tuple[bytes, dict]:
    """Pickle ``(args, kwargs)``; return the bytes and the dependencies found
    (key -> the future or KeyRef that named it)."""
    return _dumps(_ArgPickler, _CloudArgPickler, (args, kwargs),
                  lambda: _culprit(args, kwargs))


def _dumps(fast, cloud, value, culprit) -> tuple[bytes, dict]:
    """``value`` pickled by ``fast``, or by ``cloud`` if it must (functions
    of ``__main__``, lambdas), with the dependencies found."""
    deps: dict = {}
    try:
        data = _pickle_with(fast, value, deps)
        if b"__main__" not in data:
            return data, deps
    except Exception:
        pass
    deps = {}
    try:
        return _pickle_with(cloud, value, deps), deps
    except Exception as exc:
        raise SerializationError(pickle_error(culprit(), exc)) from exc


def _culprit(args, kwargs) -> str:
    for i, arg in enumerate(args):
        try:
            _pickle_with(_CloudArgPickler, arg, {})
        except Exception:
            return f"argument {i} ({describe(arg)})"
    for name, arg in kwargs.items():
        try:
            _pickle_with(_CloudArgPickler, arg, {})
        except Exception:
            return f"keyword argument {name!r} ({describe(arg)})"
    return "the task's arguments"


def dumps_task_function(func) -> bytes:
    try:
        return dumps_function(func)
    except Exception as exc:
        raise SerializationError(pickle_error(describe(func), exc)) from exc


class DepValue:
    """Stands for the value of ``key`` in a payload pickled by
    ``dumps_shared``; ``loads_args`` puts the value in its place."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key

    def __reduce__(self):
        return (DepValue, (self.key,))


def _dep_reduction(pickler, obj):
    """``reducer_override``: a dependency (Future, KeyRef) becomes a DepValue;
    unlike ``persistent_id`` it is called only for objects of non-builtin
    types, so a payload of many small objects pickles at C speed."""
    if _is_dep(type(obj)):
        pickler.deps[obj.key] = obj
        return (DepValue, (obj.key,))
    return NotImplemented


class _SharedPickler(pickle.Pickler):
    def __init__(self, file, deps):
        super().__init__(file, protocol=5)
        self.deps = deps

    reducer_override = _dep_reduction


class _CloudSharedPickler(cloudpickle.Pickler):
    def __init__(self, file, deps):
        super().__init__(file, protocol=5)
        self.deps = deps

    def reducer_override(self, obj):
        reduced = _dep_reduction(self, obj)
        return super().reducer_override(obj) if reduced is NotImplemented else reduced


def dumps_shared(value) -> tuple[bytes, dict]:
    """Pickle ``((value,), {})`` as ``dumps_args`` does, in one pass for a
    large ``value`` (e.g. a thousand graph nodes): objects the nodes share are
    written once, and dependencies cost a Python call only for themselves."""
    return _dumps(_SharedPickler, _CloudSharedPickler, ((value,), {}), lambda: describe(value))


class _ArgUnpickler(pickle.Unpickler):
    def __init__(self, file, data):
        super().__init__(file)
        self.data = data

    def persistent_load(self, pid):
        _, key = pid
        return self.data[key]

    def find_class(self, module, name):
        if name == "DepValue" and module == __name__:
            return self.data.__getitem__  # DepValue(key) -> the value of key
        return super().find_class(module, name)


def loads_args(payload: bytes, data) -> tuple[tuple, dict]:
    return _ArgUnpickler(io.BytesIO(payload), data).load()


def token(*parts: bytes) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def execute_legacy_task(task):
    """Evaluate a dask-style task tuple ``(func, *args)``, nested tasks and lists included."""
    if isinstance(task, tuple) and task and callable(task[0]):
        return task[0](*(execute_legacy_task(a) for a in task[1:]))
    if isinstance(task, list):
        return [execute_legacy_task(a) for a in task]
    return task

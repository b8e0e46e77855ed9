"""How many bytes a value takes in memory: what a worker counts as managed.

When the process has imported dask (a task from a dask collection does),
dask's ``sizeof`` dispatch answers, with everything registered for it
(pandas, pyarrow, the user's own types).  trioflow never imports dask for
this: a worker running plain functions would pay for dask's import and its
memory.  Otherwise a default knows numpy arrays and anything else whose type
has an integer ``nbytes`` (pandas Series, pyarrow, cupy...), bytes-like
objects, strings, and lists/tuples/sets/dicts (sampled when large, so that
measuring a million-element list costs no more than a small one); for the
rest, ``sys.getsizeof`` (which pandas DataFrames answer deeply).
"""
from __future__ import annotations

import sys

#: a container larger than this is measured on this many evenly spread items
SAMPLE = 10
#: nested containers are followed this deep; below, only their own size counts
MAX_DEPTH = 3

_CONTAINERS = (list, tuple, set, frozenset)


def sizeof(obj) -> int:
    """Bytes ``obj`` holds in memory (an estimate, never negative)."""
    dispatch = _dask_sizeof()
    if dispatch is not None:
        try:
            return max(0, int(dispatch(obj)))
        except Exception:  # noqa: BLE001 - a broken registration: count it our way
            pass
    return default_sizeof(obj)


def _dask_sizeof():
    module = sys.modules.get("dask.sizeof")
    if module is None:
        dask = sys.modules.get("dask")
        if dask is None or not hasattr(dask, "__version__"):  # absent, or still importing
            return None
        try:
            import dask.sizeof as module
        except Exception:  # noqa: BLE001
            return None
    return getattr(module, "sizeof", None)


def default_sizeof(obj) -> int:
    total = 0.0
    stack = [(obj, 1.0, 0)]  # (object, weight, depth): a worklist, never recursion
    while stack:
        item, weight, depth = stack.pop()
        own, children = _own_size(item, depth)
        total += weight * own
        if children:
            items, scale = children
            stack.extend((child, weight * scale, depth + 1) for child in items)
    return int(total)


def _own_size(obj, depth):
    """(bytes of ``obj`` itself, (children to count, their weight) or None)."""
    cls = type(obj)
    if cls in (bytes, bytearray, str):
        return sys.getsizeof(obj), None
    if cls is memoryview:
        return obj.nbytes, None
    nbytes = getattr(cls, "nbytes", None)
    if nbytes is not None:
        try:
            value = obj.nbytes
            if isinstance(value, int) and not isinstance(value, bool):
                return value, None
        except Exception:  # noqa: BLE001
            pass
    own = _getsizeof(obj)
    if depth >= MAX_DEPTH:
        return own, None
    if isinstance(obj, _CONTAINERS):
        items = obj if isinstance(obj, (list, tuple)) else list(obj)
        return own, _sample(items)
    if isinstance(obj, dict):
        keys, values = list(obj.keys()), list(obj.values())
        sampled_keys, scale = _sample(keys)
        sampled_values, _ = _sample(values)
        return own, (list(sampled_keys) + list(sampled_values), scale)
    return own, None


def _sample(items):
    n = len(items)
    if n <= SAMPLE:
        return items, 1.0
    step = n / SAMPLE
    return [items[int(i * step)] for i in range(SAMPLE)], n / SAMPLE


def _getsizeof(obj) -> int:
    try:
        return sys.getsizeof(obj)
    except Exception:  # noqa: BLE001 - e.g. a __sizeof__ that raises
        return 64

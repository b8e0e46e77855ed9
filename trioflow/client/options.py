"""The scheduling options of ``submit``, ``map``, ``get``, ``compute`` and
``persist`` (``workers=``, ``resources=``, ``retries=``, ``priority=``,
``allow_other_workers=``, ``timeout=``), checked and put in the form the
scheduler takes before anything is sent.

Anything a user passes either becomes a valid option or raises a TypeError
or ValueError naming the argument, in the calling thread: a value the
scheduler would refuse never leaves the client (the scheduler closes a
connection that sends it a malformed message).

``workers=`` takes what dask.distributed takes: an address (``ws://``,
``tcp://``...), a worker's name (a string or a number), a host name, or a
list, tuple or set of them.  ``compute``, ``persist`` and ``get`` also take
the mapping form of dask's locality docs, ``{collection: workers}`` (a
collection, a key, or a tuple of collections as the mapping's key), which
restricts only those collections' tasks.
"""
from __future__ import annotations

from numbers import Number

from trioflow.comm.addressing import normalize_address
from trioflow.protocol.messages import KEY
from trioflow.utils import timeout_seconds


def check_key(key, what="key"):
    """``key`` if the scheduler takes it as a task key, else TypeError."""
    if not KEY.test(key):
        raise TypeError(f"{what} must be a string, bytes, a number or a tuple of them, "
                        f"not {type(key).__name__} {key!r:.60}")
    return key


def _one_worker(value, call: str):
    if isinstance(value, bool) or not isinstance(value, (str, Number)) or (
            isinstance(value, Number) and not isinstance(value, (int, float))):
        raise TypeError(
            f"{call}: workers= holds {type(value).__name__} {value!r:.60}; each worker is an "
            "address, a worker's name (a string or a number) or a host name")
    if isinstance(value, str):
        if not value:
            raise ValueError(f"{call}: workers= holds an empty string")
        if "://" in value:
            try:
                return normalize_address(value)
            except ValueError as exc:
                raise ValueError(f"{call}: workers= holds a bad address: {exc}") from None
    return value


def worker_list(workers, call: str) -> list:
    """A ``workers=`` that is not a mapping, as a list the scheduler takes."""
    if isinstance(workers, (str, Number)):
        return [_one_worker(workers, call)]
    if isinstance(workers, (list, tuple, set, frozenset)):
        return [_one_worker(w, call) for w in workers]
    if isinstance(workers, dict):
        raise TypeError(
            f"{call}: workers= as a mapping ({{collection: workers}}) is for compute(), "
            "persist() and get(); here give an address, a name, or a list of them")
    raise TypeError(
        f"{call}: workers= must be an address, a worker's name, or a list, tuple or set of "
        f"them, not {type(workers).__name__}")


def optional_workers(workers, call: str) -> list | None:
    """``workers=`` of a call where None means every worker."""
    return None if workers is None else worker_list(workers, call)


def _resources(resources, call: str) -> dict:
    if not isinstance(resources, dict):
        raise TypeError(f"{call}: resources= must be a dict like {{'GPU': 1}}, "
                        f"not {type(resources).__name__}")
    out = {}
    for name, amount in resources.items():
        if not isinstance(name, str):
            raise TypeError(f"{call}: resources= names must be strings, not {name!r:.60}")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise TypeError(f"{call}: resources={{{name!r}: ...}} must be a number, "
                            f"not {amount!r:.60}")
        if amount < 0:
            raise ValueError(f"{call}: resources={{{name!r}: {amount}}} is negative")
        out[name] = amount
    return out


def task_options(workers=None, resources=None, retries=None, priority=0,
                 allow_other_workers=False, timeout=None, call="submit()") -> dict:
    """The options every task of one call shares, checked."""
    options = {}
    if timeout is not None:
        try:
            options["timeout"] = timeout_seconds(timeout)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{call}: timeout= {exc}") from None
    if allow_other_workers not in (True, False, None, 0, 1):
        raise TypeError(f"{call}: allow_other_workers= must be True, False or None, "
                        f"not {allow_other_workers!r:.60}")
    if workers is not None:
        options["workers"] = worker_list(workers, call)
        options["allow_other_workers"] = bool(allow_other_workers)
    if resources:
        options["resources"] = _resources(resources, call)
    if retries:
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise TypeError(f"{call}: retries= must be a count (an integer >= 0), "
                            f"not {retries!r:.60}")
        options["retries"] = int(retries)
    if priority:
        if isinstance(priority, bool) or not isinstance(priority, (int, float)):
            raise TypeError(f"{call}: priority= must be a number, not {priority!r:.60}")
        options["priority"] = priority
    return options


def graph_options(workers, resources, retries, priority, allow_other_workers, call):
    """For a graph (``get``, ``compute``, ``persist``): the options shared by
    every task, and ``per_key`` — ``(targets, options)`` pairs from the
    mapping forms of ``workers=`` and ``resources=`` — to apply to some."""
    per_key = []
    if isinstance(workers, dict):
        for target, spec in workers.items():
            per_key.append((target, {"workers": worker_list(spec, call),
                                     "allow_other_workers": bool(allow_other_workers)}))
        workers = None
    if isinstance(resources, dict) and resources and all(
            isinstance(v, dict) for v in resources.values()) and not all(
            isinstance(k, str) for k in resources):
        for target, spec in resources.items():
            per_key.append((target, {"resources": _resources(spec, call)}))
        resources = None
    shared = task_options(workers, resources, retries, priority, allow_other_workers,
                          call=call)
    return shared, per_key

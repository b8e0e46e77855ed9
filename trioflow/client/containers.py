"""The futures inside what users pass to the client's calls.

Calls that act on futures (``wait``, ``cancel``, ``replicate``, ``who_has``,
``fire_and_forget``...) accept a future, any nesting of lists, tuples, sets
and dicts (their values), iterators and generators, and dask collections
built on futures (a persisted one), as dask.distributed's ``futures_of``
reads them; dask skips iterators, which silently makes ``wait(iter(fs))``
wait for nothing, so here they count like lists.  ``gather`` keeps the shape
it was given (``pack``).
"""
from __future__ import annotations

from collections.abc import Iterator

from trioflow.client.future import Future
from trioflow.client.graphs import as_dict, is_dask_collection

_SEQUENCES = (list, tuple, set, frozenset)


def futures_of(obj) -> list[Future]:
    """The futures in ``obj``, each once, in the order they appear."""
    found: list[Future] = []
    seen: set[Future] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, Future):
            if item not in seen:
                seen.add(item)
                found.append(item)
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, (*_SEQUENCES, Iterator)):
            stack.extend(reversed(list(item)))
        elif is_dask_collection(item):
            stack.extend(value for value in reversed(list(as_dict(item).values()))
                         if isinstance(value, Future))
    return found


def lists_for_iterators(obj):
    """``obj`` with every iterator inside it (at any depth) read into a list,
    so that it can be walked twice: once for its futures, once to pack."""
    if not _holds_iterator(obj):
        return obj
    return _rebuild(obj, lambda item: item)


def pack(obj, values: dict):
    """``obj`` with each future replaced by its value from ``values``; a
    future missing from ``values`` (it erred, with ``errors="skip"``) is
    left out of its container, or raises its error if it is ``obj`` itself."""
    if isinstance(obj, Future):
        if obj.key not in values:
            raise obj._state.error_to_raise()
        return values[obj.key]

    def value_of(item):
        return values[item.key] if isinstance(item, Future) else item
    skipped = (lambda item: isinstance(item, Future) and item.key not in values)
    return _rebuild(obj, value_of, skipped)


def _holds_iterator(obj) -> bool:
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, Iterator):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, _SEQUENCES):
            stack.extend(item)
    return False


def _rebuild(obj, leaf, skipped=lambda item: False):
    """A copy of the nesting of lists, tuples (named ones too), sets and dicts
    in ``obj`` (iterators become lists), each other item replaced by
    ``leaf(item)``, items for which ``skipped`` is true left out.  It recurses
    once per level of the user's nesting, never per future."""
    if isinstance(obj, dict):
        items = {k: _rebuild(v, leaf, skipped) for k, v in obj.items() if not skipped(v)}
        return items if type(obj) is dict else _remade(type(obj), items)
    if isinstance(obj, (*_SEQUENCES, Iterator)):
        items = [_rebuild(v, leaf, skipped) for v in obj if not skipped(v)]
        if isinstance(obj, Iterator) or type(obj) is list:
            return items
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return type(obj)._make(items)
        return _remade(type(obj), items)
    return leaf(obj)


def _remade(kind, items):
    """A container of the user's own subclass, or the builtin it derives from
    if the subclass cannot be built from its items."""
    try:
        return kind(items)
    except Exception:
        for base in (dict, list, tuple, set, frozenset):
            if issubclass(kind, base):
                return base(items)
        raise

"""The compact records behind a large graph keep their meaning.

* ``TransitionLog`` (a ring of parallel columns) holds exactly the newest
  ``maxlen`` entries a plain bounded deque would, in the same order, and its
  ``story`` picks the same ones, through any number of wrap-arounds;
* a priority int sorts exactly as the ``(-user priority, graph, position)``
  tuple it stands for, and ``priority_tuple`` gives that tuple back;
* ``plus``/``minus`` leave a relation with the same members as a plain set,
  and never mutate the shared empty set.
"""
from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioflow.core.records import EMPTY, SetSharer, minus, plus, priority_int, priority_tuple
from trioflow.core.transitions import TransitionLog

pytestmark = pytest.mark.timeout(120)

KEYS = st.sampled_from(["a", "b", ("x", 0), ("x", 1)])
STATES = st.sampled_from(["released", "waiting", "processing", "memory"])
ENTRY = st.tuples(KEYS, STATES, STATES, st.sampled_from(["s1", "s2", "s3"]),
                  st.floats(0, 1e9, allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 7), st.lists(ENTRY, max_size=40), st.lists(KEYS | st.just("s2"), max_size=3))
def test_transition_log_is_a_bounded_deque(maxlen, entries, asked):
    log, reference = TransitionLog(maxlen), deque(maxlen=maxlen)
    for entry in entries:
        log.record(*entry)
        reference.append(entry)
        assert len(log) == len(reference)
    assert log.entries == list(reference)
    expected = [e for e in reference if e[3] in asked or e[0] in asked]
    assert log.story(*asked) == expected


PRIORITY = st.tuples(st.integers(-10**6, 10**6), st.integers(0, 2**40 - 1), st.integers(0, 2**40 - 1))


@settings(max_examples=300, deadline=None)
@given(PRIORITY, PRIORITY)
def test_priority_int_sorts_as_its_tuple(p, q):
    a, b = priority_int(*p), priority_int(*q)
    ta, tb = (-p[0], p[1], p[2]), (-q[0], q[1], q[2])
    assert (a < b) == (ta < tb) and (a == b) == (ta == tb)
    assert priority_tuple(a) == ta


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), max_size=30))
def test_plus_minus_match_a_set(ops):
    members, reference = EMPTY, set()
    for add, item in ops:
        if add:
            members = plus(members, item)
            reference.add(item)
        else:
            members = minus(members, item)
            reference.discard(item)
        assert set(members) == reference
        assert not EMPTY
    share = SetSharer()
    assert share({1, 2}) is share(frozenset({2, 1}))

"""Statistical profiles: call stacks sampled every few milliseconds, counted
into a tree.

The tree has dask's shape, so code written for ``distributed``'s profiles
reads ours::

    {"identifier": "root", "description": "root", "count": 120,
     "children": {"inc;/path/tasks.py;14": {"identifier": ..., "count": 80,
                  "description": {"filename", "name", "line_number", "line"},
                  "children": {...}}}}

A node counts the samples in which its function was on the stack below its
parent; children are the functions it was calling.

``Profiler`` keeps what the sampling thread of one server saw: the
current one-second cycle, and the past cycles (about 20 minutes of them),
each as a tree per task-key prefix (``None`` for the server's own event-loop
thread).  It is filled from that thread and read from the event loop, so it
holds a lock.
"""
from __future__ import annotations

import linecache
import threading
import time
from collections import deque

#: seconds between samples
INTERVAL = 0.01
#: seconds a cycle of the history covers
CYCLE = 1.0
#: cycles kept
HISTORY = 1200
#: deepest stack sampled (the frames nearest the running line are kept)
MAX_DEPTH = 200


def new_tree() -> dict:
    return {"identifier": "root", "description": "root", "count": 0, "children": {}}


def _identifier(code) -> str:
    return f"{code.co_name};{code.co_filename};{code.co_firstlineno}"


def _description(frame) -> dict:
    code = frame.f_code
    line_number = frame.f_lineno or code.co_firstlineno
    return {"filename": code.co_filename, "name": code.co_name, "line_number": line_number,
            "line": linecache.getline(code.co_filename, line_number).strip()}


def stack(frame, boundary=None) -> list | None:
    """The frames from the outermost down to ``frame``, stopping short of
    the first frame (going outwards) whose code is ``boundary``; None if a
    ``boundary`` was given and is not on the stack (the thread was not, or
    no longer, in a task when it was sampled)."""
    frames = []
    while frame is not None:
        if frame.f_code is boundary:
            break
        if len(frames) < MAX_DEPTH:
            frames.append(frame)
        frame = frame.f_back
    else:
        if boundary is not None:
            return None
    frames.reverse()
    return frames


def add(tree: dict, frames: list) -> None:
    """Count one sample of ``frames`` (outermost first) into ``tree``."""
    tree["count"] += 1
    node = tree
    for frame in frames:
        ident = _identifier(frame.f_code)
        child = node["children"].get(ident)
        if child is None:
            child = node["children"][ident] = {"identifier": ident,
                                               "description": _description(frame),
                                               "count": 0, "children": {}}
        child["count"] += 1
        node = child


def merge(*trees: dict) -> dict:
    """One tree counting every sample of ``trees`` (which are not changed)."""
    out = new_tree()
    for tree in trees:
        _merge_into(out, tree)
    return out


def _merge_into(target: dict, tree: dict) -> None:
    target["count"] += tree["count"]
    for ident, child in tree["children"].items():
        mine = target["children"].get(ident)
        if mine is None:
            mine = target["children"][ident] = {"identifier": ident,
                                                "description": child["description"],
                                                "count": 0, "children": {}}
        _merge_into(mine, child)


class Profiler:
    """The samples of one server, by cycle and by task-key prefix."""

    def __init__(self, cycle: float = CYCLE, history: int = HISTORY, clock=time.time):
        self.cycle = cycle
        self._clock = clock
        self._lock = threading.Lock()
        self._history: deque = deque(maxlen=history)  # (cycle start, {prefix: tree})
        self._start = clock()
        self._current: dict = {}

    def record(self, prefix, frames: list) -> None:
        """Count one sample; ``prefix`` is the running task's key prefix, or
        None for the server's own thread."""
        with self._lock:
            self._roll()
            tree = self._current.get(prefix)
            if tree is None:
                tree = self._current[prefix] = new_tree()
            add(tree, frames)

    def _roll(self) -> None:
        now = self._clock()
        if now - self._start >= self.cycle:
            if self._current:
                self._history.append((self._start, self._current))
            self._start, self._current = now, {}

    def get(self, start: float | None = None, stop: float | None = None, key=None,
            server: bool = False) -> dict:
        """The merged tree of the cycles that began in [start, stop]: the
        server's thread if ``server``, else the tasks whose key prefix is
        ``key`` (all tasks if None)."""
        with self._lock:
            self._roll()
            cycles = list(self._history) + [(self._start, self._current)]
            trees = []
            for began, by_prefix in cycles:
                if start is not None and began + self.cycle < start:
                    continue
                if stop is not None and began > stop:
                    continue
                for prefix, tree in by_prefix.items():
                    if server:
                        if prefix is None:
                            trees.append(tree)
                    elif prefix is not None and (key is None or prefix == key):
                        trees.append(tree)
            return merge(*trees)

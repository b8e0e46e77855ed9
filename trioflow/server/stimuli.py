"""What both shells need to feed their cores: stimulus ids, the validate
flag, and the mapping of the cores' monotonic clock to wall time."""
from __future__ import annotations

import itertools
import os
import time

_counter = itertools.count()
# fixed once, so that one log entry always maps to the same wall time
_WALL_OFFSET = time.time() - time.monotonic()


def new_stimulus_id(name: str) -> str:
    """A unique id naming the cause of an event, as dask spells them:
    ``"<cause>-<wall time>"`` (plus a counter, so two in one tick differ)."""
    return f"{name}-{time.time():.6f}-{next(_counter)}"


def stimulus_of(msg: dict, cause: str) -> str:
    """The stimulus id a peer gave its message (the scheduler's for a worker,
    a worker's event of its own for the scheduler), else a new one naming ``cause``."""
    given = msg.get("stimulus_id")
    if isinstance(given, str) and 0 < len(given) <= 200:
        return given
    return new_stimulus_id(cause)


def validate_requested(flag: bool | None) -> bool:
    """``flag`` if given, else whether ``TRIOFLOW_VALIDATE`` is set to a true value."""
    if flag is not None:
        return bool(flag)
    return os.environ.get("TRIOFLOW_VALIDATE", "").lower() in ("1", "true", "yes", "on")


def story_in_wall_time(entries) -> list[tuple]:
    """Core log entries ``(key, start, finish, stimulus_id, monotonic time)``
    with the time in seconds since the epoch, comparable across machines."""
    return [(*entry[:4], entry[4] + _WALL_OFFSET) for entry in entries]

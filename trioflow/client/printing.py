"""``trioflow.print`` and ``trioflow.warn``, for programs written with
dask's ``from dask.distributed import print, warn``.

Called in a task, ``print`` prints where it runs (flushed at once, so a
line of a worker process is not held in a pipe) and, as dask's does, also
sends the line to every client of the cluster, which prints it to its own
standard output or error.  A client in the process that printed the line
(``processes=False``) does not print it twice.  Lines printed to a file
other than stdout or stderr stay where they are.  ``warn`` is
``warnings.warn`` where it runs and, from a task, a warning of the same
category raised in every client.  Outside a task both are the builtins.
"""
from __future__ import annotations

import builtins
import os
import sys
import warnings

from trioflow.server.context import current_task

PRINT_TOPIC, WARN_TOPIC = "print", "warn"


def print(*args, sep=" ", end="\n", file=None, flush=True):  # noqa: A001 - dask's name
    """Print ``args`` here and, in a task, in every client of the cluster."""
    builtins.print(*args, sep=sep, end=end, file=file, flush=flush)
    stream = {None: 1, sys.stdout: 1, sys.stderr: 2}.get(file)
    worker = _worker()
    if worker is not None and stream is not None:
        worker.log_event(PRINT_TOPIC, {"args": [str(arg) for arg in args], "sep": str(sep),
                                       "end": str(end), "file": stream, "pid": os.getpid()})


def warn(message, category=None, stacklevel=1, source=None):
    """``warnings.warn(message, category)`` here and, in a task, in every client."""
    warnings.warn(message, category, stacklevel=stacklevel + 1, source=source)
    worker = _worker()
    if worker is not None:
        category = category or (type(message) if isinstance(message, Warning) else UserWarning)
        worker.log_event(WARN_TOPIC, {"message": str(message), "category": category.__name__,
                                      "pid": os.getpid()})


def _worker():
    task = current_task()
    return None if task is None else task.worker


def print_forwarded(event) -> None:
    """A client's handler of the ``print`` topic: print the task's line."""
    _, msg = event
    if not isinstance(msg, dict) or msg.get("pid") == os.getpid():
        return  # printed here already, by a task in this process
    file = sys.stderr if msg.get("file") == 2 else sys.stdout
    builtins.print(*msg.get("args", ()), sep=msg.get("sep", " "), end=msg.get("end", "\n"),
                   file=file, flush=True)


def warn_forwarded(event) -> None:
    """A client's handler of the ``warn`` topic: raise the task's warning."""
    _, msg = event
    if not isinstance(msg, dict) or msg.get("pid") == os.getpid():
        return
    category = getattr(builtins, str(msg.get("category")), None)
    if not (isinstance(category, type) and issubclass(category, Warning)):
        category = UserWarning
    warnings.warn(str(msg.get("message", "")), category, stacklevel=2)

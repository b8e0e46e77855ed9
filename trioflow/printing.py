"""``trioflow.print`` and ``trioflow.warn``, for programs written with
dask's ``from dask.distributed import print, warn``.

``print`` prints where it is called and flushes at once: in a task on a
worker process that a nanny started (``LocalCluster()``, ``trioflow
worker``), the nanny copies the worker's output to its own, so the line
shows in the terminal that started the cluster as soon as it is printed.
Unlike dask's, it is not also sent to the clients: on a worker on another
machine, the line is in that worker's output.  ``warn`` is
``warnings.warn`` where it is called (a task's warnings go to its worker's
log).
"""
from __future__ import annotations

import builtins
import warnings


def print(*args, sep=" ", end="\n", file=None, flush=True):  # noqa: A001 - dask's name
    """Print ``args`` where this runs (flushed, so a worker's line is not held
    in a pipe's buffer)."""
    builtins.print(*args, sep=sep, end=end, file=file, flush=flush)


def warn(message, category=None, stacklevel=1, source=None):
    """``warnings.warn(message, category)`` where this runs."""
    warnings.warn(message, category, stacklevel=stacklevel + 1, source=source)

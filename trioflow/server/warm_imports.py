"""Import, while a worker process is idle, modules its first task will need.

A worker process starts with only the server side of trioflow loaded, so it
is ready in a fraction of a second.  The first numpy array it receives then
pays for ``import numpy`` (150-200 ms here) in the middle of a transfer: a
200 MB array that crosses the wire in 100 ms took three times as long on
a fresh worker.  Importing the likely modules in a thread right after the
worker has registered moves that cost out of the first task's way; a task
that needs the module while the import is still running waits on Python's
import lock for it instead of importing it twice.

``TRIOFLOW_WARM_IMPORTS`` (comma-separated module names) replaces the default
list; set it to an empty string to import nothing ahead of time.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys

import trio

logger = logging.getLogger("trioflow.worker")

#: modules imported ahead of time when they are installed
DEFAULT_WARM_IMPORTS = ("numpy",)
ENV_VAR = "TRIOFLOW_WARM_IMPORTS"


def warm_import_names(environ=os.environ) -> tuple[str, ...]:
    """The modules a worker process should import ahead of its first task."""
    if ENV_VAR not in environ:
        return DEFAULT_WARM_IMPORTS
    return tuple(name.strip() for name in environ[ENV_VAR].split(",") if name.strip())


def _import_quietly(name: str) -> None:
    try:
        if importlib.util.find_spec(name) is None:
            return
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - a task that needs it reports the real error
        logger.debug("warm import of %s failed: %r", name, exc)


async def warm_imports(names) -> None:
    """Import ``names`` one after another in a worker thread.  Not
    cancellable mid-import (a thread cannot be stopped), so closing a worker
    waits at most for the one import under way."""
    for name in names:
        if name not in sys.modules:
            await trio.to_thread.run_sync(_import_quietly, name)

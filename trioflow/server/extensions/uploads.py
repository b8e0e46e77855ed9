"""The worker half of ``Client.upload_file`` (client side:
``trioflow/client/primitives/uploads.py``): a .py, .zip, .egg or .pyz file made importable in
tasks on every worker, the current ones and those that join later.

An upload is a worker plugin (``UploadFile``) holding the file's bytes, so the
scheduler keeps it and gives it to each joining worker before any task.  Its
``setup`` writes the file into the worker's upload directory (made on first
use, on ``sys.path`` while the worker lives, removed when it closes), puts a
.zip/.egg/.pyz itself on ``sys.path``, invalidates the import caches and the
worker's cache of task functions, and imports each module it holds,
reloading one that was already imported.
"""
from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import shutil
import sys
import tempfile
from importlib.util import cache_from_source

from trioflow.server.extensions.base import WorkerExtension
from trioflow.server.extensions.plugins import WorkerPlugin

logger = logging.getLogger("trioflow.uploads")

_ARCHIVES = (".zip", ".egg", ".pyz")


class UploadWorkerExtension(WorkerExtension):
    """Owns a worker's upload directory."""

    name = "uploads"

    def __init__(self, worker):
        super().__init__(worker)
        self._directory: str | None = None
        self._paths: list[str] = []  # what we put on sys.path

    def directory(self) -> str:
        if self._directory is None:
            self._directory = tempfile.mkdtemp(prefix="trioflow-uploads-")
            self._add_path(self._directory)
        return self._directory

    def _add_path(self, path: str):
        if path not in sys.path:
            sys.path.insert(0, path)
            self._paths.append(path)

    def save(self, filename: str, data: bytes) -> str:
        """Write an uploaded file; return its path, now importable."""
        path = os.path.join(self.directory(), os.path.basename(filename))
        partial_path = path + ".partial"
        with open(partial_path, "wb") as f:
            f.write(data)
        os.replace(partial_path, path)
        if path.endswith(".py"):
            try:  # a stale .pyc with a close enough timestamp would win over the new source
                os.remove(cache_from_source(path))
            except OSError:
                pass
        elif path.endswith(_ARCHIVES):
            self._add_path(path)
        importlib.invalidate_caches()
        # tasks unpickled before the upload may hold the old module's functions
        self.worker.executor.forget_functions()
        return path

    async def close(self) -> None:
        for path in self._paths:
            try:
                sys.path.remove(path)
            except ValueError:
                pass
        self._paths.clear()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


def import_file(path: str) -> list:
    """Import (or reload) the modules in an uploaded file."""
    directory, filename = os.path.split(path)
    stem, ext = os.path.splitext(filename)
    if ext == ".py":
        names = [stem]
    elif ext in _ARCHIVES:
        names = [info.name for info in pkgutil.iter_modules([path])]
    else:
        return []
    loaded = []
    for name in names:
        module = sys.modules.get(name)
        if module is not None:
            loaded.append(importlib.reload(module))
        else:
            loaded.append(importlib.import_module(name))
    return loaded


class UploadFile(WorkerPlugin):
    """The worker plugin behind ``Client.upload_file``."""

    def __init__(self, filename: str, data: bytes, load: bool = True):
        self.filename = os.path.basename(filename)
        self.data = data
        self.load = load

    def setup(self, worker):
        path = worker.extensions["uploads"].save(self.filename, self.data)
        if self.load:
            import_file(path)

    def __repr__(self):
        return f"<UploadFile {self.filename!r} ({len(self.data)} bytes)>"

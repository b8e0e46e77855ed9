"""Make a client dask's default scheduler without importing dask for it.

``Client(set_as_default=True)`` routes ``dask.compute`` and ``.compute()`` to
the cluster by setting dask's ``scheduler`` config.  Importing dask just to do
that costs a fifth of a second, which a script that never touches dask
collections should not pay.  If dask is already imported the config is set
at once; otherwise a one-shot import hook sets it right after ``dask.config``
is first imported, so a later ``import dask.array`` still finds the client.
"""
from __future__ import annotations

import importlib.abc
import sys
import threading

_lock = threading.Lock()
_pending = None  # the scheduler (a client's ``get``) to install once dask.config exists


def set_scheduler(get) -> None:
    """Make ``get`` dask's scheduler now, or as soon as dask is imported."""
    global _pending
    config = sys.modules.get("dask.config")
    if config is not None and hasattr(config, "set"):
        config.set(scheduler=get)
        return
    with _lock:
        _pending = get
        if not any(isinstance(f, _DaskConfigHook) for f in sys.meta_path):
            sys.meta_path.insert(0, _DaskConfigHook())


def unset_scheduler(get) -> None:
    """Stop ``get`` being dask's scheduler (if it still is)."""
    global _pending
    with _lock:
        if _pending == get:
            _pending = None
            return
    config = sys.modules.get("dask.config")
    if config is not None and config.get("scheduler", None) == get:
        config.set(scheduler=None)


def _install_pending(config_module) -> None:
    global _pending
    with _lock:
        get, _pending = _pending, None
    if get is not None:
        config_module.set(scheduler=get)


class _DaskConfigHook(importlib.abc.MetaPathFinder):
    """Finds nothing itself; when ``dask.config`` is found by the finders
    after it, wraps its loader so that the pending scheduler is installed
    once the module has run, then removes itself."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "dask.config":
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _AfterExec(spec.loader)
                return spec
        return None


class _AfterExec(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _install_pending(module)

    def __getattr__(self, name):  # get_data, get_resource_reader, ... of the real loader
        return getattr(self._loader, name)

"""Settings read under dask's configuration names.

``config_value("distributed.scheduler.allowed-failures")`` looks, in order,
in ``dask.config`` when the program has already imported dask (its YAML
files, ``DASK_*`` variables read when dask was imported, and
``dask.config.set``), then in the environment as dask spells it
(``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES``), so a deployment
configured for dask.distributed configures trioflow too. trioflow never
imports dask itself for this: that would cost a plain ``Client()`` half a
second and every import dask makes. An explicit keyword argument or CLI flag
always wins; callers check it first.
"""
from __future__ import annotations

import ast
import os
import sys

_MISSING = object()


def env_name(name: str) -> str:
    """The variable dask reads for ``name``: ``a.b-c`` -> ``DASK_A__B_C``."""
    return "DASK_" + "__".join(part.replace("-", "_").upper() for part in name.split("."))


def config_value(name: str, default=None):
    """The configured value of dask setting ``name``, or ``default``."""
    dask_config = sys.modules.get("dask.config")
    if dask_config is not None:
        value = dask_config.get(name, default=_MISSING)
        if value is not _MISSING and value is not None:
            return value
    raw = os.environ.get(env_name(name))
    if raw is None:
        return default
    try:
        return ast.literal_eval(raw)  # as dask parses its variables
    except (ValueError, SyntaxError):
        return raw

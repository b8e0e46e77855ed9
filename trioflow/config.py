"""Settings read under dask's configuration names.

``config_value("distributed.scheduler.allowed-failures")`` looks, in order,
in ``dask.config`` when the program has already imported dask (its YAML
files, ``DASK_*`` variables read when dask was imported, and
``dask.config.set``), then in the environment as dask spells it
(``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES``), then, when dask is not
imported, in dask's YAML files (``/etc/dask``, ``<sys.prefix>/etc/dask``,
``~/.config/dask`` or ``$DASK_CONFIG``; read with PyYAML, which comes with
dask), so a deployment configured for dask.distributed configures trioflow
too. trioflow never imports dask itself for this: that would cost a plain
``Client()`` half a second and every import dask makes. An explicit keyword
argument or CLI flag always wins; callers check it first.
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
        if dask_config is None:  # (an imported dask has read its files already)
            value = yaml_value(name)
            if value is not _MISSING and value is not None:
                return value
        return default
    try:
        return ast.literal_eval(raw)  # as dask parses its variables
    except (ValueError, SyntaxError):
        return raw


def yaml_paths() -> list[str]:
    """dask's configuration directories, lowest priority first (as ``dask.config.paths``)."""
    return [os.environ.get("DASK_ROOT_CONFIG", "/etc/dask"),
            os.path.join(sys.prefix, "etc", "dask"),
            os.environ.get("DASK_CONFIG", os.path.join(os.path.expanduser("~"), ".config",
                                                       "dask"))]


def yaml_value(name: str):
    """Setting ``name`` from dask's YAML files (the last file that sets it wins),
    or ``_MISSING``.  A file that is not valid YAML is ignored, as dask warns
    and goes on."""
    files = []
    for path in yaml_paths():
        if os.path.isdir(path):
            files.extend(os.path.join(path, f) for f in sorted(os.listdir(path))
                         if f.endswith((".yaml", ".yml")))
        elif os.path.isfile(path):
            files.append(path)
    if not files:
        return _MISSING
    try:
        import yaml
    except ImportError:
        return _MISSING
    found = _MISSING
    for path in files:
        try:
            with open(path) as f:
                data = yaml.safe_load(f)
        except (OSError, yaml.YAMLError):
            continue
        value = _lookup(data, name.split("."))
        if value is not _MISSING:
            found = value
    return found


def _lookup(data, parts):
    for part in parts:
        if not isinstance(data, dict):
            return _MISSING
        for spelling in (part, part.replace("-", "_"), part.replace("_", "-")):
            if spelling in data:
                data = data[spelling]
                break
        else:
            return _MISSING
    return data


def config_mapping(name: str) -> dict:
    """The configured mapping under dask setting ``name`` (such as
    ``distributed.worker.resources``): ``dask.config``'s value when dask is
    imported, and each ``DASK_<NAME>__<KEY>`` variable of the environment,
    its key lowercased as dask reads it (``..._RESOURCES__GPU=2`` gives
    ``{"gpu": 2}``).  A key set both ways takes dask.config's value."""
    found: dict = {}
    prefix = env_name(name) + "__"
    for variable, raw in os.environ.items():
        if variable.startswith(prefix) and len(variable) > len(prefix):
            key = variable[len(prefix):].lower().replace("__", ".")
            try:
                found[key] = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                found[key] = raw
    dask_config = sys.modules.get("dask.config")
    if dask_config is not None:
        value = dask_config.get(name, default=None)
        if isinstance(value, dict):
            found.update(value)
    return found


RESOURCES = "distributed.worker.resources"


def worker_resources(resources=None) -> dict:
    """A worker's resources: ``resources`` if given, else the configured
    ``distributed.worker.resources`` (as dask's Worker reads them).  Each
    amount must be a number."""
    chosen = config_mapping(RESOURCES) if resources is None else resources
    if not isinstance(chosen, dict):
        raise TypeError(f"resources must be a dict like {{'GPU': 2}}, not {chosen!r:.60}")
    for key, amount in chosen.items():
        if not isinstance(key, str) or isinstance(amount, bool) or not isinstance(
                amount, (int, float)):
            where = "resources=" if resources is not None else (
                f"the {RESOURCES} setting (dask.config or ${env_name(RESOURCES)}__*)")
            raise ValueError(f"{where}: {key!r} must name a number, not {amount!r:.60}")
    return dict(chosen)

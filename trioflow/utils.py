"""Small parsing helpers for user-facing arguments."""
from __future__ import annotations

import numbers
import os
import re

import psutil

_BYTE_UNITS = {
    "": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
}


def parse_bytes(value) -> int:
    """``'4GB'`` -> 4_000_000_000; ints pass through."""
    if isinstance(value, (int, float)):
        return int(value)
    match = re.fullmatch(r"\s*([\d.]+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _BYTE_UNITS:
        raise ValueError(f"cannot read {value!r} as a number of bytes (try '4GB' or '512MiB')")
    return int(float(match.group(1)) * _BYTE_UNITS[match.group(2).lower()])


def format_bytes(n) -> str:
    """``123456789`` -> ``'117.74 MiB'``, as dask prints memory figures."""
    n = float(n)
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20),
                       ("kiB", 2**10)):
        if abs(n) >= size * 0.9:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def memory_limit_bytes(value, nworkers: int = 1) -> int:
    """dask's memory_limit: None/0 for no limit, 'auto' for an equal share of
    this machine's memory, a fraction of it (<= 1), or bytes ('4GB')."""
    if value is None or value is False or (value == 0 and not isinstance(value, bool)) \
            or value == "0":
        return 0
    if isinstance(value, bool) or (isinstance(value, (int, float)) and value < 0):
        raise ValueError(f"memory_limit must be bytes ('4GB', 4e9), 'auto', a fraction of "
                         f"this machine's memory (0.5) or 0 for none, not {value!r}")
    total = psutil.virtual_memory().total
    if value == "auto":
        return total // max(nworkers, 1)
    if isinstance(value, float) and value <= 1:
        return int(total * value)
    return parse_bytes(value)


#: seconds per unit: dask's names (and their plurals), any case
_TIME_UNITS = {"s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "m": 60, "min": 60, "h": 3600,
               "d": 86_400, "w": 604_800}
for _name, _size in {"second": 1, "minute": 60, "hour": 3600, "day": 86_400,
                     "week": 604_800, "millisecond": 1e-3, "microsecond": 1e-6,
                     "nanosecond": 1e-9}.items():
    _TIME_UNITS[_name] = _TIME_UNITS[_name + "s"] = _size
_DURATION = re.compile(r"\s*((?:[0-9]*\.?[0-9]+|[0-9]+\.)(?:e[+-]?[0-9]+)?)?\s*([a-z]*)\s*",
                       re.IGNORECASE)


def parse_timedelta(value, default: str = "seconds") -> float | None:
    """A duration in seconds, read as dask's ``parse_timedelta`` reads one: a
    number (in ``default`` units), a string with a unit (``"100ms"``,
    ``"2 minutes"``, ``"1.5h"``, ``"1d"``), a ``datetime.timedelta``; None
    stays None.  A unit alone is one of it (``"hour"``).  Like dask,
    ``"0:00:05"`` is not a duration: pass ``timedelta(seconds=5)``."""
    if value is None:
        return None
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    unit = _TIME_UNITS.get(default.lower())
    if unit is None:
        raise ValueError(f"unknown time unit {default!r} (try 's', 'ms' or 'minutes')")
    if isinstance(value, numbers.Number):
        return float(value) * unit
    match = _DURATION.fullmatch(str(value))
    number, name = match.groups() if match else (None, None)
    if match is None or not (number or name) or (name and name.lower() not in _TIME_UNITS):
        raise ValueError(f"cannot read {value!r} as a duration (try '100ms', '2s', "
                         "'5 minutes' or a datetime.timedelta)")
    if name:
        unit = _TIME_UNITS[name.lower()]
    return float(number or 1) * unit


def timeout_seconds(timeout) -> float | None:
    """A user's ``timeout=`` in seconds (None: no timeout): what
    ``parse_timedelta`` reads, but not a negative duration."""
    value = parse_timedelta(timeout)
    if value is not None and value < 0:
        raise ValueError(f"timeout must not be negative, got {timeout!r}")
    return value


#: dask's default dashboard address; TRIOFLOW_DASHBOARD_ADDRESS overrides it
#: ("none" turns the default off, e.g. in a test suite that starts many clusters)
DEFAULT_DASHBOARD_ADDRESS = ":8787"
_DEFAULT_LINK = "{scheme}://{host}:{port}/status"


def default_dashboard_address(environ=os.environ):
    value = environ.get("TRIOFLOW_DASHBOARD_ADDRESS")
    if value is None:
        return DEFAULT_DASHBOARD_ADDRESS
    return None if value.strip().lower() in ("", "none", "off", "false", "0") else value


def dashboard_link(host: str, port: int, scheme: str = "http", environ=os.environ) -> str:
    """The dashboard's URL from ``TRIOFLOW_DASHBOARD_LINK`` (or dask's
    ``DASK_DISTRIBUTED__DASHBOARD__LINK``), a template with ``{scheme}``,
    ``{host}``, ``{port}`` and any environment variable, e.g.
    ``{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status`` behind a proxy."""
    template = (environ.get("TRIOFLOW_DASHBOARD_LINK")
                or environ.get("DASK_DISTRIBUTED__DASHBOARD__LINK") or _DEFAULT_LINK)
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    try:
        return template.format(**{**environ, "scheme": scheme, "host": host, "port": port})
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"dashboard link template {template!r} names {exc} which is "
                         f"neither scheme, host, port nor an environment variable") from None

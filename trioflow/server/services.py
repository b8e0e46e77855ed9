"""HTTP services a scheduler or worker can run beside its comm listener.

The dashboard lives in a layer above the servers (``trioflow.dashboard``), so
a server does not import it: it is named here, as the extensions are, and
loaded only when a server is asked to serve it.  Pass ``dashboard=`` (an
``async def serve(server, address, *, task_status)`` that reports the bound
``(host, port)``) to use another.
"""
from __future__ import annotations

import logging
from importlib import import_module

logger = logging.getLogger("trioflow.dashboard")

#: "module:function" of the default dashboard of each kind of server
DASHBOARDS = {
    "scheduler": "trioflow.dashboard.scheduler_app:serve",
    "worker": "trioflow.dashboard.worker_app:serve",
}

_OFF = (None, False, "", "none", "None", "off", "false")


def dashboard_wanted(address) -> bool:
    """False for the spellings of 'no dashboard' (None, False, '', 'none')."""
    return address not in _OFF


def default_dashboard(role: str):
    module, _, name = DASHBOARDS[role].partition(":")
    return getattr(import_module(module), name)


async def start_dashboard(nursery, server, role: str, address, factory=None):
    """Start the dashboard in ``nursery``; returns ``(host, port)`` it
    serves on, or None (with a warning) when it cannot run here."""
    try:
        serve = factory or default_dashboard(role)
    except ImportError as exc:
        logger.warning("no dashboard for the %s: %s (pip install trioflow's dashboard "
                       "dependencies: hypercorn, starlette, prometheus_client)", role, exc)
        return None
    return await nursery.start(serve, server, str(address))

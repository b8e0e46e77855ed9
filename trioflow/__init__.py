"""trioflow: dask.distributed's futures API, rebuilt on Trio.

Change ``from dask.distributed import Client`` to ``from trioflow import
Client`` and a script that submits, maps, scatters and gathers runs as it
did, on servers whose every task lives in a nursery.
"""
from trioflow.client.client import Client, default_client
from trioflow.client.future import Future
from trioflow.client.waiting import wait
from trioflow.deploy.local import LocalCluster
from trioflow.errors import (CancelledError, CommClosedError, FutureLostError, KilledWorker,
                             ProtocolError, SerializationError, TimeoutError)
from trioflow.server.nanny import Nanny
from trioflow.server.scheduler import Scheduler
from trioflow.server.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "Client", "Future", "LocalCluster", "Scheduler", "Worker", "Nanny", "wait",
    "default_client", "TimeoutError", "CancelledError", "KilledWorker", "CommClosedError",
    "ProtocolError", "SerializationError", "FutureLostError", "progress",
]


def __getattr__(name):
    if name == "progress":
        from trioflow.diagnostics import progress
        return progress
    raise AttributeError(f"module 'trioflow' has no attribute {name!r}")

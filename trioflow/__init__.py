"""trioflow: dask.distributed's futures API, rebuilt on Trio.

Change ``from dask.distributed import Client`` to ``from trioflow import
Client`` and a script that submits, maps, scatters and gathers runs as it
did, on servers whose every task lives in a nursery.

``import trioflow`` loads the client and ``LocalCluster`` at once (as
``import distributed`` does), so that ``Client()`` itself starts in a tenth of
a second.  Every other public name, and everything in a process started with
``TRIOFLOW_LAZY_IMPORTS=1`` (the nanny's worker processes, which need only the
server side), is imported on first use.
"""
import os
from importlib import import_module

__version__ = "0.1.0"

_PUBLIC = {
    "Client": "trioflow.client.client",
    "default_client": "trioflow.client.client",
    "Future": "trioflow.client.future",
    "wait": "trioflow.client.waiting",
    "as_completed": "trioflow.client.as_completed",
    "fire_and_forget": "trioflow.client.fire_and_forget",
    "futures_of": "trioflow.client.containers",
    "LocalCluster": "trioflow.deploy.local",
    "SpecCluster": "trioflow.deploy.spec",
    "ProcessInterface": "trioflow.deploy.spec",
    "Status": "trioflow.deploy.spec",
    "Adaptive": "trioflow.deploy.adaptive",
    "SSHCluster": "trioflow.deploy.ssh",
    "Scheduler": "trioflow.server.scheduler",
    "Worker": "trioflow.server.worker",
    "Nanny": "trioflow.server.nanny",
    "progress": "trioflow.diagnostics",
    "performance_report": "trioflow.diagnostics.performance_report",
    "get_task_stream": "trioflow.diagnostics.task_stream",
    "get_worker": "trioflow.task_context",
    "get_client": "trioflow.task_context",
    "secede": "trioflow.task_context",
    "rejoin": "trioflow.task_context",
    "worker_client": "trioflow.task_context",
    "local_client": "trioflow.task_context",
    "checkpoint": "trioflow.task_context",
    "print": "trioflow.client.printing",
    "warn": "trioflow.client.printing",
    "TimeoutError": "trioflow.errors",
    "CancelledError": "trioflow.errors",
    "KilledWorker": "trioflow.errors",
    "CommClosedError": "trioflow.errors",
    "ProtocolError": "trioflow.errors",
    "AuthenticationError": "trioflow.errors",
    "SerializationError": "trioflow.errors",
    "FutureLostError": "trioflow.errors",
    "Queue": "trioflow.client.primitives.queue",
    "Variable": "trioflow.client.primitives.variable",
    "Lock": "trioflow.client.primitives.lock",
    "Event": "trioflow.client.primitives.event",
    "Semaphore": "trioflow.client.primitives.semaphore",
    "Pub": "trioflow.client.primitives.pubsub",
    "Sub": "trioflow.client.primitives.pubsub",
    "Channel": "trioflow.client.primitives.channels",
    "Actor": "trioflow.client.primitives.actors",
    "ActorFuture": "trioflow.client.primitives.actors",
    "ActorLostError": "trioflow.errors",
    "WorkerPlugin": "trioflow.server.extensions.plugins",
    "EventStream": "trioflow.client.primitives.event_log",
    "Security": "trioflow.security",
}

__all__ = sorted(_PUBLIC)

#: names of dask.distributed's API that trioflow has not, with what to use instead
_NOT_HERE = {
    "SchedulerPlugin": "trioflow has worker plugins only (WorkerPlugin, "
                       "client.register_worker_plugin); run code on the scheduler with "
                       "client.run_on_scheduler",
    "NannyPlugin": "trioflow has worker plugins only: use WorkerPlugin",
    "PipInstall": "install packages before starting the workers, or run pip from a "
                  "WorkerPlugin's setup()",
    "CondaInstall": "install packages before starting the workers",
    "InstallPlugin": "install packages before starting the workers",
    "UploadFile": "use client.upload_file(path)",
    "UploadDirectory": "use client.upload_file(path) for each file, or a WorkerPlugin",
    "Environ": "set environment variables before starting the workers (the nanny passes "
               "its environment on)",
    "MultiLock": "use one Lock per resource, acquired in a fixed order",
    "SubprocessCluster": "use LocalCluster(processes=True)",
    "Reschedule": "raise an exception and let retries= run the task again",
    "get_task_metadata": "use client.get_metadata / set_metadata",
    "span": "spans are not kept: use get_task_stream() or performance_report()",
    "rpc": "use the Client's methods, or client.scheduler for the scheduler's address "
           "and identity()",
    "CompatibleExecutor": "use client.get_executor()",
    "BaseActorFuture": "use trioflow.ActorFuture (what an actor's method calls return)",
    "connect": "connect to a scheduler with Client(address)",
    "sync": "run a coroutine function through a client's loop with client.sync(func, *args)",
    "widgets": "trioflow has no Jupyter widgets: open the dashboard (client.dashboard_link)",
}


def __getattr__(name):
    module = _PUBLIC.get(name)
    if module is None:
        advice = _NOT_HERE.get(name)
        if advice is not None:
            # an ImportError, so that `from trioflow import X` shows the advice
            # (Python replaces an AttributeError there by a message of its own)
            raise ImportError(f"trioflow has no {name!r} (dask.distributed has): {advice}",
                              name="trioflow")
        raise AttributeError(f"module 'trioflow' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))


def _on_first_use(module: str, name: str):
    """A callable that imports ``module`` when first called and calls its ``name``."""
    def call(*args, **kwargs):
        return getattr(import_module(module), name)(*args, **kwargs)
    return call


def _wire_layers():
    # A layer never imports the ones above it (the server not the client, the
    # client not deploy): what it needs from them it is given, and this package,
    # which sees every layer, gives the defaults, importing each on first use.
    from trioflow.client.local_cluster import set_local_cluster
    from trioflow.server.worker_hooks import set_default_hooks
    set_local_cluster(_on_first_use("trioflow.deploy.local", "LocalCluster"))
    set_default_hooks(client_factory=_on_first_use("trioflow.client.client", "client_for_worker"),
                      actor_handle=_on_first_use("trioflow.client.primitives.actors", "actor_proxy"))


_wire_layers()

if not os.environ.get("TRIOFLOW_LAZY_IMPORTS"):
    from trioflow.client.client import Client, default_client  # noqa: E402,F401
    from trioflow.deploy.local import LocalCluster  # noqa: E402,F401

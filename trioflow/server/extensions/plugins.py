"""The server halves of worker plugins (client side:
``trioflow/client/primitives/plugins.py``): objects whose ``setup(worker)`` runs on every worker, the
current ones and each that joins later, and whose ``teardown(worker)`` runs
when they are unregistered or the worker closes.

The scheduler keeps each registered plugin pickled, by name, and sends it to
a joining worker before any task, so a task never runs on a worker that has
not set up every plugin registered before it was submitted (if ``setup`` is
a plain function; a coroutine ``setup`` runs concurrently with tasks).
Registering a name again replaces that plugin (the old one is torn down).
"""
from __future__ import annotations

import inspect
import logging
from functools import partial

import trio

from trioflow.protocol.exceptions import exception_from_reply
from trioflow.protocol.serialize import deserialize
from trioflow.server.extensions.base import SchedulerExtension, WorkerExtension

logger = logging.getLogger("trioflow.plugins")


class WorkerPlugin:
    """Base class of worker plugins, as dask's ``WorkerPlugin``.

    ``setup(worker)`` runs when the plugin is added to a worker (on
    registration, and on each worker that joins later); ``teardown(worker)``
    when it is removed or the worker closes.  Either may be a coroutine
    function.  ``name`` (optional) makes registering idempotent: a plugin of
    the same name is replaced.  Plugins must be picklable (cloudpickle).
    The ``transition`` and ``release_key`` hooks of dask are not called."""

    idempotent = False

    def setup(self, worker):
        pass

    def teardown(self, worker):
        pass


class PluginSchedulerExtension(SchedulerExtension):
    name = "plugins"

    def __init__(self, scheduler):
        super().__init__(scheduler)
        self.worker_plugins: dict = {}  # name -> pickled plugin
        self.handlers = {
            "register-worker-plugin": self._register,
            "unregister-worker-plugin": self._unregister,
        }

    def _register(self, peer, msg):
        name = msg["name"]
        if msg.get("idempotent") and name in self.worker_plugins:
            return {}
        self.worker_plugins[name] = msg["plugin"]
        return self._broadcast({"op": "register-worker-plugin", "name": name,
                                "plugin": msg["plugin"]})

    def _unregister(self, peer, msg):
        name = msg["name"]
        if name not in self.worker_plugins:
            raise ValueError(f"The worker plugin {name} does not exist")
        del self.worker_plugins[name]
        return self._broadcast({"op": "unregister-worker-plugin", "name": name})

    def _broadcast(self, msg):
        """Send ``msg`` to every current worker now (so it reaches each ahead
        of any task assigned later); return an awaitable of
        ``{address: {"status": "OK"}}`` that raises the first worker's failure."""
        workers = list(self.scheduler.worker_comms.items())
        results: dict = {}
        errors: list = []
        remaining = [len(workers)]
        done = trio.Event()

        def on_reply(address, reply):
            if reply is None:
                pass  # it left: a worker that joins later gets the plugins then
            elif "error" in reply:
                errors.append(exception_from_reply(reply))
                results[address] = {"status": "error", "text": reply.get("error", "")}
            else:
                results[address] = {"status": "OK"}
            remaining[0] -= 1
            if not remaining[0]:
                done.set()

        for address, conn in workers:
            conn.send_request(msg, partial(on_reply, address))

        async def replies():
            if workers:
                await done.wait()
            if errors:
                raise errors[0]
            return results

        return replies()

    def worker_joined(self, address: str) -> None:
        conn = self.scheduler.worker_comms[address]
        for name, plugin in self.worker_plugins.items():
            conn.send({"op": "register-worker-plugin", "name": name, "plugin": plugin})


class PluginWorkerExtension(WorkerExtension):
    name = "plugins"

    def __init__(self, worker):
        super().__init__(worker)
        self.handlers = {
            "register-worker-plugin": self._register,
            "unregister-worker-plugin": self._unregister,
        }

    def _register(self, msg, inproc):
        name = msg["name"]
        plugin = deserialize(msg["plugin"])
        steps = []
        old = self.worker.plugins.pop(name, None)
        if old is not None:
            steps.append(lambda: _hook(old, "teardown", self.worker))
        self.worker.plugins[name] = plugin
        steps.append(lambda: _hook(plugin, "setup", self.worker))
        return _run_steps(steps)

    def _unregister(self, msg, inproc):
        name = msg["name"]
        plugin = self.worker.plugins.pop(name, None)
        if plugin is None:
            raise ValueError(f"The worker plugin {name} does not exist on "
                             f"{self.worker.address}")
        return _run_steps([lambda: _hook(plugin, "teardown", self.worker)])

    async def close(self) -> None:
        plugins = list(self.worker.plugins.items())
        self.worker.plugins.clear()
        for name, plugin in plugins:
            try:
                result = _hook(plugin, "teardown", self.worker)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("teardown of worker plugin %r on %s failed", name,
                                 self.worker.address)


def _hook(plugin, method: str, worker):
    hook = getattr(plugin, method, None)
    return hook(worker=worker) if hook is not None else None


def _run_steps(steps):
    """Run hooks in order; a plain hook runs now (before the worker's next
    message), and once one returns an awaitable the rest follow it."""
    for i, step in enumerate(steps):
        result = step()
        if inspect.isawaitable(result):
            return _finish_steps(result, steps[i + 1:])
    return {"status": "OK"}


async def _finish_steps(first, rest):
    await first
    for step in rest:
        result = step()
        if inspect.isawaitable(result):
            await result
    return {"status": "OK"}

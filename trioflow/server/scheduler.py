"""The scheduler: a trio shell around ``SchedulerState``.

Its nursery holds the listener, one task per connection (each with its own
batched sender and a child nursery for that peer's pending requests) and the
heartbeat checker.  ``async with Scheduler() as s:`` returns from its block
only when all of them are gone.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from functools import partial

import trio

from trioflow.comm import serve, tokens
from trioflow.comm.addressing import parse_address
from trioflow.comm.connection import Connection, reply_error
from trioflow.core import adaptive, events as ev, scheduler_queries as queries
from trioflow.config import config_value, env_name
from trioflow.core.records import Interner
from trioflow.core.scheduler_messages import CloseWorker
from trioflow.core.scheduler_state import ALLOWED_FAILURES, SchedulerState
from trioflow.core.transitions import InvalidTransition
from trioflow.errors import CommClosedError
from trioflow.protocol import messages
from trioflow.protocol.serialize import serialize
from trioflow.profiling import Profiler
from trioflow.server import data_moves, graph_builds, scheduler_wire, unrunnable
from trioflow.server.worker_view import WorkersView
from trioflow.server.graph_builds import GraphBuilds
from trioflow.server.heap import HeapFreezer
from trioflow.server.background import EnteredFromAsyncio, current_library
from trioflow.server import logs
from trioflow.server.deaths import DeathReports
from trioflow.server.dispatch import RequestDispatch, call_sent_function
from trioflow.server.sampler import profile_servers, sample, sampling_interval
from trioflow.server.services import dashboard_wanted, start_dashboard
from trioflow.server.stimuli import new_stimulus_id, story_in_wall_time, validate_requested
from trioflow.server.stimuli import stimulus_of as _stimulus
from trioflow.server.extensions import build, named, scheduler_extensions
from trioflow.utils import parse_timedelta

logger = logging.getLogger("trioflow.scheduler")

_ALLOWED_FAILURES_NAME = "distributed.scheduler.allowed-failures"


class Scheduler(EnteredFromAsyncio):
    """The central scheduler.

    ``address`` picks the transport (``ws://host:port`` or ``inproc://``); by
    default it listens on ``ws://{host}:{port}``, and port 0 picks a free one.
    ``scheduler_file`` is written once listening (JSON with ``"address"``
    and, with ``token=``, the token; mode 0600).  With a token, a socket
    scheduler also writes a runtime file for same-machine loopback peers
    (see ``trioflow.comm.tokens``).  ``Scheduler`` itself requires no token
    unless given one; the CLI and ``LocalCluster`` make one.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, address: str | None = None,
                 scheduler_file: str | None = None, token: str | None = None,
                 security=None, protocol: str | None = None,
                 worker_ttl: float = 300.0, validate: bool | None = None,
                 dashboard_address=None, dashboard=None, allowed_failures: int | None = None,
                 extensions=None, **kwargs):
        if allowed_failures is None:
            allowed_failures = config_value(_ALLOWED_FAILURES_NAME, ALLOWED_FAILURES)
            if isinstance(allowed_failures, bool) or not isinstance(allowed_failures, int) \
                    or allowed_failures < 0:
                raise ValueError(
                    f"{_ALLOWED_FAILURES_NAME} (dask config, or ${env_name(_ALLOWED_FAILURES_NAME)})"
                    f" must be an int >= 0, not {allowed_failures!r}")
        # validate=None: check the state after every event if TRIOFLOW_VALIDATE is set
        self.state = SchedulerState(worker_ttl=worker_ttl, validate=validate_requested(validate),
                                    allowed_failures=allowed_failures)
        logs.install()
        self.security = security
        if protocol is None:
            # with a certificate of its own the scheduler serves TLS by default
            has_cert = security is not None and security.has_certificate("scheduler")
            protocol = "wss" if has_cert else "ws"
        # "tcp"/"tls" are spellings of ws/wss: the address parser maps them
        self._listen = address or f"{protocol}://{host}:{port}"
        self.scheduler_file = scheduler_file
        self.token = token
        #: where same-machine peers find the token (None: no token, or inproc)
        self.runtime_file: str | None = None
        self.id = f"Scheduler-{uuid.uuid4()}"
        self.started = time.time()
        self.address: str | None = None
        self.clients: dict[str, Connection] = {}
        self.worker_comms: dict[str, Connection] = {}
        self.worker_info: dict[str, dict] = {}
        #: what nannies said about how their workers ended
        self.deaths = DeathReports()
        #: workers whose connection closed, removed once their nanny said why
        self._leaving: set[str] = set()
        self._extension_classes = named(
            scheduler_extensions() if extensions is None else extensions)
        self.extensions: dict[str, object] = {}
        self._extension_handlers: dict = {}
        self._requests = RequestDispatch(logger, "scheduler")
        self._functions = Interner(1024)  # see _shared_function
        self._heap = HeapFreezer()
        self._graph_builds = GraphBuilds(
            lambda client_id, msg: _CLIENT_OPS[msg["op"]](self, client_id, msg),
            self._client_msg)
        self._workers_changed = trio.Event()
        self._nursery_manager = None
        self.nursery: trio.Nursery | None = None
        self.status = "created"
        #: the exception that stopped the scheduler's core, if one did
        self.failure: BaseException | None = None
        self._closed = trio.Event()
        self._terminate_requested = trio.Event()
        self.profiler = Profiler()  # the event loop's sampled stacks, for Client.profile
        self._profile_interval = sampling_interval()
        self._dashboard_address = dashboard_address
        self._dashboard_factory = dashboard if callable(dashboard) else None
        if dashboard is False:
            self._dashboard_address = None
        #: what dask's scheduler_info() calls services: {"dashboard": port}
        self.services: dict[str, int] = {}
        self.dashboard_host: str | None = None

    def __repr__(self):
        return f"<Scheduler {self.address!r} workers={len(self.state.workers)}>"

    @property
    def workers(self) -> WorkersView:
        """address -> the scheduler's view of that worker, as in dask (its
        connection is ``worker_comms[address]``)."""
        return WorkersView(self.state, self.worker_info)

    # ------------------------------------------------------------ lifetime

    async def __aenter__(self):
        if current_library() == "asyncio":
            return await self._start_under_asyncio()
        self._nursery_manager = trio.open_nursery()
        self.nursery = await self._nursery_manager.__aenter__()
        try:
            self.address = await self.nursery.start(
                _serve_task, self._listen, self._handle_comm, self.token, self.security)
            # before anything awaits: a peer's handshake must find the file
            self._announce_listening()
            self.nursery.start_soon(self._check_heartbeats)
            if config_value("distributed.scheduler.work-stealing", True):
                self.nursery.start_soon(self._balance_work)
            self.nursery.start_soon(unrunnable.watch, self.state)
            if profile_servers():
                self.nursery.start_soon(sample, self.profiler, None, self._profile_interval)
            self.extensions, self._extension_handlers = build(self._extension_classes, self)
            if dashboard_wanted(self._dashboard_address):
                await self._start_dashboard()
            if self.scheduler_file:
                self.write_scheduler_file(self.scheduler_file)
        except BaseException:
            self.nursery.cancel_scope.cancel()
            await self._nursery_manager.__aexit__(None, None, None)
            raise
        self.status = "running"
        logger.info("scheduler at %s", self.address)
        return self

    async def __aexit__(self, *exc_info):
        await self.close()

    async def _start_dashboard(self):
        bound = await start_dashboard(self.nursery, self, "scheduler", self._dashboard_address,
                                      self._dashboard_factory)
        if bound is not None:
            self.dashboard_host, self.services["dashboard"] = bound

    async def close(self):
        if current_library() == "asyncio":
            return await self._close_under_asyncio()
        if self.status == "closed" or self._nursery_manager is None:
            return
        self.status = "closing"
        self.nursery.cancel_scope.cancel()
        try:
            await self._nursery_manager.__aexit__(None, None, None)
        finally:
            self._heap.idle()
            self.status = "closed"
            self._closed.set()
            if self.runtime_file is not None:
                tokens.remove_runtime_file(self.runtime_file, self.id)
            if self.scheduler_file and os.path.exists(self.scheduler_file):
                try:
                    with open(self.scheduler_file) as f:
                        if json.load(f).get("address") == self.address:
                            os.remove(self.scheduler_file)
                except (OSError, ValueError):
                    pass

    async def finished(self):
        if current_library() == "asyncio":
            return await self._run_under_asyncio(self.finished)
        await self._closed.wait()

    def write_scheduler_file(self, path: str):
        info = {"address": self.address, "id": self.id, "type": "Scheduler"}
        if self.token is not None:
            info["token"] = self.token
        tokens.write_private_json(path, info)

    def _announce_listening(self):
        scheme, host, port = parse_address(self.address)
        if scheme == "inproc":
            return
        if self.token is not None:
            self.runtime_file = tokens.write_runtime_file(host, port, self.address, self.token,
                                                          self.id)
        if tokens.is_loopback(host):
            return
        if self.token is None:
            logger.warning("the scheduler at %s requires no token: anyone who can reach this "
                           "port can run code as this user", self.address)
        if scheme == "ws":
            logger.warning("the scheduler listens on %s without TLS: its traffic (tasks, "
                           "results) crosses the network unencrypted and can be read or "
                           "altered; serve wss:// (--tls-cert/--tls-key, security=) beyond a "
                           "trusted network", self.address)

    # ------------------------------------------------------------ events

    def stimulus(self, event) -> None:
        """Apply one event to the state and send the messages it causes.

        An exception from the core is a bug in trioflow, not the peer's: the
        state can no longer be trusted, so the scheduler logs it and shuts down
        (its owner restarts it) instead of running on."""
        if self.failure is not None:
            return
        try:
            out = self.state.handle(event, time.monotonic())
        except Exception as exc:
            self._core_failed(event, exc)
            return
        for message in out:
            msg = scheduler_wire.to_worker(message)
            if msg is not None:
                conn = self.worker_comms.get(message.worker)
            elif isinstance(message, CloseWorker):
                self._close_worker(message.worker, message.reason)
                continue
            else:
                msg = scheduler_wire.to_client(message)
                conn = self.clients.get(message.client)
            if conn is not None:
                conn.send(msg)

    def _core_failed(self, event, exc: Exception):
        self.failure = exc
        self.status = "failed"
        keys = _event_keys(event)
        story = exc.story if isinstance(exc, InvalidTransition) else self.state.story(*keys)
        logger.critical(
            "scheduler %s: its state machine failed handling %r; the state is no longer "
            "consistent, so the scheduler closes (restart it). Story of %r:\n%s",
            self.address, event, keys, "\n".join(map(repr, story[-50:])), exc_info=exc)
        self._terminate_requested.set()  # whoever runs the scheduler closes it
        # drop every peer now: workers and clients see the scheduler gone
        # rather than wait on a state that will never move again
        for conn in [*self.clients.values(), *self.worker_comms.values()]:
            conn.close("the scheduler's state machine failed")

    async def _check_heartbeats(self):
        while True:
            await trio.sleep(self.state.heartbeat_check_interval)
            self.stimulus(ev.CheckHeartbeats(new_stimulus_id("heartbeat-check")))

    async def _balance_work(self):
        # dask's work-stealing-interval; the tick is sent only when the core
        # says a move is possible, so an idle or evenly busy cluster costs
        # one O(workers) check per interval
        interval = parse_timedelta(config_value(
            "distributed.scheduler.work-stealing-interval", "100ms"))
        while True:
            await trio.sleep(interval)
            if self.state.could_steal():
                self.stimulus(ev.BalanceWork(new_stimulus_id("steal")))
            if self._heap.frozen and not self.state.tasks:
                self._heap.idle()

    def _close_worker(self, address: str, reason: str):
        """The state removed this worker: drop its connection too."""
        logger.warning("worker %s %s; removed", address, reason)
        conn = self.worker_comms.get(address)
        if conn is not None:
            conn.close(reason)
        self._worker_set_changed()

    def _worker_set_changed(self):
        self._workers_changed.set()
        self._workers_changed = trio.Event()

    async def worker_set_changed(self):
        """Return when a worker next joins or leaves."""
        await self._workers_changed.wait()

    # ------------------------------------------------------------ connections

    async def _handle_comm(self, comm):
        if self.failure is not None:
            return  # closing after a failure of the core: no new peers
        role = comm.peer_info.get("role")
        if role == "client":
            await self._client_stream(comm)
        elif role == "worker":
            await self._worker_stream(comm)
        elif role == "nanny":
            await self._nanny_stream(comm)
        else:
            logger.warning("closing connection from %s: unknown role %r", comm.peer_address, role)

    async def _client_stream(self, comm):
        client_id = str(comm.peer_info.get("id") or uuid.uuid4())
        async with trio.open_nursery() as requests:
            conn = Connection(comm, lambda msg: self._client_msg(client_id, conn, msg, requests),
                              messages.FROM_CLIENT)
            self.clients[client_id] = conn
            self.stimulus(ev.ClientConnected(client_id, new_stimulus_id("client-connected")))
            try:
                await conn.run()
            finally:
                requests.cancel_scope.cancel()
                self._requests.connection_closed(conn)
                if self.clients.get(client_id) is conn:
                    del self.clients[client_id]
                    self._peer_left(client_id)
                    for gone in (client_id, f"{client_id}/graph-hold"):
                        if gone in self.state.clients:
                            self.stimulus(ev.ClientDisconnected(gone, new_stimulus_id("client-disconnected")))

    async def _worker_stream(self, comm):
        info = dict(comm.peer_info)
        address = info["address"]
        async with trio.open_nursery() as requests:
            conn = Connection(comm, lambda msg: self._worker_msg(address, conn, msg, requests),
                              messages.FROM_WORKER)
            old = self.worker_comms.get(address)
            if old is not None:
                old.close("replaced by a new connection from the same address")
                self.stimulus(ev.WorkerLeft(address, new_stimulus_id("worker-reconnected")))
            if address in self._leaving:  # its predecessor there is still being removed
                self._worker_left(address, self.deaths.take(address))
            self.worker_comms[address] = conn
            self.worker_info[address] = info
            self._worker_joined(address)
            self.stimulus(ev.WorkerJoined(
                address, int(info.get("nthreads", 1)), int(info.get("memory_limit") or 0),
                info.get("name"), info.get("resources"), new_stimulus_id("worker-joined")))
            self._worker_set_changed()
            logger.info("worker %s joined (%s threads)", address, info.get("nthreads"))
            try:
                await conn.run()
            finally:
                requests.cancel_scope.cancel()
                self._requests.connection_closed(conn)
                if self.worker_comms.get(address) is conn:
                    del self.worker_comms[address]
                    self.worker_info.pop(address, None)
                    self._peer_left(address)
                    logger.info("worker %s left: %s", address, conn.close_reason or "closed")
                    self._leaving.add(address)
                    if self.deaths.expects_report(address):
                        # its nanny is about to say how it ended (deaths.py)
                        self.nursery.start_soon(self._worker_left_when_reported, address)
                    else:
                        self._worker_left(address, "")

    async def _worker_left_when_reported(self, address: str):
        cause = await self.deaths.wait(address)
        self._worker_left(address, cause)

    def _worker_left(self, address: str, cause: str):
        """Remove a worker whose connection closed, with how it ended if known."""
        if address not in self._leaving:
            return  # removed already (a new worker came to its address)
        self._leaving.discard(address)
        if cause:
            logger.warning("worker %s ended: %s", address, cause)
        self.stimulus(ev.WorkerLeft(address, new_stimulus_id("worker-connection-closed"), cause))
        self._worker_set_changed()

    async def _nanny_stream(self, comm):
        def on_message(msg):
            if msg["op"] == "worker-started":
                self.deaths.started(conn, msg["address"])
            else:
                self.deaths.ended(conn, msg["address"], msg["cause"])

        conn = Connection(comm, on_message, messages.FROM_NANNY)
        try:
            await conn.run()
        finally:
            self.deaths.nanny_gone(conn)

    # ------------------------------------------------------------ client messages

    def _client_msg(self, client_id: str, conn: Connection, msg: dict, requests: trio.Nursery):
        if self._graph_builds.hold_back(conn, msg):
            return  # after the graph this client's build is making
        op = msg.get("op")
        if op == "update-graph-expr":
            self._graph_builds.start(client_id, conn, msg, requests)
            return
        if op == "cancel-request":
            self._requests.cancel(conn, msg)
            return
        handler = _CLIENT_OPS.get(op)
        if handler is not None:
            try:
                handler(self, client_id, msg)
            except Exception as exc:
                logger.exception("bad %r message from client %s", op, client_id)
                if "rid" in msg:
                    conn.send(reply_error(msg, exc))
            return
        request = self._request_handler(op)
        if request is None:
            logger.warning("client %s sent unknown op %r", client_id, op)
            if "rid" in msg:
                conn.send(reply_error(msg, ValueError(f"unknown operation {op!r}")))
            return
        self._requests.start(conn, msg, partial(request, client_id, msg), client_id, requests)

    def _request_handler(self, op):
        """A callable ``(peer, msg)`` for a request op, or None."""
        builtin = _CLIENT_REQUESTS.get(op)
        if builtin is not None:
            return lambda peer, msg: builtin(self, peer, msg)
        return self._extension_handlers.get(op)

    def _worker_joined(self, address: str):
        # before WorkerJoined, so what extensions send arrives ahead of any task
        for extension in self.extensions.values():
            try:
                extension.worker_joined(address)
            except Exception:
                logger.exception("extension %s failed to welcome worker %s", extension, address)

    def _peer_left(self, peer: str):
        for extension in self.extensions.values():
            try:
                extension.peer_left(peer)
            except Exception:
                logger.exception("extension %s failed to clean up after %s", extension, peer)

    def _update_graph(self, client_id, msg):
        share = self._shared_function
        tasks = tuple(
            ev.TaskSpec(
                key=t["key"], run_spec=share(t.get("run_spec")),
                dependencies=tuple(t.get("deps") or ()),
                priority=t.get("priority") or 0,
                workers=tuple(t["workers"]) if t.get("workers") else None,
                allow_other_workers=bool(t.get("allow_other_workers")),
                retries=int(t.get("retries") or 0), resources=t.get("resources"),
                actor=bool(t.get("actor")), timeout=t.get("timeout"),
                is_async=bool(t.get("is_async")))
            for t in msg["tasks"])
        self._heap.took(len(tasks))
        self.stimulus(ev.GraphSubmitted(self._holder(client_id, msg), tasks,
                                        tuple(msg.get("wanted") or ()),
                                        stimulus_id=_stimulus(msg, "update-graph")))

    def _shared_function(self, run_spec):
        """``run_spec`` with its pickled function replaced by an equal bytes
        object already held: a million tasks of one function keep one copy."""
        if type(run_spec) is not tuple or len(run_spec) != 2 or type(run_spec[0]) is not bytes:
            return run_spec
        return (self._functions(run_spec[0]), run_spec[1])

    def _holder(self, client_id, msg) -> str:
        """Who wants what a message names: the client, or with ``hold`` the
        client's graph hold, a pseudo-client that keeps the parts of a large
        graph while the rest comes in (client/graph_calls.py)."""
        if not msg.get("hold"):
            return client_id
        holder = f"{client_id}/graph-hold"
        if holder not in self.state.clients:
            self.stimulus(ev.ClientConnected(holder, new_stimulus_id("graph-hold")))
        return holder

    def _release_keys(self, client_id, msg):
        self.stimulus(ev.KeysReleased(self._holder(client_id, msg), tuple(msg["keys"]),
                                      _stimulus(msg, "client-releases-keys")))

    def _want_keys(self, client_id, msg):
        self.stimulus(ev.KeysWanted(client_id, tuple(msg["keys"]), _stimulus(msg, "client-wants-keys")))

    def _fire_and_forget(self, client_id, msg):
        self.stimulus(ev.KeysFireAndForget(tuple(msg["keys"]), _stimulus(msg, "fire-and-forget")))

    def _cancel_keys(self, client_id, msg):
        self.stimulus(ev.KeysCancelled(client_id, tuple(msg["keys"]), bool(msg.get("force")),
                                       _stimulus(msg, "client-cancels-keys")))

    def _retry_keys(self, client_id, msg):
        self.stimulus(ev.TasksRetried(client_id, tuple(msg["keys"]), _stimulus(msg, "client-retries-keys")))

    # requests: (scheduler, peer, msg) -> result

    def _scatter_done(self, client_id, msg):
        self.stimulus(ev.DataScattered(client_id, dict(msg["nbytes"]), dict(msg["who_has"]),
                                       dict(msg.get("types") or {}), _stimulus(msg, "client-scattered")))
        return True

    def _who_has(self, client_id, msg):
        keys = msg.get("keys")
        return self.state.who_has(None if keys is None else list(keys))

    def _has_what(self, client_id, msg):
        workers = msg.get("workers")
        return self.state.has_what(None if workers is None else list(workers))

    def _nthreads(self, client_id, msg):
        return queries.nthreads(self.state, msg.get("workers"))

    def identity(self) -> dict:
        info = self.state.identity()
        wall_now, mono_now = time.time(), time.monotonic()
        for address, extra in info["workers"].items():
            wi = self.worker_info.get(address, {})
            extra["pid"] = wi.get("pid")
            extra["nanny"] = wi.get("nanny")
            extra["host"] = wi.get("host")
            extra["id"] = wi.get("name")
            extra["local_directory"] = wi.get("local_directory")
            # dask gives the wall-clock time of the last heartbeat
            extra["last_seen"] = wall_now - (mono_now - extra["last_seen"])
            extra.update(type="Worker", services={"dashboard": port} if (
                port := wi.get("dashboard_port")) is not None else {})
        workers = info["workers"]
        return {"type": "Scheduler", "id": self.id, "address": self.address,
                "workers": workers, "n_tasks": info["n_tasks"], "n_workers": len(workers),
                "total_threads": sum(w["nthreads"] for w in workers.values()),
                "total_memory": sum(w["memory_limit"] or 0 for w in workers.values()),
                "started": self.started, "clients": len(self.clients),
                "services": dict(self.services), "dashboard_host": self.dashboard_host}

    def _identity(self, client_id, msg):
        return self.identity()

    def adaptive_target(self, target_duration=None) -> int:
        """How many workers the load asks for, by dask's rules (core/adaptive.py)."""
        return adaptive.adaptive_target(self.state, parse_timedelta(
            target_duration or config_value("distributed.adaptive.target-duration", "5s")))

    def workers_to_close(self, target=None, n=None, memory_ratio=None, attribute="address"):
        return adaptive.workers_to_close(self.state, target, n, memory_ratio, attribute)

    def _adaptive_request(self, client_id, msg):  # what cluster.adapt() asks each interval
        return adaptive.bounded_reply(self.adaptive_target(msg.get("target_duration")),
                                      self.state, msg.get("minimum"), msg.get("maximum"))

    async def _wait_for_workers(self, client_id, msg):
        n = int(msg["n"])
        while len(self.state.workers) < n:
            await self._workers_changed.wait()
        return len(self.state.workers)

    async def _run_on_scheduler(self, client_id, msg):
        return serialize(await call_sent_function(msg, "dask_scheduler", self))

    def _worker_addresses(self, client_id, msg):
        return list(self.state.workers)

    async def _restart(self, client_id, msg):
        """Forget every task, restart nanny-managed workers and wait for them."""
        timeout = float(msg.get("timeout") or 60)
        expected = len(self.state.workers)
        restarting = {a for a, info in self.worker_info.items() if info.get("nanny")}
        self.stimulus(ev.ClusterRestarted(f"the cluster was restarted by {client_id}",
                                          new_stimulus_id("restart")))
        for address in restarting:
            conn = self.worker_comms.get(address)
            if conn is not None:
                conn.send({"op": "close", "restart": True, "reason": "cluster restart"})
        with trio.move_on_after(timeout) as scope:
            while restarting & set(self.state.workers) or len(self.state.workers) < expected:
                await self._workers_changed.wait()
        if scope.cancelled_caught:
            raise TimeoutError(f"only {len(self.state.workers)} of {expected} workers were "
                               f"back {timeout} s after the restart")
        return len(self.state.workers)

    def worker_connection(self, address: str) -> Connection:
        # requests for a worker go over its own connection: its listening
        # port takes only what peers may ask (data, actors), never these
        conn = self.worker_comms.get(address)
        if conn is None:
            raise CommClosedError(f"{address} is not a worker of this scheduler (any more)")
        return conn

    async def _broadcast(self, client_id, msg):
        """Run a function on workers (``client.run``); the reply holds, per
        worker, the ``result`` or the error as the worker sent it (never
        unpickled here)."""
        run = {"op": "run", "function": msg["function"], "args": msg.get("args"),
               "kwargs": msg.get("kwargs")}
        replies: dict = {}
        done = trio.Event()
        addresses = list(dict.fromkeys(msg["workers"]))

        def on_reply(address, reply):
            if reply is None:
                reply = {"error": f"CommClosedError: the connection to {address} closed",
                         "exception": serialize(CommClosedError(
                             f"the connection to worker {address} closed during run"))}
            replies[address] = {k: reply.get(k) for k in
                                ("result", "error", "exception", "traceback") if k in reply}
            if len(replies) == len(addresses):
                done.set()

        for address in addresses:
            try:
                conn = self.worker_connection(address)
            except CommClosedError as exc:
                on_reply(address, reply_error({}, exc))
                continue
            conn.send_request(run, partial(on_reply, address))
        if addresses:
            await done.wait()
        return replies

    async def _story(self, client_id, msg):
        """The transitions of ``keys`` (keys or stimulus ids) on the scheduler
        and on every worker: ``(where, key, start, finish, stimulus_id, time)``
        with wall-clock times, oldest first."""
        keys = tuple(msg.get("keys") or ())
        on_error = msg.get("on_error") or "raise"
        if on_error not in ("raise", "ignore"):
            raise ValueError(f"on_error must be 'raise' or 'ignore', not {on_error!r}")
        story = [("scheduler", *entry) for entry in story_in_wall_time(self.state.story(*keys))]

        async def from_worker(address):
            try:
                entries = await self.worker_connection(address).request(
                    {"op": "story", "keys": list(keys)})
            except Exception:
                if on_error == "raise":
                    raise
                return
            story.extend((address, *entry) for entry in entries)

        async with trio.open_nursery() as nursery:
            for address in list(self.state.workers):
                nursery.start_soon(from_worker, address)
        story.sort(key=lambda entry: entry[-1])
        return story

    def _nbytes(self, client_id, msg):
        return queries.nbytes(self.state, msg.get("keys"))

    def _processing(self, client_id, msg):
        return queries.processing(self.state, msg.get("workers"))

    async def _terminate(self, client_id, msg):
        """Close every worker, then ask whoever runs this scheduler to close it
        (``terminated()`` returns); the reply goes out first."""
        await self._retire_workers(client_id, {"workers": list(self.worker_comms)})
        self._terminate_requested.set()
        return True

    async def terminated(self):
        """Wait until a client asked the scheduler to shut down (``client.shutdown()``)."""
        if current_library() == "asyncio":
            return await self._run_under_asyncio(self.terminated)
        await self._terminate_requested.wait()

    async def _retire_workers(self, client_id, msg):
        addresses = msg.get("workers") or list(self.worker_comms)
        for address in addresses:
            conn = self.worker_comms.get(address)
            if conn is not None:
                conn.send({"op": "close", "reason": "retired by a client"})
        return list(addresses)

    # ------------------------------------------------------------ worker messages

    def _worker_msg(self, address: str, conn: Connection, msg: dict, requests: trio.Nursery):
        op = msg.get("op")
        if op == "task-finished":
            self.stimulus(ev.TaskFinished(address, msg["key"], int(msg.get("nbytes") or 0),
                                          msg.get("type") or "", float(msg.get("duration") or 0),
                                          _stimulus(msg, "task-finished")))
        elif op == "task-erred":
            self.stimulus(ev.TaskErred(address, msg["key"], msg.get("exception"),
                                       msg.get("traceback"), msg.get("text") or "",
                                       msg.get("kind") or "", _stimulus(msg, "task-erred")))
        elif op == "add-keys":
            self.stimulus(ev.ReplicaAdded(address, dict(msg["nbytes"]), _stimulus(msg, "add-keys")))
        elif op == "missing-data":
            self.stimulus(ev.DataMissing(address, msg["key"], msg["holder"],
                                         _stimulus(msg, "missing-data")))
        elif op == "task-started":
            self.stimulus(ev.TaskStarted(address, msg["key"], _stimulus(msg, "task-started")))
        elif op == "long-running":
            self.stimulus(ev.TaskSeceded(address, msg["key"], _stimulus(msg, "secede")))
        elif op == "task-cancelled":
            self.stimulus(ev.TaskCancelledOnWorker(address, msg["key"], _stimulus(msg, "task-cancelled")))
        elif op == "unserializable":
            self.stimulus(ev.DataUnserializable(address, msg["key"], msg.get("text") or "",
                                                _stimulus(msg, "unserializable")))
        elif op == "heartbeat":
            self.stimulus(ev.WorkerHeartbeat(address, msg.get("metrics"), _stimulus(msg, "heartbeat")))
        elif op == "worker-status-change":
            self.stimulus(ev.WorkerStatusChanged(address, msg["status"],
                                                 _stimulus(msg, "worker-status-change")))
        elif op == "cancel-request":
            self._requests.cancel(conn, msg)
        else:
            request = self._request_handler(op)
            if request is not None:
                self._requests.start(conn, msg, partial(request, address, msg), address, requests)
            else:
                logger.warning("worker %s sent unknown op %r", address, op)


def _event_keys(event) -> tuple:
    keys = getattr(event, "keys", None)
    if keys is None:
        key = getattr(event, "key", None)
        keys = () if key is None else (key,)
    tasks = getattr(event, "tasks", None)
    if tasks:
        keys = tuple(spec.key for spec in tasks[:20])
    return tuple(keys)[:20]


async def _serve_task(address, handler, token, security, task_status=trio.TASK_STATUS_IGNORED):
    await serve(address, handler, token=token, security=security, role="scheduler",
                check_info=_check_peer_info, welcome={"features": graph_builds.features()},
                task_status=task_status)


def _check_peer_info(info: dict) -> None:
    messages.check_peer_info(info, ("client", "worker", "nanny"))


_CLIENT_OPS = {
    "update-graph": Scheduler._update_graph,
    "release-keys": Scheduler._release_keys,
    "want-keys": Scheduler._want_keys,
    "cancel-keys": Scheduler._cancel_keys,
    "fire-and-forget": Scheduler._fire_and_forget,
    "retry-keys": Scheduler._retry_keys,
    "heartbeat": lambda self, client_id, msg: None,
}

_CLIENT_REQUESTS = {
    "scatter-done": Scheduler._scatter_done,
    "who-has": Scheduler._who_has,
    "has-what": Scheduler._has_what,
    "nthreads": Scheduler._nthreads,
    "identity": Scheduler._identity,
    "adaptive-target": Scheduler._adaptive_request,
    "wait-for-workers": Scheduler._wait_for_workers,
    "run-on-scheduler": Scheduler._run_on_scheduler,
    "worker-addresses": Scheduler._worker_addresses,
    "retire-workers": Scheduler._retire_workers,
    "terminate": Scheduler._terminate,
    "restart": Scheduler._restart,
    "nbytes": Scheduler._nbytes,
    "story": Scheduler._story,
    "processing": Scheduler._processing,
    "retire": data_moves.retire,
    "rebalance": data_moves.rebalance,
    "broadcast": Scheduler._broadcast,
    "replicate": data_moves.replicate,
}

"""The worker: a trio shell around ``WorkerState``.

Its nursery holds the listener for peers and clients, the scheduler
connection, the heartbeat, one task per running or fetching task, and the
connections to peers.  How a task runs (sync ones in the worker's task
threads, ``async def`` ones in this nursery under their own cancel scope,
deadlines, cancellation) is ``server/execution.py``'s; when it runs is the
state machine's slot accounting, not a thread pool's size.
"""
from __future__ import annotations

import inspect
import logging
import os
import time
import uuid
from collections import Counter, deque
from contextlib import AsyncExitStack
from functools import partial

import trio

from trioflow.config import worker_resources
from trioflow.comm import connect, serve, tokens
from trioflow.server.background import EnteredFromAsyncio, current_library
from trioflow.comm.addressing import normalize_address
from trioflow.comm.connection import Connection, ConnectionPool
from trioflow.comm.inproc import new_address
from trioflow.core import events as ev
from trioflow.core.transitions import InvalidTransition
from trioflow.core.worker_state import WorkerState
from trioflow.errors import CommClosedError, ProtocolError
from trioflow.protocol import messages
from trioflow.protocol.exceptions import pack_exception
from trioflow.protocol.serialize import sizeof
from trioflow.profiling import Profiler
from trioflow.server.execution import Executor, _cpu_percent, _rss
from trioflow.server.memory import WorkerMemory, memory_fractions, monitor_interval
from trioflow.server import logs
from trioflow.server.services import dashboard_wanted, start_dashboard
from trioflow.server.dispatch import RequestDispatch
from trioflow.server.stimuli import new_stimulus_id, stimulus_of, validate_requested
from trioflow.server.task_stream import TaskStream
from trioflow.server.threads import TaskThreads
from trioflow.server.sampler import (profile_servers, require_server_profiles, sample,
                                     sampling_interval)
from trioflow.server.warm_imports import warm_imports as import_in_background
from trioflow.server.worker_hooks import WorkerHooks, default_hooks
from trioflow.server.worker_requests import PEER_REQUESTS, SCHEDULER_REQUESTS, keep, load
from trioflow.server.extensions import build, named, worker_extensions
from trioflow.utils import memory_limit_bytes

logger = logging.getLogger("trioflow.worker")

#: seconds close() waits for running sync tasks before abandoning their threads
CLOSE_GRACE = 2.0


class Worker(EnteredFromAsyncio):
    """A worker.  ``Worker(scheduler_address, nthreads=2)``; use as
    ``async with``.  Leaving the block closes it: running async tasks are
    cancelled, sync tasks get ``CLOSE_GRACE`` seconds and are then abandoned
    with a log line (a thread cannot be killed).

    ``memory_limit`` (bytes, ``"4GB"``, ``"auto"``, a fraction of the machine;
    0 for none) and dask's ``memory_target_fraction`` (spill the least
    recently used results to ``local_directory`` past it), ``..._spill_fraction``
    (spill while the process's memory is past it), ``..._pause_fraction``
    (start no new task past it) and ``..._terminate_fraction`` (a nanny
    restarts the worker past it): see docs/memory.md.

    ``hooks`` (a ``WorkerHooks``) makes the client tasks get and the handle
    of an actor; by default the ones ``trioflow`` registers."""

    def __init__(self, scheduler_ip: str | None = None, scheduler_port: int | None = None, *,
                 scheduler_file: str | None = None, nthreads: int = 1, name=None,
                 memory_limit: int = 0, resources: dict | None = None,
                 host: str = "127.0.0.1", port: int = 0, listen_address: str | None = None,
                 nanny: str | None = None, heartbeat_interval: float = 1.0,
                 token: str | None = None, validate: bool | None = None,
                 warm_imports: tuple[str, ...] = (), security=None,
                 dashboard_address=None, dashboard=None, local_directory=None,
                 memory_target_fraction=None, memory_spill_fraction=None,
                 memory_pause_fraction=None, memory_terminate_fraction=None,
                 hooks: WorkerHooks | None = None, extensions=None, **kwargs):
        if scheduler_file is not None and scheduler_ip is None:
            scheduler_ip, token = tokens.read_scheduler_file(scheduler_file, token)
        if scheduler_ip is None:
            raise ValueError("Worker needs a scheduler address or scheduler_file=")
        if scheduler_port is not None:
            scheduler_ip = f"{scheduler_ip}:{scheduler_port}"
        self.scheduler_address = normalize_address(scheduler_ip)
        self.nthreads = int(nthreads)
        self.name = name
        self.memory_limit = memory_limit_bytes(memory_limit)
        self.memory = WorkerMemory(self.memory_limit, memory_fractions(
            memory_target_fraction, memory_spill_fraction, memory_pause_fraction,
            memory_terminate_fraction), local_directory)
        self._monitor_interval = monitor_interval()
        self.resources = worker_resources(resources)  # None: dask's config, as dask
        self.nanny = nanny
        self.heartbeat_interval = heartbeat_interval
        self.token = token  # None: the one it proves to the scheduler, learnt on connecting
        self._token_known = token is not None
        self.security = security
        self.warm_imports = tuple(warm_imports)  # see trioflow.server.warm_imports
        if listen_address is None:
            if self.scheduler_address.startswith("inproc://"):
                listen_address = new_address()
            else:
                # peers and clients reach a worker the way they reach its scheduler
                scheme = self.scheduler_address.split("://", 1)[0]
                listen_address = f"{scheme}://{host}:{port}"
        self._listen = listen_address
        self.address: str | None = None
        self.id = f"Worker-{uuid.uuid4()}"
        self.data = self.memory.data  # a SpillBuffer: in memory, or in local_directory
        self._events: deque = deque()  # events caused while handling one (a spill failed)
        self._handling = False
        self.state: WorkerState | None = None
        # None: check the state after every event if TRIOFLOW_VALIDATE is set
        self._validate = validate_requested(validate)
        #: the exception that stopped the worker's core, if one did
        self.failure: BaseException | None = None
        self._peers: ConnectionPool | None = None
        self._threads = TaskThreads(f"trioflow-task-{name}" if name is not None else "trioflow-task")
        self.executor = Executor(self, self._threads)
        self.executing = self.executor.executing  # key -> Execution of the tasks running now
        self._rejoin_waiters: dict = {}
        self._requests = RequestDispatch(logger, lambda: f"worker {self.address}")
        self.task_stream = TaskStream()  # recent runs and fetches: get_task_stream, dashboard
        self.profiler = Profiler()  # sampled stacks, for Client.profile
        self._profile_interval = sampling_interval()
        logs.install()
        self.scheduler: Connection | None = None
        self.nursery: trio.Nursery | None = None
        self._nursery_manager = None
        self.status = "created"
        self._finished = trio.Event()
        self.trio_token: trio.lowlevel.TrioToken | None = None
        self.plugins: dict = {}
        self.actors: dict = {}  # key -> the instance of an actor task; data holds its proxy
        self._extension_classes = named(worker_extensions() if extensions is None else extensions)
        self.extensions: dict = {}
        self._extension_handlers: dict = {}
        self.hooks = hooks if hooks is not None else default_hooks()
        self.client = None  # the client tasks get from get_client(), made on first use
        self._client_lock = trio.Lock()
        self._client_stack = AsyncExitStack()  # leaving it closes that client
        # a worker serves /metrics only when asked (dask's worker dashboard)
        self._dashboard_address = None if dashboard is False else dashboard_address
        self._dashboard_factory = dashboard if callable(dashboard) else None
        self.services: dict[str, int] = {}

    def __repr__(self):
        return f"<Worker {self.address!r} name={self.name!r} threads={self.nthreads}>"

    # ------------------------------------------------------------ lifetime

    async def __aenter__(self):
        if current_library() == "asyncio":
            return await self._start_under_asyncio()
        self.trio_token = trio.lowlevel.current_trio_token()
        self._nursery_manager = trio.open_nursery()
        self.nursery = await self._nursery_manager.__aenter__()
        try:
            self.memory.start()
            self.address = await self.nursery.start(self._serve_task)
            if self.name is None:
                self.name = self.address
            self._peers = ConnectionPool(self.nursery, {"role": "peer", "address": self.address},
                                         self.token, security=self.security, role="worker")
            self.extensions, self._extension_handlers = build(self._extension_classes, self)
            self.state = WorkerState(self.address, self.nthreads, self.resources, self._validate,
                                     **self.memory.core_arguments())
            if dashboard_wanted(self._dashboard_address):
                bound = await start_dashboard(self.nursery, self, "worker",
                                              self._dashboard_address, self._dashboard_factory)
                if bound is not None:
                    self.services["dashboard"] = bound[1]
            comm = await connect(self.scheduler_address, self.nursery, token=self.token,
                                 security=self.security, role="worker", info={
                "role": "worker", "address": self.address, "nthreads": self.nthreads,
                "name": self.name, "memory_limit": self.memory_limit,
                "resources": self.resources, "pid": os.getpid(), "nanny": self.nanny,
                "dashboard_port": self.services.get("dashboard"),
                "local_directory": self.memory.data.directory,
                "host": self.address.split("://", 1)[-1].rsplit(":", 1)[0]})
            if not self._token_known:
                self.token = self._peers.token = comm.token
                self._token_known = True
            self.scheduler = Connection(comm, self._scheduler_msg, messages.FROM_SCHEDULER)
            self.nursery.start_soon(self._scheduler_stream)
            self.nursery.start_soon(self._heartbeat)
            if self.memory.monitored:
                self.nursery.start_soon(self.memory.monitor, self._handle, self._monitor_interval)
            self.nursery.start_soon(partial(
                sample, self.profiler, self.executor.task_threads, self._profile_interval,
                tasks_running=self.executor.tasks_running, sample_loop=profile_servers()))
            if self.warm_imports:
                self.nursery.start_soon(import_in_background, self.warm_imports)
        except BaseException:
            self.nursery.cancel_scope.cancel()
            try:
                await self._nursery_manager.__aexit__(None, None, None)
            finally:
                self.memory.close()
            raise
        self.status = "running"
        logger.info("worker %s connected to %s", self.address, self.scheduler_address)
        return self

    async def __aexit__(self, *exc_info):
        await self.close()

    async def close(self, reason: str = "closed"):
        if current_library() == "asyncio":
            return await self._close_under_asyncio()
        if self._nursery_manager is None or self.status in ("closing", "closed"):
            if self.status == "closing":
                await self._finished.wait()
            return
        self.status = "closing"
        try:
            await self._stop_everything(reason)
        finally:
            self.nursery.cancel_scope.cancel()
            try:
                await self._nursery_manager.__aexit__(None, None, None)
            finally:
                self._threads.shutdown()
                self.memory.close()  # spilled files and the worker's directory
                self.status = "closed"
                self._finished.set()

    async def _stop_everything(self, reason: str):
        self._handle(ev.WorkerClosing(new_stimulus_id("worker-close")))
        stuck = await self.executor.wait_for_threads(CLOSE_GRACE)
        if stuck:
            logger.warning("worker %s closes with %d sync task(s) still running in threads "
                           "(%s); their threads are abandoned and their results discarded",
                           self.address, len(stuck), ", ".join(map(repr, stuck[:5])))
        for extension in self.extensions.values():
            with trio.move_on_after(2):
                await extension.close()
        with trio.move_on_after(5):
            await self._client_stack.aclose()
        if self.scheduler is not None:
            self.scheduler.close(reason)
            with trio.move_on_after(2):
                await self.scheduler.wait_closed()

    async def finished(self):
        if current_library() == "asyncio":
            return await self._run_under_asyncio(self.finished)
        """Wait until the worker has closed (also when the scheduler went away)."""
        await self._finished.wait()

    async def _serve_task(self, task_status=trio.TASK_STATUS_IGNORED):
        await serve(self._listen, self._handle_comm, security=self.security, role="worker",
                    token=lambda: self.token if self._token_known else _UNGUESSABLE,
                    check_info=_check_peer_info, task_status=task_status)

    async def _scheduler_stream(self):
        await self.scheduler.run()
        if self.status == "running":
            logger.warning("worker %s lost its scheduler (%s); closing",
                           self.address, self.scheduler.close_reason)
            self.status = "lost-scheduler"
            # cannot await close() from inside our own nursery: stop the tasks, then
            # let the owner's ``async with`` finish the job
            self._handle(ev.WorkerClosing(new_stimulus_id("lost-scheduler")))
            self._finished.set()

    async def _heartbeat(self):
        while True:
            await trio.sleep(self.heartbeat_interval)
            rss = self.memory.rss()
            report = self.state.memory_report()
            self.memory.log_spilling(self.address, report, rss)
            self.scheduler.send({"op": "heartbeat", "metrics": {
                "executing": len(self.executing), "in_memory": len(self.data), "memory": rss,
                **report}})

    # ------------------------------------------------------------ state machine

    def _handle(self, event) -> None:
        """Apply ``event``, and the events carrying out its instructions causes
        (a spill that failed), one after another."""
        self._events.append(event)
        if self._handling:
            return
        self._handling = True
        try:
            while self._events:
                self._apply(self._events.popleft())
        finally:
            self._handling = False
            self._events.clear()

    def _apply(self, event) -> None:
        if self.failure is not None:
            return
        try:
            instructions = self.state.handle(event, time.monotonic())
        except Exception as exc:
            self._core_failed(event, exc)
            return
        for inst in instructions:
            kind = type(inst)
            if kind is ev.Execute:
                self.nursery.start_soon(self._execute, inst.key, inst.timeout)
            elif kind is ev.SendToScheduler:
                if inst.msg["op"] == "worker-status-change":
                    self.memory.log_status(self.address, inst.msg["status"],
                                           self.state.process_memory)
                self.scheduler.send(inst.msg)
            elif kind is ev.Spill:
                failed = self.memory.spill(inst.key, self.address)
                if failed is not None:
                    self._events.append(failed)
            elif kind is ev.Unspill:
                self.memory.unspill(inst.key)
            elif kind is ev.DeleteData:
                self.data.pop(inst.key, None)
                self.actors.pop(inst.key, None)
            elif kind is ev.Fetch:
                self.nursery.start_soon(self._fetch, inst.peer, inst.keys)
            elif kind is ev.CancelExecution:
                self.executor.cancel(inst.key)
            elif kind is ev.GrantRejoin:
                waiter = self._rejoin_waiters.pop(inst.key, None)
                if waiter is not None:
                    waiter.set()

    def _core_failed(self, event, exc: Exception):
        """A bug in trioflow's worker core: its state can no longer be trusted.
        Log it with the key's story and close; a nanny starts a new worker."""
        self.failure = exc
        key = getattr(event, "key", None)
        keys = (key,) if key is not None else tuple(getattr(event, "keys", ()) or ())[:20]
        story = exc.story if isinstance(exc, InvalidTransition) else self.state.story(*keys)
        logger.critical(
            "worker %s: its state machine failed handling %r; the state is no longer "
            "consistent, so the worker closes. Story of %r:\n%s", self.address, event, keys,
            "\n".join(map(repr, story[-50:])), exc_info=exc)
        self.status = "failed"
        self.executor.cancel_all()
        if self.scheduler is not None:
            self.scheduler.close("the worker's state machine failed")
        self._finished.set()

    def _scheduler_msg(self, msg: dict):
        op = msg.get("op")
        if op == "compute-task":
            self._handle(ev.ComputeTask(
                msg["key"], msg["run_spec"], dict(msg.get("who_has") or {}),
                dict(msg.get("nbytes") or {}), tuple(msg.get("priority") or ()),
                msg.get("resources"), bool(msg.get("actor")), bool(msg.get("is_async")),
                stimulus_of(msg, "compute-task"),
                float(msg["timeout"]) if msg.get("timeout") else None))
        elif op == "free-keys":
            self._handle(ev.FreeKeys(tuple(msg["keys"]), stimulus_of(msg, "free-keys")))
        elif op == "close":
            logger.info("worker %s asked to close: %s", self.address, msg.get("reason"))
            self.nursery.start_soon(self._close_from_inside, msg.get("reason") or "asked to close",
                                    bool(msg.get("restart")))
        else:
            builtin = SCHEDULER_REQUESTS.get(op)
            handler = (partial(builtin, self) if builtin is not None
                       else self._extension_handlers.get(op))
            if handler is not None:
                inproc = self.scheduler_address.startswith("inproc://")
                self._requests.start(self.scheduler, msg, partial(handler, msg, inproc),
                                     "the scheduler", self.nursery)
            else:
                logger.warning("worker %s: unknown op %r from the scheduler", self.address, op)

    # ------------------------------------------------------------ tasks' view of the worker

    def get_profile(self, start=None, stop=None, key=None, server=False) -> dict:
        if server:
            require_server_profiles()
        return self.profiler.get(start, stop, key, server)

    def call_stacks(self, keys=None) -> dict:
        """The current stack of each running task (sync tasks: their thread's)."""
        return self.executor.call_stacks(keys)

    async def get_client_async(self):
        """The client tasks on this worker share, connected on first use."""
        if self.client is None:
            async with self._client_lock:
                if self.client is None:
                    self.client = await self._client_stack.enter_async_context(
                        self.hooks.make_client(self))
        return self.client

    def log_event(self, topic, msg) -> None:
        """Log ``msg`` under ``topic`` (or each of a list of topics) in the
        scheduler's event log, without waiting; any thread (dask's
        ``Worker.log_event``; see ``Client.log_event``)."""
        from trioflow.protocol.primitives import check_msgpack
        check_msgpack(msg, "Message")
        message = {"op": "log-event", "topic": topic, "msg": msg}
        try:
            in_loop = trio.lowlevel.current_trio_token() is self.trio_token
        except RuntimeError:
            in_loop = False
        if in_loop:
            self.scheduler.send(message)
        else:
            self.trio_token.run_sync_soon(self.scheduler.send, message)

    def secede_task(self, key):
        self._handle(ev.Seceded(key, new_stimulus_id("secede")))

    async def rejoin_task(self, key):
        granted = trio.Event()
        self._rejoin_waiters[key] = granted
        self._handle(ev.RejoinRequested(key, new_stimulus_id("rejoin")))
        await granted.wait()

    async def _close_from_inside(self, reason, restart=False):
        # a nanny restarts a worker that exits after "restarting", not one that was retired
        self.status = "restarting" if restart else "lost-scheduler"
        self._handle(ev.WorkerClosing(new_stimulus_id("close-requested")))
        self.scheduler.close(reason)
        self._finished.set()

    # ------------------------------------------------------------ execution

    async def _execute(self, key, timeout):
        ts = self.state.tasks.get(key)
        if ts is None:
            return
        if ts.state != "executing":
            # cancelled between the Execute instruction and this task starting:
            # the state machine still counts its slot until told it stopped
            self._handle(ev.ExecuteCancelled(key, new_stimulus_id("cancelled-before-start")))
            return
        try:
            func, args, kwargs = self.executor.load(ts.run_spec, self.data)
        except Exception as exc:
            exc_frames, tb_frames, text = pack_exception(exc)
            self._handle(ev.ExecuteFailure(
                key, exc_frames, tb_frames, f"could not load task {key!r}: {text}", "",
                new_stimulus_id("load-failed")))
            return
        is_async = inspect.iscoroutinefunction(func)
        if is_async and self.client is None:
            # get_client() is synchronous: an async task must find the client made
            await self.get_client_async()
        # the scheduler counts this worker's death against the task only once
        # it knows the task started, and a task may end the process at once
        self.scheduler.send({"op": "task-started", "key": key})
        await self.scheduler.flush()
        if ts.state != "executing":
            self._handle(ev.ExecuteCancelled(key, "cancelled-before-start"))
            return
        status, value, duration, execution = await self.executor.run(
            self.nursery, key, func, args, kwargs, is_async, timeout)
        self.task_stream.add_run({"key": key, "worker": self.address, "start": execution.started,
                                  "stop": time.time(), "duration": duration, "status": status,
                                  "async": is_async, "thread": execution.thread_id})
        if status == "ok":
            nbytes, type_name = sizeof(value), type(value).__name__
            if ts.actor:
                self.actors[key] = value
                value = self.hooks.wrap_actor(value, self.address, key)  # what others get
            self.data[key] = value
            self._handle(ev.ExecuteSuccess(key, nbytes, type_name, duration,
                                           new_stimulus_id("execute-success")))
        elif status == "cancelled":
            self._handle(ev.ExecuteCancelled(key, new_stimulus_id("execute-cancelled")))
        elif status == "timed-out":
            self._handle(ev.ExecuteTimedOut(key, new_stimulus_id("execute-timed-out")))
        else:
            exc_frames, tb_frames, text = pack_exception(value)
            self._handle(ev.ExecuteFailure(key, exc_frames, tb_frames, text, "",
                                           new_stimulus_id("execute-failure")))

    # ------------------------------------------------------------ fetching

    async def _fetch(self, peer: str, keys: tuple):
        started = time.time()
        try:
            conn = await self._peers.get(peer)
            result = await conn.request({"op": "get-data", "keys": list(keys)})
        except (CommClosedError, OSError, ProtocolError, trio.TooSlowError) as exc:
            logger.info("worker %s could not fetch %d key(s) from %s: %s",
                        self.address, len(keys), peer, exc)
            self._handle(ev.GatherDone(peer, {}, tuple(keys), True,
                                       new_stimulus_id("gather-failed")))
            return
        values, unloadable = load(self, result.get("data") or {}, peer)
        for key, text in unloadable.items():
            # before GatherDone's missing-data: the key errs instead of being recomputed
            # only to fail here again, and its dependents err with it
            self.scheduler.send({"op": "unserializable", "key": key, "text": text})
        nbytes = keep(self, values)
        missing = tuple(k for k in keys if k not in nbytes)
        self.task_stream.add_transfer({"peer": peer, "worker": self.address,
                                       "keys": list(nbytes), "start": started,
                                       "stop": time.time(), "nbytes": sum(nbytes.values())})
        self._handle(ev.GatherDone(peer, nbytes, missing, False, new_stimulus_id("gather-done")))

    # ------------------------------------------------------------ serving peers and clients

    async def _handle_comm(self, comm):
        inproc = comm.peer_address.startswith("inproc://")
        async with trio.open_nursery() as requests:
            conn = Connection(comm, lambda msg: self._serve_request(conn, msg, inproc, requests),
                              messages.FROM_PEER)
            try:
                await conn.run()
            finally:
                requests.cancel_scope.cancel()
                self._requests.connection_closed(conn)

    def _serve_request(self, conn: Connection, msg: dict, inproc: bool, requests: trio.Nursery):
        op = msg.get("op")
        peer = conn.peer_address
        builtin = PEER_REQUESTS.get(op)
        handler = (partial(builtin, self) if builtin is not None
                   else self._extension_handlers.get(op))
        if handler is None:
            self._requests.refuse(conn, msg, peer, ValueError(f"worker: unknown operation {op!r}"))
            return
        self._requests.start(conn, msg, partial(handler, msg, inproc), peer, requests)

    def metrics(self) -> dict:
        """Counts for the dashboard and /metrics (one pass over this worker's tasks)."""
        counts = Counter(ts.state for ts in list(self.state.tasks.values())) if self.state else {}
        stream = self.task_stream
        return {"executing": len(self.executing), "in_memory": len(self.data),
                "tasks": dict(counts), "nthreads": self.nthreads,
                "memory_limit": self.memory_limit, "memory": _rss(),
                **(self.state.memory_report() if self.state else {}),
                "cpu": _cpu_percent(), "transfer_count": stream.transfer_count,
                "transfer_bytes": stream.transfer_bytes,
                "transfer_seconds": stream.transfer_seconds}

#: a token no peer knows: required until the scheduler connection tells the real one
#: (until then no peer has been told this worker's address either)
_UNGUESSABLE = tokens.new_token()


def _check_peer_info(info: dict) -> None:
    messages.check_peer_info(info, ("client", "peer", "scheduler"))

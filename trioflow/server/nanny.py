"""The nanny: keeps one worker process alive.

It starts ``python -m trioflow.server.worker_main``, learns the worker's
address from the first line the process prints, forwards the rest of its
output, restarts it when it dies (or passes ``memory_limit``), and on close
stops it (SIGTERM, then SIGKILL after a grace period) and waits for it.

Why a worker process ended comes over a pipe, not its exit code: before an
exit of its own choosing the worker writes its final status (``closed``,
``restarting``, ``failed`` or ``lost-scheduler``) to a pipe only the nanny
reads.  ``lost-scheduler`` stops the nanny; anything else is restarted.  A
process that ends without a word (a task's ``os._exit(3)``, a segfault, a
signal, the nanny's own memory kill) died, and the nanny tells the
scheduler how (``worker-ended``, see ``server/deaths.py``), so the death is
counted against the task it was running with its exit code or signal.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys

import shutil

import psutil
import trio

from trioflow.comm import connect
from trioflow.comm.addressing import normalize_address
from trioflow.comm.connection import Connection
from trioflow.errors import CommClosedError, ProtocolError, TimeoutError
from trioflow.server.background import EnteredFromAsyncio, current_library
from trioflow.server.deaths import describe_exit
from trioflow.server.memory import make_worker_directory, memory_fractions, monitor_interval
from trioflow.utils import format_bytes, memory_limit_bytes

logger = logging.getLogger("trioflow.nanny")

#: exit code of a worker process whose scheduler went away; only informative:
#: the nanny stops when the worker says so on its pipe (see the module text)
EXIT_LOST_SCHEDULER = 3
#: what a worker writes on its nanny's pipe when it leaves because its scheduler did
LOST_SCHEDULER = "lost-scheduler"
ADDRESS_LINE = "trioflow-worker-address "
#: seconds a closing worker gets before it is killed
STOP_GRACE = 5.0
#: set in a worker process's environment unless the user set them (as dask's
#: nanny does): glibc returns freed memory to the system sooner, and numerical
#: libraries do not start a thread per core in each of several workers
PRE_SPAWN_ENVIRON = {"MALLOC_TRIM_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1",
                     "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class Nanny(EnteredFromAsyncio):
    def __init__(self, scheduler_ip: str | None = None, *, scheduler_file: str | None = None,
                 nthreads: int = 1, name=None, memory_limit: int = 0,
                 resources: dict | None = None, host: str = "127.0.0.1",
                 token: str | None = None, env: dict | None = None,
                 startup_timeout: float = 60, security=None, dashboard_address=None,
                 local_directory=None, memory_target_fraction=None,
                 memory_spill_fraction=None, memory_pause_fraction=None,
                 memory_terminate_fraction=None, **kwargs):
        if scheduler_file is not None and scheduler_ip is None:
            from trioflow.comm.tokens import read_scheduler_file
            scheduler_ip, token = read_scheduler_file(scheduler_file, token)
        self.scheduler_address = normalize_address(scheduler_ip)
        self.nthreads = nthreads
        self.name = name
        self.memory_limit = memory_limit_bytes(memory_limit)
        # resolved here (keywords, else dask's settings), so a bad one fails at once
        # and the worker process gets what this process was configured with
        self.memory_fractions = memory_fractions(
            memory_target_fraction, memory_spill_fraction, memory_pause_fraction,
            memory_terminate_fraction)
        self._monitor_interval = monitor_interval()
        self.local_directory = local_directory
        self._worker_directory: str | None = None
        self.resources = resources
        self.host = host
        self.token = token
        self.security = security
        if security is not None:
            security.check_address(self.scheduler_address, "scheduler address")
        self.env = env
        self.dashboard_address = dashboard_address  # the worker's /metrics endpoint
        self.startup_timeout = startup_timeout
        self.worker_address: str | None = None
        self.process: trio.Process | None = None
        self.restarts = 0
        self.status = "created"
        self._closing = False
        self._nursery_manager = None
        self.nursery: trio.Nursery | None = None
        self._finished = trio.Event()
        self._started_again = trio.Event()
        #: why the nanny itself is about to kill its worker (e.g. the memory
        #: limit); said in the worker's death report
        self.kill_reason: str | None = None
        self._scheduler: Connection | None = None  # where deaths are reported

    def __repr__(self):
        return f"<Nanny worker={self.worker_address!r} restarts={self.restarts}>"

    @property
    def address(self):
        return self.worker_address

    @property
    def pid(self):
        return self.process.pid if self.process is not None else None

    async def __aenter__(self):
        if current_library() == "asyncio":
            return await self._start_under_asyncio()
        self._nursery_manager = trio.open_nursery()
        self.nursery = await self._nursery_manager.__aenter__()
        try:
            await self.nursery.start(self._supervise)
        except BaseException:
            self._closing = True
            self.nursery.cancel_scope.cancel()
            await self._nursery_manager.__aexit__(None, None, None)
            raise
        self.status = "running"
        return self

    async def __aexit__(self, *exc_info):
        await self.close()

    async def close(self):
        if current_library() == "asyncio":
            return await self._close_under_asyncio()
        if self._nursery_manager is None or self.status == "closed":
            return
        self._closing = True
        self.status = "closing"
        try:
            with trio.CancelScope(shield=True):
                await self._stop_process()
        finally:
            self.nursery.cancel_scope.cancel()
            await self._nursery_manager.__aexit__(None, None, None)
            self.status = "closed"
            self._finished.set()

    async def finished(self):
        if current_library() == "asyncio":
            return await self._run_under_asyncio(self.finished)
        await self._finished.wait()

    async def restart(self):
        """Stop the worker process; the supervisor starts a fresh one."""
        self._started_again = trio.Event()
        await self._stop_process()
        await self._started_again.wait()

    async def _stop_process(self):
        proc = self.process
        if proc is None or proc.returncode is not None:
            return
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            return
        with trio.move_on_after(STOP_GRACE):
            await proc.wait()
            return
        logger.warning("worker process %s did not stop within %s s; killing it",
                       proc.pid, STOP_GRACE)
        proc.kill()
        await proc.wait()

    def _command(self, status_fd: int) -> list[str]:
        cmd = [sys.executable, "-m", "trioflow.server.worker_main", self.scheduler_address,
               "--nthreads", str(self.nthreads), "--host", self.host,
               "--memory-limit", str(self.memory_limit), "--nanny-pid", str(os.getpid()),
               "--nanny-fd", str(status_fd)]
        if self.name is not None:
            cmd += ["--name", str(self.name)]
        if self.resources:
            cmd += ["--resources", json.dumps(self.resources)]
        if self.dashboard_address not in (None, False):
            cmd += ["--dashboard-address", str(self.dashboard_address)]
        for name in ("target", "spill", "pause"):
            cmd += [f"--memory-{name}-fraction", str(self.memory_fractions[name])]
        if self._worker_directory:
            cmd += ["--worker-directory", self._worker_directory]
        return cmd

    async def _supervise(self, task_status=trio.TASK_STATUS_IGNORED):
        # a worker process needs only the server side of the package
        env = {**PRE_SPAWN_ENVIRON, **os.environ, "TRIOFLOW_LAZY_IMPORTS": "1",
               **(self.env or {})}
        if self.token:
            env["TRIOFLOW_TOKEN"] = self.token
        if self.security is not None:
            from trioflow.security import ENV_VAR
            env[ENV_VAR] = self.security.to_env()
        started = False
        failures = 0
        while not self._closing:
            # one directory per worker process, removed however the process ends
            self._worker_directory = make_worker_directory(self.local_directory)
            status_read, status_write = os.pipe()
            try:
                proc = await trio.lowlevel.open_process(
                    self._command(status_write), stdout=subprocess.PIPE, env=env,
                    pass_fds=(status_write,))
            except BaseException:
                os.close(status_read)
                raise
            finally:
                os.close(status_write)
            self.process = proc
            self.kill_reason = None
            address = None
            try:
                async with trio.open_nursery() as watchers:
                    address = await self._read_address(proc, watchers)
                    if address is not None:
                        failures = 0
                        self.worker_address = address
                        await self._report({"op": "worker-started", "address": address})
                        if not started:
                            started = True
                            task_status.started()
                        else:
                            self.restarts += 1
                        self._started_again.set()
                        if self.memory_limit and self.memory_fractions["terminate"]:
                            watchers.start_soon(self._watch_memory, proc)
                    await proc.wait()
                    watchers.cancel_scope.cancel()
            finally:
                if proc.returncode is None:
                    with trio.CancelScope(shield=True):
                        proc.kill()
                        await proc.wait()
                said = _read_status(status_read)
                os.close(status_read)
                shutil.rmtree(self._worker_directory, ignore_errors=True)
            code = proc.returncode
            cause = self._cause(said, code)
            if address is not None:
                with trio.CancelScope(shield=True):
                    await self._report({"op": "worker-ended", "address": address,
                                        "cause": cause})
            if self._closing:
                break
            if said == LOST_SCHEDULER:
                logger.info("worker process %s lost its scheduler; the nanny stops", proc.pid)
                break
            if not started:
                raise RuntimeError(f"worker process failed to start ({cause}); "
                                   "see its output above")
            if said in ("closed", "restarting"):
                logger.info("worker process %s restarts on request", proc.pid)
            else:
                failures += 1
                logger.warning("worker process %s (%s) ended (%s); starting a new one",
                               proc.pid, self.worker_address, cause)
            await trio.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)) if failures > 1 else 0)
        if self._scheduler is not None:
            self._scheduler.close("the nanny stops")
        self.status = "closed" if self._closing else "finished"
        self._finished.set()

    def _cause(self, said: str, code: int | None) -> str:
        """How the worker process ended, in words for the scheduler's KilledWorker text."""
        how = describe_exit(code)
        if self.kill_reason:
            return f"{self.kill_reason} ({how})"
        if said == "failed":
            return f"its state machine failed ({how})"
        if said:
            return f"it closed: {said} ({how})"
        return how

    async def _report(self, msg: dict) -> None:
        """Tell the scheduler ``msg`` on the nanny's own connection (opened on
        first use); if the scheduler cannot be reached, nobody is left to tell."""
        conn = self._scheduler
        if conn is None or conn.closed:
            self._scheduler = None
            try:
                comm = await connect(self.scheduler_address, self.nursery, token=self.token,
                                     security=self.security, role="worker", timeout=2,
                                     info={"role": "nanny", "pid": os.getpid()})
            except (OSError, CommClosedError, ProtocolError, TimeoutError) as exc:
                logger.info("nanny could not reach the scheduler to report %s: %s",
                            msg["op"], exc)
                return
            conn = self._scheduler = Connection(comm)
            self.nursery.start_soon(conn.run)
        conn.send(msg)

    async def _read_address(self, proc, nursery) -> str | None:
        """Read the worker's first line (its address), then keep forwarding its output."""
        stream = proc.stdout
        buffer = b""
        address = None
        with trio.move_on_after(self.startup_timeout):
            while b"\n" not in buffer:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return None
                buffer += chunk
            line, _, rest = buffer.partition(b"\n")
            text = line.decode(errors="replace").strip()
            if text.startswith(ADDRESS_LINE):
                address = text[len(ADDRESS_LINE):]
            else:
                rest = buffer
            if rest:
                sys.stdout.write(rest.decode(errors="replace"))
        nursery.start_soon(_forward, stream)
        if address is None:
            logger.error("worker process %s did not report an address in %s s",
                         proc.pid, self.startup_timeout)
            proc.kill()
        return address

    async def _watch_memory(self, proc):
        fraction = self.memory_fractions["terminate"]
        try:
            ps = psutil.Process(proc.pid)
            while proc.returncode is None:
                await trio.sleep(self._monitor_interval)
                rss = ps.memory_info().rss
                if rss > self.memory_limit * fraction:
                    self.kill_reason = (
                        f"the nanny killed it: its process memory reached {format_bytes(rss)} "
                        f"({rss} bytes), past {round(fraction * 100)}% of its memory limit of "
                        f"{format_bytes(self.memory_limit)}")
                    logger.warning("worker %s: %s; restarting it", self.worker_address,
                                   self.kill_reason)
                    proc.kill()
                    return
        except psutil.Error:
            return


def _read_status(fd: int) -> str:
    """What the worker wrote on its status pipe before exiting ("" if nothing)."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while len(data) < 4096:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    except BlockingIOError:
        pass  # a task's child process may still hold the write end
    return data.decode(errors="replace").strip().splitlines()[-1] if data.strip() else ""


async def _forward(stream):
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        sys.stdout.write(chunk.decode(errors="replace"))
        sys.stdout.flush()

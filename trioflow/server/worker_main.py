"""Entry point of a worker process started by a nanny (not a public CLI).

Prints ``trioflow-worker-address ADDRESS`` once listening, then runs until
SIGTERM/SIGINT, until its nanny dies, or until the scheduler goes away.  On
the way out it writes its final status on the pipe ``--nanny-fd`` (the nanny
does not restart a worker that says ``lost-scheduler``); a process that ends
without writing it died (see ``server/nanny.py``)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

import psutil
import trio

from trioflow.server.nanny import ADDRESS_LINE, EXIT_LOST_SCHEDULER, LOST_SCHEDULER
from trioflow.server.warm_imports import warm_import_names
from trioflow.security import Security
from trioflow.server.worker import Worker


async def _watch_parent(pid: int, scope: trio.CancelScope):
    while True:
        await trio.sleep(1)
        if not psutil.pid_exists(pid) or os.getppid() != pid:
            logging.getLogger("trioflow.worker").warning("nanny %s is gone; exiting", pid)
            scope.cancel()
            return


async def _watch_signals(scope: trio.CancelScope):
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def _main(args) -> tuple[str, int]:
    worker = Worker(args.scheduler, nthreads=args.nthreads, name=args.name,
                    memory_limit=args.memory_limit, host=args.host,
                    resources=json.loads(args.resources) if args.resources else None,
                    nanny=str(args.nanny_pid) if args.nanny_pid else None,
                    token=os.environ.get("TRIOFLOW_TOKEN"),
                    warm_imports=warm_import_names(), security=Security.from_env(),
                    dashboard_address=args.dashboard_address,
                    memory_target_fraction=args.memory_target_fraction,
                    memory_spill_fraction=args.memory_spill_fraction,
                    memory_pause_fraction=args.memory_pause_fraction)
    # the nanny's directory for this process: it removes it however the process ends
    worker.memory.fixed_directory = args.worker_directory
    async with worker:
        print(ADDRESS_LINE + worker.address, flush=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, nursery.cancel_scope)
            if args.nanny_pid:
                nursery.start_soon(_watch_parent, args.nanny_pid, nursery.cancel_scope)
            await worker.finished()
            nursery.cancel_scope.cancel()
        status = worker.status
    if status == "failed":
        return status, 1  # its state machine failed: the nanny starts a new worker
    return status, EXIT_LOST_SCHEDULER if status == LOST_SCHEDULER else 0


def _tell_nanny(fd: int | None, status: str) -> None:
    if fd is None:
        return
    try:
        os.write(fd, status.encode() + b"\n")
        os.close(fd)
    except OSError:
        pass  # the nanny is gone


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trioflow.server.worker_main")
    parser.add_argument("scheduler")
    parser.add_argument("--nthreads", type=int, default=1)
    parser.add_argument("--name", default=None)
    parser.add_argument("--memory-limit", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--resources", default=None)
    parser.add_argument("--nanny-pid", type=int, default=None)
    parser.add_argument("--nanny-fd", type=int, default=None)
    parser.add_argument("--dashboard-address", default=None)
    for name in ("target", "spill", "pause"):
        parser.add_argument(f"--memory-{name}-fraction", default=None)
    parser.add_argument("--worker-directory", default=None)
    args = parser.parse_args(argv)
    if args.nanny_fd is not None:
        os.set_inheritable(args.nanny_fd, False)  # not passed on to tasks' subprocesses
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    status, code = trio.run(_main, args)
    _tell_nanny(args.nanny_fd, status)
    return code


if __name__ == "__main__":
    sys.exit(main())

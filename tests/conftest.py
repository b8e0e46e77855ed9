"""Fixtures for the integration tests: clusters, and a leak check on every test."""

import contextlib
import gc
import os
import pathlib
import sys
import threading
import time

import psutil
import pytest

TESTS_DIR = pathlib.Path(__file__).resolve().parent

# Worker processes (processes=True, CLI) unpickle task functions from
# tests/_tasks.py by reference, so they need this directory importable too.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
os.environ["PYTHONPATH"] = os.pathsep.join(
    dict.fromkeys(
        [str(TESTS_DIR)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
)

# The suite starts hundreds of clusters: none serves a dashboard unless its
# test asks for one (a user's default Client() serves it on :8787).
os.environ["TRIOFLOW_DASHBOARD_ADDRESS"] = "none"


# Hypothesis's explain phase re-runs a failing example under sys.settrace,
# which on Python 3.11 makes a big-graph state machine run for minutes: the
# test then ends in pytest-timeout and a FlakyStrategyDefinition that hides
# the real failure.  Shrink, but report the shrunk example without tracing.
from hypothesis import Phase  # noqa: E402
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile(
    "trioflow",
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    print_blob=True,
)
_hypothesis_settings.load_profile("trioflow")

# every scheduler and worker the tests start (in this process or in a child)
# checks its state machine's invariants after every event
os.environ["TRIOFLOW_VALIDATE"] = "1"

from _faces import FACES, Face  # noqa: E402
from _util import (  # noqa: E402
    CliCluster,
    cli_scheduler,
    cli_worker,
)

LEAK_DEADLINE = 5.0

# Threads that belong to the test environment rather than to the code under
# test. trio keeps idle worker threads cached for ~10 s after a
# to_thread.run_sync, named "Trio thread N"; they are reused, not leaked.
IGNORED_THREAD_PREFIXES = ("pydevd", "asyncio_", "Trio thread")

# Processes Python's multiprocessing keeps for the whole interpreter lifetime.
IGNORED_PROCESS_MARKERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _is_ignored_thread(thread):
    if thread.name.startswith(IGNORED_THREAD_PREFIXES):
        return True
    # pytest-timeout's "thread" method arms a threading.Timer per test.
    return isinstance(thread, threading.Timer)


def _is_ignored_process(proc):
    try:
        cmdline = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return any(marker in cmdline for marker in IGNORED_PROCESS_MARKERS)


def _process_identity(proc):
    try:
        return (proc.pid, proc.create_time())
    except psutil.NoSuchProcess:
        return (proc.pid, None)


def _live_children():
    """Child processes (recursive) that are still running (zombies have exited)."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            pass
    return alive


def _listening_ports():
    try:
        connections = psutil.Process().net_connections(kind="inet")
    except psutil.AccessDenied:
        return set()
    return {c.laddr for c in connections if c.status == psutil.CONN_LISTEN}


@pytest.fixture(autouse=True)
def check_leaks(request):
    """Fail the test if it leaves threads, child processes or listening sockets behind.

    After the test, waits up to LEAK_DEADLINE seconds for them to go away
    (servers may finish shutting down just after close() returns), then kills
    leftover child processes so they cannot disturb the next test.
    """
    if "property" in request.node.path.relative_to(TESTS_DIR).parts:
        yield
        return

    threads_before = set(threading.enumerate())
    children_before = {_process_identity(p) for p in _live_children()}
    ports_before = _listening_ports()

    yield

    def new_threads():
        return [
            t
            for t in threading.enumerate()
            if t not in threads_before and t.is_alive() and not _is_ignored_thread(t)
        ]

    def new_children():
        return [
            p
            for p in _live_children()
            if _process_identity(p) not in children_before and not _is_ignored_process(p)
        ]

    def new_ports():
        return _listening_ports() - ports_before

    gc.collect()
    deadline = time.monotonic() + LEAK_DEADLINE
    while (new_threads() or new_children() or new_ports()) and time.monotonic() < deadline:
        time.sleep(0.05)

    threads, children, ports = new_threads(), new_children(), new_ports()
    problems = []
    if threads:
        problems.append(
            "threads: " + ", ".join(f"{t.name!r} (daemon={t.daemon})" for t in threads)
        )
    if children:
        described = []
        for p in children:
            with contextlib.suppress(psutil.Error):
                described.append(f"{p.pid} {' '.join(p.cmdline())[:200]!r}")
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(children, timeout=5)
        problems.append("child processes: " + "; ".join(described))
    if ports:
        problems.append("listening sockets: " + ", ".join(f"{a.ip}:{a.port}" for a in ports))
    if problems:
        pytest.fail(
            f"leaked after {LEAK_DEADLINE}s: " + " | ".join(problems), pytrace=False
        )


@pytest.fixture
def inproc_client(check_leaks):
    """A Client on a LocalCluster with 2 in-process workers of 2 threads each."""
    from trioflow import Client

    with Client(
        processes=False, n_workers=2, threads_per_worker=2, dashboard_address=None
    ) as client:
        client.wait_for_workers(2, timeout=10)
        yield client


@pytest.fixture
def running_cluster(check_leaks):
    """A blocking LocalCluster, already running when the test starts, that the
    test's async clients connect to by address.  In-process workers, but a
    network address: an inproc:// one is reachable only from the loop thread."""
    from trioflow import LocalCluster

    with LocalCluster(processes=False, protocol="ws", n_workers=2,
                      threads_per_worker=2) as cluster:
        yield cluster


@pytest.fixture
def second_client(inproc_client):
    """A second blocking Client on ``inproc_client``'s cluster (closed afterwards)."""
    from trioflow import Client

    client = Client(inproc_client.scheduler_address, set_as_default=False)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(params=FACES)
def face(request, check_leaks):
    """One of the client's faces (blocking, trio, asyncio) to run a scenario
    through: ``face.run(scenario)``, see _faces.py. Restrict it with
    ``@pytest.mark.parametrize("face", ASYNC_FACES, indirect=True)``."""
    return Face(request.param)


@pytest.fixture
def proc_client(check_leaks):
    """A Client on a LocalCluster with 2 worker processes (under nannies), 1 thread each."""
    from trioflow import Client

    with Client(
        processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
    ) as client:
        client.wait_for_workers(2, timeout=30)
        yield client


@pytest.fixture
def cli_cluster(check_leaks, tmp_path):
    """``trioflow scheduler`` + ``trioflow worker --nworkers 2 --nthreads 2`` as subprocesses.

    Yields a CliCluster (``.address`` is the scheduler's address from its
    scheduler file). Both process groups are stopped afterwards, whatever the
    test's outcome.
    """
    with cli_scheduler(tmp_path) as (scheduler_proc, address, scheduler_file):
        with cli_worker(
            tmp_path,
            "--scheduler-file",
            str(scheduler_file),
            "--nthreads",
            "2",
            "--nworkers",
            "2",
        ) as worker_proc:
            yield CliCluster(
                address=address,
                scheduler_file=scheduler_file,
                scheduler_proc=scheduler_proc,
                worker_proc=worker_proc,
                directory=tmp_path,
            )

"""Helpers shared by the integration tests (imported by conftest.py and tests)."""

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import psutil

TESTS_DIR = pathlib.Path(__file__).resolve().parent


def wait_until(predicate, timeout=10.0, interval=0.02, message=None):
    """Poll ``predicate`` until it returns something truthy; return that value.

    Raises AssertionError naming ``message`` (or the predicate) when
    ``timeout`` seconds pass first. Exceptions from the predicate propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"condition not met within {timeout}s: {message or predicate!r}"
            )
        time.sleep(interval)


def scheduler_address(client):
    return client.scheduler_info()["address"]


def worker_pids(client, parent=None):
    """Map worker address -> pid of the process running that worker.

    Uses ``client.run(os.getpid)``; if that is unavailable, falls back to the
    leaf processes below ``parent`` (default: this process), which are the
    worker processes under their nannies.
    """
    try:
        pids = client.run(os.getpid)
    except AttributeError:
        pids = None
    if pids:
        return dict(pids)
    root = psutil.Process(parent or os.getpid())
    leaves = [p for p in root.children(recursive=True) if not p.children()]
    return {f"pid:{p.pid}": p.pid for p in leaves}


def worker_key_total(client):
    from _tasks import worker_key_count

    return sum(client.run(worker_key_count).values())


def key_is_forgotten(client, key):
    """True once no worker holds ``key`` and the scheduler no longer lists it."""
    if key in client.who_has():
        return False
    return all(key not in keys for keys in client.has_what().values())


def key_is_held(client, key):
    """True while some worker holds ``key`` in memory (by who_has or has_what)."""
    if client.who_has().get(key):
        return True
    return any(key in keys for keys in client.has_what().values())


def unique(prefix):
    """A fresh name starting with ``prefix`` (for names the scheduler keeps)."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def two_workers(client):
    """The addresses of the client's two workers, sorted."""
    workers = sorted(client.nthreads())
    assert len(workers) == 2, workers
    return workers


def holders(client, key):
    """The workers whose memory holds ``key`` (by has_what)."""
    return {address for address, keys in client.has_what().items() if key in keys}


def wait_forgotten(client, key, timeout=10):
    wait_until(lambda: key_is_forgotten(client, key), timeout, message=f"{key} forgotten")


def scheduler_task_count(client):
    return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.state.tasks))


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def barrier(client, timeout=10.0):
    """Return once the scheduler has handled every message this client sent before.

    A client's messages reach the scheduler in order, so when a key submitted
    and released *after* earlier releases is forgotten, those earlier releases
    have been processed too. This lets a test assert that something did NOT
    happen without sleeping.
    """
    from _tasks import identity

    marker = client.submit(identity, uuid.uuid4().hex, pure=False)
    assert marker.result(timeout=timeout)
    key = marker.key
    marker.release()
    del marker
    wait_until(lambda: key_is_forgotten(client, key), timeout, message="barrier key forgotten")


def subprocess_env():
    env = dict(os.environ)
    parts = [str(TESTS_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def log_tail(path, chars=3000):
    try:
        text = pathlib.Path(path).read_text(errors="replace")
    except OSError:
        return f"<no log at {path}>"
    return text[-chars:]


def start_cli(args, log_path):
    """Start ``python -m trioflow ARGS`` in its own session, output to ``log_path``."""
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "trioflow", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=subprocess_env(),
            start_new_session=True,
        )
    finally:
        log.close()


def stop_process_group(proc, timeout=10.0):
    """Stop ``proc`` and everything it started: SIGTERM its group, then SIGKILL.

    Descendants are recorded first, so ones that left the process group (or
    were orphaned when their parent died) are killed too.
    """
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    proc.wait(timeout=timeout)
    psutil.wait_procs(descendants, timeout=timeout)


def read_scheduler_file(path):
    try:
        info = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError):
        return None  # not written yet, or half written
    return info if isinstance(info, dict) and info.get("address") else None


def wait_for_scheduler_file(path, proc, log_path, timeout=30.0):
    def written():
        if proc.poll() is not None:
            raise AssertionError(
                f"scheduler exited with {proc.returncode} before writing {path}:\n"
                + log_tail(log_path)
            )
        return read_scheduler_file(path)

    return wait_until(written, timeout, message=f"scheduler file {path}")


@contextlib.contextmanager
def cli_scheduler(directory, *extra_args):
    """Run ``trioflow scheduler --port 0 --scheduler-file``; yield (proc, address, file)."""
    directory = pathlib.Path(directory)
    scheduler_file = directory / "s.json"
    log_path = directory / "scheduler.log"
    proc = start_cli(
        ["scheduler", "--port", "0", "--scheduler-file", str(scheduler_file), *extra_args],
        log_path,
    )
    try:
        info = wait_for_scheduler_file(scheduler_file, proc, log_path)
        yield proc, info["address"], scheduler_file
    finally:
        stop_process_group(proc)


@contextlib.contextmanager
def cli_worker(directory, *args, log_name="worker.log"):
    """Run ``trioflow worker ARGS``; yield the process."""
    proc = start_cli(["worker", *args], pathlib.Path(directory) / log_name)
    try:
        yield proc
    finally:
        stop_process_group(proc)


@dataclass
class CliCluster:
    address: str
    scheduler_file: pathlib.Path
    scheduler_proc: subprocess.Popen
    worker_proc: subprocess.Popen
    directory: pathlib.Path

    def logs(self):
        return (
            "--- scheduler ---\n"
            + log_tail(self.directory / "scheduler.log")
            + "\n--- worker ---\n"
            + log_tail(self.directory / "worker.log")
        )


def run_python(code, timeout=60):
    """Run ``python -c code`` with the tests' PYTHONPATH; return CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=timeout,
    )


def async_client(**kwargs):
    """An in-process ``Client(asynchronous=True)`` of two 2-thread workers; to
    be awaited or used with ``async with``."""
    from trioflow import Client
    options = dict(processes=False, asynchronous=True, n_workers=2, threads_per_worker=2,
                   dashboard_address=None)
    options.update(kwargs)
    return Client(**options)


def raw_ws_connect(port: int) -> socket.socket:
    """A plain socket past the websocket upgrade of a server at 127.0.0.1:port."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "the server closed during the websocket upgrade"
        head += chunk
    assert b" 101 " in head
    return sock

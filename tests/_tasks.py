"""Task functions for the integration tests.

They live in an importable module (the tests directory is put on PYTHONPATH
by conftest.py) so that worker processes started with ``processes=True`` or
by the CLI can unpickle them by reference.
"""

import os
import pathlib
import threading
import time


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def double(x):
    return 2 * x


def identity(x):
    return x


def divide(x, y):
    return x / y


def total(values):
    return sum(values)


def total_values(mapping):
    return sum(mapping.values())


def slow_inc(x, delay=0.2):
    # The sleep is the workload: it keeps tasks running while a test kills a worker.
    time.sleep(delay)
    return x + 1


def wait_for_path(path, timeout=30.0):
    """Block until ``path`` exists; raise TimeoutError after ``timeout`` seconds.

    Lets a test hold a task in the executing state and release it at a moment
    of its choosing, without guessing durations.
    """
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.01)
    return True


def wait_for_path_after(path, *dependencies):
    """``wait_for_path(path)``, after the dependencies passed (for the graph's shape)."""
    return wait_for_path(path)


def write_marker(path, *dependencies):
    pathlib.Path(path).write_text("ran")
    return path


def _parse_setting(text):
    return int(text)


def load_setting(text):
    """Fails inside a helper, so the remote traceback has two of our frames."""
    return _parse_setting(text)


def where_am_i():
    from trioflow import get_worker

    return get_worker().address


def signal_and_wait(started_path, release_path, timeout=30.0):
    """Create ``started_path``, then wait for ``release_path`` to exist."""
    pathlib.Path(started_path).touch()
    return wait_for_path(release_path, timeout)


def append_line(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")
    return text


def flaky_inc(counter_path, failures, x):
    """Fail the first ``failures`` calls (counted in a file, so across processes)."""
    counter = pathlib.Path(counter_path)
    attempts = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(attempts))
    if attempts <= failures:
        raise RuntimeError(f"flaky failure on attempt {attempts}")
    return x + 1


def inc_holding_reruns(runs_path, release_path, x):
    """``x + 1``; every run after the first waits for ``release_path``
    (runs are counted in a file, so across processes)."""
    with open(runs_path, "a") as f:
        f.write("run\n")
    if len(pathlib.Path(runs_path).read_text().splitlines()) > 1:
        wait_for_path(release_path)
    return x + 1


def make_lock():
    return threading.Lock()


def getpid():
    return os.getpid()


def worker_key_count(dask_worker):
    return len(dask_worker.data)


def fib_worker_client(n):
    """Recursive Fibonacci whose tasks submit and gather their subtasks."""
    from trioflow import worker_client
    if n < 2:
        return n
    with worker_client() as client:
        a = client.submit(fib_worker_client, n - 1)
        b = client.submit(fib_worker_client, n - 2)
        return a.result() + b.result()


def loaded_modules(names):
    """Which of ``names`` this process has imported."""
    import sys

    return sorted(name for name in names if name in sys.modules)


def spin_for(seconds):
    """Hold the CPU (and the GIL) for ``seconds``: a task a profiler sees running."""
    deadline = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < deadline:
        count += 1
    return count


def spin_until_profiled(samples=5, timeout=30.0, prefix="spin_until_profiled"):
    """Hold the CPU until this worker's profiler has counted ``samples``
    samples of tasks whose key prefix is ``prefix``; return how many."""
    from trioflow import get_worker

    profiler = get_worker().profiler
    deadline = time.monotonic() + timeout
    while True:
        spin_for(0.01)
        seen = profiler.get(key=prefix)["count"]
        if seen >= samples:
            return seen
        if time.monotonic() > deadline:
            raise TimeoutError(f"the profiler counted {seen} of {samples} samples in {timeout} s")


class Marker:
    """A weakly referenceable object a task can hold in a local."""


#: weak references to the Markers tasks made (in-process workers only)
MARKERS: list = []


def hold_marker_until_profiled():
    import weakref

    marker = Marker()
    MARKERS.append(weakref.ref(marker))
    return spin_until_profiled(3, prefix="hold_marker_until_profiled") and marker is not None


def print_and_warn(x):
    """dask's print and warn in a task (tests/test_client_compat.py)."""
    import sys
    from trioflow import print, warn
    print("to stdout", x, sep="|")
    print("to stderr", x, file=sys.stderr)
    warn(f"careful with {x}", RuntimeWarning)
    return x

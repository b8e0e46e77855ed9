"""Worker churn: SIGKILL a worker process every 2 s under dependent rounds.

    python benchmarks/chaos.py                      # trioflow and dask.distributed, ~10 min
    python benchmarks/chaos.py --impl trioflow      # one of them
    python benchmarks/chaos.py --rounds 4 --width 40 --kills 4   # a quick look

On a command-line cluster (one scheduler process, one worker command running
3 workers of 1 thread under nannies), each run computes ROUNDS dependent
rounds of WIDTH tasks -- task i of round r takes tasks i and i+1 of round
r-1 -- each round followed by a pairwise tree reduction of its values.  A
killer thread SIGKILLs one worker process (never a nanny) every 2 s while
the work lasts, up to --kills times (30 kills = the 60 s of issue 13); the
nannies start new ones.  Every future's value is checked against the same
functions run in plain Python.

For each implementation it prints one run without kills and one with:
futures done, erred (by exception type), wrong, lost (never finished), kills
and seconds.  dask.distributed runs in an interpreter that has it: this one,
or --dask-python (default /work/benchvenv/bin/python).  Each run is a child
process of its own, so nothing of one run's cluster survives into the next.

The same workload, smaller, is tests/test_chaos.py (run() with rounds=None:
rounds go on until the kills are done).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
MODULUS = 1_000_003
N_WORKERS = 3
#: rounds submitted but not yet checked; later rounds wait for the checks
LOOKAHEAD = 2

#: how each implementation's command line starts a cluster, and how its
#: worker processes (not its nannies) are told apart by their command lines
COMMANDS = {
    "trioflow": dict(
        scheduler=["-m", "trioflow", "scheduler", "--port", "0", "--no-dashboard"],
        worker=["-m", "trioflow", "worker", "--nthreads", "1", "--nworkers", str(N_WORKERS)],
        marker="trioflow.server.worker_main"),
    "dask": dict(
        scheduler=["-m", "distributed.cli.dask_scheduler", "--port", "0", "--no-dashboard"],
        worker=["-m", "distributed.cli.dask_worker", "--nthreads", "1",
                "--nworkers", str(N_WORKERS), "--no-dashboard"],
        marker="multiprocessing.spawn"),
}


# ------------------------------------------------------------------ the work

def step(a, b, r, delay):
    """Task i of round r from tasks i and i+1 of round r-1."""
    if delay:
        time.sleep(delay)
    return (3 * a + b + r) % MODULUS


def add(a, b, delay):
    if delay:
        time.sleep(delay)
    return a + b


def tree_reduce(level, combine):
    """The pairwise reduction of ``level`` (an odd one out goes up a level
    as it is); every node, the root last."""
    tree = []
    while len(level) > 1:
        pairs = [combine(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = pairs + level[len(level) - len(level) % 2:]
        tree += pairs
    return tree


def make_round(call, previous, width, r):
    """Round r (after round ``previous``, None for the first): its values and
    its tree, by ``call(function, *args)``: submitted, or run in plain Python."""
    if previous is None:
        values = [call(step, i, 0, 0) for i in range(width)]
    else:
        values = [call(step, previous[i], previous[(i + 1) % width], r) for i in range(width)]
    return values, tree_reduce(values, lambda a, b: call(add, a, b))


# ------------------------------------------------------------------ the cluster

def _descendants(pid):
    import psutil
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _stop(proc, timeout=15.0):
    """SIGTERM ``proc``'s process group, then SIGKILL it and every process it
    started (recorded first, so that orphans are found too)."""
    import psutil
    descendants = _descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    proc.wait(timeout)
    psutil.wait_procs(descendants, timeout=timeout)


def _start(args, log, env):
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, *args], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


@contextlib.contextmanager
def cli_cluster(impl, directory):
    """A scheduler process and a worker command of N_WORKERS nanny workers;
    yields (scheduler file, worker command's process).  Both are stopped,
    with everything they started, however the block ends."""
    directory = pathlib.Path(directory)
    scheduler_file = directory / f"{impl}-scheduler.json"
    env = dict(os.environ)
    # workers import this module's functions by reference when it is imported
    env["PYTHONPATH"] = os.pathsep.join(
        dict.fromkeys([str(HERE), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]))
    commands = COMMANDS[impl]
    started = []
    try:
        started.append(_start([*commands["scheduler"], "--scheduler-file", str(scheduler_file)],
                              directory / f"{impl}-scheduler.log", env))
        deadline = time.monotonic() + 60
        while not (scheduler_file.exists() and scheduler_file.stat().st_size):
            if started[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{impl} scheduler did not start: see {directory}")
            time.sleep(0.05)
        started.append(_start([*commands["worker"], "--scheduler-file", str(scheduler_file)],
                              directory / f"{impl}-worker.log", env))
        yield scheduler_file, started[1]
    finally:
        for proc in reversed(started):
            _stop(proc)


class Killer(threading.Thread):
    """SIGKILLs a random worker process below ``parent`` every ``every``
    seconds, ``limit`` times at most, until ``stop`` is set."""

    def __init__(self, parent, marker, every, limit):
        super().__init__(daemon=True, name="chaos-killer")
        self.parent, self.marker, self.every, self.limit = parent, marker, every, limit
        self.stop = threading.Event()
        self.kills = 0

    def _workers(self):
        found = []
        for proc in _descendants(self.parent):
            with contextlib.suppress(Exception):
                if self.marker in " ".join(proc.cmdline()):
                    found.append(proc)
        return found

    def run(self):
        rng = random.Random(13)
        while self.kills < self.limit and not self.stop.wait(self.every):
            workers = self._workers()
            if workers:
                with contextlib.suppress(Exception):
                    rng.choice(workers).kill()
                    self.kills += 1

    @property
    def finished(self):
        return self.kills >= self.limit


# ------------------------------------------------------------------ one run

def run(impl, directory, *, width, rounds=None, kills=0, every=2.0, delay=0.01,
        round_timeout=300.0):
    """One run; ``rounds=None`` goes on with new rounds until ``kills`` kills
    are done.  Returns the counts (see the module's docstring)."""
    api = __import__("trioflow" if impl == "trioflow" else "distributed")
    counts = collections.Counter()
    errors = collections.Counter()
    with cli_cluster(impl, directory) as (scheduler_file, workers), \
            api.Client(scheduler_file=str(scheduler_file), timeout=60) as client:
        client.wait_for_workers(N_WORKERS, timeout=60)
        def submit(function, *args):
            return client.submit(function, *args, delay, pure=False)

        def plain(function, *args):
            return function(*args, 0)

        killer = Killer(workers.pid, COMMANDS[impl]["marker"], every, kills)
        pending = collections.deque()
        previous_futures = previous_values = None
        start = time.perf_counter()
        killer.start()
        try:
            r = 0
            while (r < rounds) if rounds is not None else (r < 2 or not killer.finished):
                futures = make_round(submit, previous_futures, width, r)
                values = make_round(plain, previous_values, width, r)
                pending.append((futures, values))
                previous_futures, previous_values = futures[0], values[0]
                r += 1
                while len(pending) > LOOKAHEAD:
                    _check(api, client, *pending.popleft(), counts, errors, round_timeout)
            while pending:
                _check(api, client, *pending.popleft(), counts, errors, round_timeout)
        finally:
            killer.stop.set()
            killer.join()
        seconds = time.perf_counter() - start
    return dict(impl=impl, rounds=r, width=width,
                futures=sum(counts.values()) + sum(errors.values()),
                done=counts["done"], wrong=counts["wrong"], lost=counts["lost"],
                erred=sum(errors.values()), errors=dict(errors), kills=killer.kills,
                seconds=round(seconds, 2))


def _check(api, client, futures, expected, counts, errors, timeout):
    """Wait for a round; count its futures as done, wrong, erred or lost."""
    futures, expected = [*futures[0], *futures[1]], [*expected[0], *expected[1]]
    deadline = time.monotonic() + timeout
    while True:  # a finished future can be "lost" again (its worker killed): wait again
        with contextlib.suppress(Exception):  # a timeout: what has not finished is lost
            api.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        statuses = [future.status for future in futures]
        if time.monotonic() > deadline or set(statuses) <= {"finished", "error"}:
            break
    ok = []
    for future, want, status in zip(futures, expected, statuses):
        if status == "error":
            errors[type(future.exception()).__name__] += 1
        elif status == "finished":
            ok.append((future, want))
        else:
            counts["lost"] += 1
    try:
        values = client.gather([future for future, _ in ok])
    except Exception:  # one of them erred after all (lost, then recomputed): one by one
        values = [_value(future, timeout, errors) for future, _ in ok]
    for (_, want), value in zip(ok, values):
        if value is not _ERRED:
            counts["done" if value == want else "wrong"] += 1


_ERRED = object()


def _value(future, timeout, errors):
    try:
        return future.result(timeout=timeout)
    except Exception as exc:
        errors[type(exc).__name__] += 1
        return _ERRED


# ------------------------------------------------------------------ the comparison

def _child_python(impl, dask_python):
    if impl == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            return dask_python
    return sys.executable


def _row(result, baseline):
    errors = ", ".join(f"{n} {name}" for name, n in sorted(result["errors"].items())) or "-"
    ratio = result["seconds"] / baseline["seconds"] if baseline else 1.0
    return (f"{result['impl']:<9} {result['kills']:>5} {result['futures']:>8,} "
            f"{result['done']:>8,} {result['erred']:>6,} {result['wrong']:>6} "
            f"{result['lost']:>5} {result['seconds']:>8.1f} {ratio:>7.2f}  {errors}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", default="trioflow,dask", help="comma-separated: trioflow, dask")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--width", type=int, default=200)
    parser.add_argument("--kills", type=int, default=30, help="at most this many kills")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between kills")
    parser.add_argument("--delay", type=float, default=0.01, help="seconds each task sleeps")
    parser.add_argument("--dask-python", default="/work/benchvenv/bin/python")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "DIRECTORY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = dict(width=args.width, rounds=args.rounds, every=args.every, delay=args.delay)
    if args.child:
        impl, directory = args.child
        print(json.dumps(run(impl, directory, kills=args.kills, **sizes)))
        return 0
    import tempfile
    results = []
    print(f"{N_WORKERS} nanny workers x 1 thread, {args.rounds} rounds of {args.width} tasks "
          f"+ tree reductions, tasks sleep {args.delay}s; a worker SIGKILLed every "
          f"{args.every}s, at most {args.kills} times, while the work lasts\n")
    print(f"{'impl':<9} {'kills':>5} {'futures':>8} {'done':>8} {'erred':>6} {'wrong':>6} "
          f"{'lost':>5} {'seconds':>8} {'x calm':>7}  errors")
    for impl in args.impl.split(","):
        baseline = None
        for kills in (0, args.kills):
            with tempfile.TemporaryDirectory(prefix=f"chaos-{impl}-") as directory:
                command = [_child_python(impl, args.dask_python), __file__,
                           "--child", impl, directory, "--kills", str(kills),
                           *(f"--{name}={value}" for name, value in sizes.items())]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode:
                    print(f"{impl} with {kills} kills failed:\n{done.stderr[-3000:]}")
                    return 1
                result = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(result)
            print(_row(result, baseline), flush=True)
            baseline = baseline or result
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

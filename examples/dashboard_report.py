"""Watch a job on the dashboard, then keep a performance report of it.

Starts a local cluster (its dashboard on :8787, or a free port if that one is
taken), prints the link, runs a few seconds of work in two stages — open the
link meanwhile to see the task stream and progress move — and writes
report.html: the same task stream, tasks per prefix and profile, in one file
that opens without a server.

    python examples/dashboard_report.py [--processes] [--seconds 10]
"""
import argparse
import time

from trioflow import Client, performance_report


def crunch(x):
    deadline = time.perf_counter() + 0.05
    total = 0
    while time.perf_counter() < deadline:
        total += 1
    return x + total % 7


def combine(a, b):
    time.sleep(0.01)
    return a + b


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", action="store_true")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--report", default="report.html")
    args = parser.parse_args()
    with Client(n_workers=2, threads_per_worker=2, processes=args.processes) as client:
        print(f"dashboard: {client.dashboard_link}")
        with performance_report(filename=args.report):
            stop = time.monotonic() + args.seconds
            rounds = 0
            while time.monotonic() < stop:
                leaves = client.map(crunch, range(40), pure=False)
                sums = [client.submit(combine, a, b) for a, b in zip(leaves[::2], leaves[1::2])]
                client.gather(sums)
                rounds += 1
        print(f"{rounds} rounds of 60 tasks; report written to {args.report}")


if __name__ == "__main__":
    main()

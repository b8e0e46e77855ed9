#!/usr/bin/env bash
# A cluster from the command line: one scheduler, one worker process with two
# threads, a client script against it; both servers are stopped on exit.
#
#     bash examples/cli_cluster.sh
set -euo pipefail

scheduler_file=/tmp/trioflow-example.json
rm -f "$scheduler_file"
pids=()

# workers first, then the scheduler, so that no worker sees its scheduler vanish
stop_servers() {
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    rm -f "$scheduler_file"
}
trap stop_servers EXIT

trioflow scheduler --port 8786 --scheduler-file "$scheduler_file" &
pids+=($!)

# the scheduler writes its address to the file once it is listening
for _ in $(seq 100); do
    [ -s "$scheduler_file" ] && break
    sleep 0.1
done
[ -s "$scheduler_file" ] || { echo "the scheduler did not start" >&2; exit 1; }

trioflow worker ws://127.0.0.1:8786 --nthreads 2 &
pids+=($!)

python - "$scheduler_file" <<'PY'
import sys

from trioflow import Client


def square(x):
    return x * x


with Client(scheduler_file=sys.argv[1], timeout=30) as client:
    client.wait_for_workers(1, timeout=30)
    workers = client.scheduler_info()["workers"]
    print("workers:", ", ".join(workers))
    squares = client.map(square, range(100))
    total = client.submit(sum, squares)
    print("sum of squares below 100:", total.result())
    assert total.result() == sum(x * x for x in range(100))
PY

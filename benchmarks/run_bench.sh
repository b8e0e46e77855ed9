#!/usr/bin/env bash
# Run the shared side-by-side harness (../shared/bench) from the top of the checkout.
#
#   benchmarks/run_bench.sh                      # the engine workloads, dask and trioflow,
#                                                # into benchmarks/results/engine.json
#   benchmarks/run_bench.sh --smoke              # any arguments go to run.py as they are
#   benchmarks/run_bench.sh compare FILE.json    # ratios from a result (compare.py)
#
# TRIOFLOW_BENCH_DIR overrides where the harness is (default ../shared/bench).
set -euo pipefail

cd "$(dirname "$0")/.."

bench_dir="${TRIOFLOW_BENCH_DIR:-../shared/bench}"
if [ ! -f "$bench_dir/run.py" ]; then
    echo "no benchmark harness at $bench_dir (set TRIOFLOW_BENCH_DIR)" >&2
    exit 2
fi

if [ "${1:-}" = "compare" ]; then
    shift
    exec python "$bench_dir/compare.py" "$@"
fi

if [ $# -eq 0 ]; then
    mkdir -p benchmarks/results
    set -- --impl dask,trioflow \
        --workloads startup,map_tiny,submit_latency,tree_reduce,scatter_gather_bandwidth,scheduler_scale \
        --json benchmarks/results/engine.json
fi
exec python "$bench_dir/run.py" "$@"

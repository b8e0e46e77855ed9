"""Word count as a map-reduce on a local trioflow cluster.

    python examples/map_reduce.py              # workers as threads in this process
    python examples/map_reduce.py --processes  # workers in their own processes

The text is split into chunks; `count_words` runs once per chunk (the map),
then `merge_counts` adds the partial counts pairwise until one is left (the
reduce). Only the final, small result comes back to this process.
"""
from __future__ import annotations

import sys
from collections import Counter

from trioflow import Client

TEXT = """\
It was a bright cold day in April and the clocks were striking thirteen.
The hallway smelt of boiled cabbage and old rag mats. At one end of it a
coloured poster, too large for indoor display, had been tacked to the wall.
"""


def count_words(lines: list[str]) -> Counter:
    words = (word.strip(".,;:!?\"'()").lower() for line in lines for word in line.split())
    return Counter(word for word in words if word)


def merge_counts(left: Counter, right: Counter) -> Counter:
    return left + right


def main() -> None:
    processes = "--processes" in sys.argv[1:]
    lines = TEXT.splitlines() * 2_000
    chunk_size = 500
    chunks = [lines[i : i + chunk_size] for i in range(0, len(lines), chunk_size)]

    with Client(n_workers=2, threads_per_worker=2, processes=processes,
                dashboard_address=None) as client:
        # map: one task per chunk
        partial_counts = client.map(count_words, chunks)

        # reduce: merge pairwise, on the workers, until one future is left
        level = partial_counts
        while len(level) > 1:
            merged = client.map(merge_counts, level[0::2], level[1::2])
            level = merged + level[len(merged) * 2 :]  # an odd one out moves up
        totals = level[0].result()

        # the same map step again, gathered here, as a check
        local = sum(client.gather(client.map(count_words, chunks)), Counter())

    print(f"{len(lines):,} lines in {len(chunks)} chunks, "
          f"{sum(totals.values()):,} words, {len(totals)} distinct")
    for word, count in totals.most_common(8):
        print(f"  {word:<10} {count:>6,}")
    assert totals == local, "the distributed reduce and the local sum of the map disagree"
    print("the reduce on the cluster matches the map's results summed here")


if __name__ == "__main__":
    main()

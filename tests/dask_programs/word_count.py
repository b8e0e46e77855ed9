# dask examples, word count: client.map over texts, gather(iter(futures))
from collections import Counter

from dask.distributed import Client

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "the dog barks and the fox runs",
    "a quick brown dog",
] * 10


def count_words(text):
    return Counter(text.split())


if __name__ == "__main__":
    with Client(processes=False, n_workers=2, threads_per_worker=1,
                dashboard_address=None) as client:
        futures = client.map(count_words, TEXTS)
        total = Counter()
        for counts in client.gather(iter(futures)):
            total.update(counts)
        top = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        print("RESULT", [list(kv) for kv in top])

"""Tasks for tests/test_memory.py, importable by worker processes."""
import os
import time

import numpy as np

#: memory a worker holds outside its managed data (to drive it past pause)
HELD = []


def make_array(i, nbytes):
    return np.full(nbytes, i % 251, dtype=np.uint8)


def total(x):
    return int(x.sum(dtype=np.int64))


def add_first(a, b):
    """Both inputs arrive intact: the first element of each, and their sums."""
    return int(a[0]), int(b[0]), total(a), total(b)


def hold(nbytes):
    HELD.append(b"x" * nbytes)  # bytes are written, so they count in RSS
    return len(HELD)


def free():
    HELD.clear()
    return True


def where_and_when():
    from trioflow import get_worker
    return get_worker().address, time.time()


def allocate_once(marker, nbytes):
    """Past the memory limit on its first run only (marker file tells)."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        block = b"x" * nbytes
        time.sleep(5)  # the nanny kills the process well before this ends
        return len(block)
    return 0


def allocate(nbytes):
    block = b"x" * nbytes
    time.sleep(5)
    return len(block)


def environ(*names):
    return {name: os.environ.get(name) for name in names}

"""Channels with worker clients: the spec's emit/combine example.

    python examples/channels_emit_combine.py              # workers as threads
    python examples/channels_emit_combine.py --processes  # workers as processes

Two long-running tasks each emit random numbers into a channel ('a', 'b');
a third pairs them up and appends their sums to 'adds'; this script follows
'adds'.  The code is the spec's, with the import changed to trioflow and
the loops bounded so that the script ends: each emitter stops its channel
after N numbers, which ends the combiner's ``zip``, and the combiner stops
'adds', which ends the loop below.
"""
import operator
import random
import sys
from time import sleep

from trioflow import Client, local_client

N = 5


def emit(name):
    with local_client() as c:
        chan = c.channel(name)
        for _ in range(N):
            future = c.submit(random.random, pure=False)
            chan.append(future)
            sleep(0.1)
        chan.stop()


def combine():
    with local_client() as c:
        a_chan = c.channel('a')
        b_chan = c.channel('b')
        out_chan = c.channel('adds')
        for a, b in zip(a_chan, b_chan):
            future = c.submit(operator.add, a, b)
            out_chan.append(future)
        out_chan.stop()


if __name__ == "__main__":
    client = Client(processes="--processes" in sys.argv[1:], dashboard_address=None)

    emitters = (client.submit(emit, 'a'), client.submit(emit, 'b'))
    combiner = client.submit(combine)
    chan = client.channel('adds')

    for future in chan:
        print(future.result())

    client.gather([*emitters, combiner])  # re-raises if a task failed
    client.close()

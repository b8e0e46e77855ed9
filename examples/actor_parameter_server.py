"""A parameter server as an actor, the example of dask's actor documentation.

    python examples/actor_parameter_server.py              # workers as threads
    python examples/actor_parameter_server.py --processes  # workers in processes

The ParameterServer instance lives on one worker; this process computes the
gradient of sum((p - 1) ** 2) and puts the new parameters back.  Each
``ps.get(...)`` and ``ps.put(...)`` goes straight to the worker holding the
actor, without the scheduler.  The mean of the parameters converges to 1.
"""
from __future__ import annotations

import sys

import numpy as np

from trioflow import Client


class ParameterServer:
    def __init__(self):
        self.data = dict()

    def put(self, key, value):
        self.data[key] = value

    def get(self, key):
        return self.data[key]


def train(params, lr=0.1):
    grad = 2 * (params - 1)  # gradient of (params - 1)**2
    new_params = params - lr * grad
    return new_params


def main(processes: bool = False) -> float:
    with Client(processes=processes, n_workers=2, threads_per_worker=1) as client:
        ps_future = client.submit(ParameterServer, actor=True)
        ps = ps_future.result()

        ps.put("parameters", np.random.random(1000))
        for k in range(20):
            params = ps.get("parameters").result()
            new_params = train(params)
            ps.put("parameters", new_params)
            print(k, new_params.mean())
        # puts and gets of one client run in the order they were made
        return float(ps.get("parameters").result().mean())


if __name__ == "__main__":
    final = main(processes="--processes" in sys.argv[1:])
    assert abs(final - 1) < 0.01, final
    print("converged:", final)

"""The parts of dask's ``Cluster`` API that are about the cluster object
rather than its workers: for the names trioflow has not, an
AttributeError that says what to use instead.  Mixed into ``SpecCluster``
(and so ``LocalCluster``)."""
from __future__ import annotations

from trioflow.client.compat import missing_attribute

#: dask Cluster attributes trioflow has not, with what to use instead
UNSUPPORTED = {
    "loop": "trioflow's clusters run on trio, not a tornado IOLoop: use "
            "LocalCluster(asynchronous=True) in your own trio or asyncio loop, or "
            "client.sync(func, *args) on a client of the cluster",
    "sync": "run coroutines with client.sync(func, *args) on a client of the cluster "
            "(cluster.get_client())",
    "called_from_running_loop": "pass asynchronous=True when you use the cluster from "
                                "async code",
    "start_worker": "use cluster.scale(n) to add workers",
    "from_name": "keep the cluster object, or connect with Client(address)",
}


class ClusterCompatMixin:
    def __getattr__(self, name):
        raise missing_attribute(self, name, UNSUPPORTED, type(self).__name__)

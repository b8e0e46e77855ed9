"""The scheduler half of datasets (client side: ``trioflow/client/primitives/datasets.py``):
named references to futures (or to collections built on
futures) kept on the scheduler for any client to fetch.

The scheduler stores each dataset as an opaque pickle with its futures
replaced by their keys (``client/primitives/values.py``), and keeps those keys alive under a
holder of the dataset's own: a published dataset's data outlives the
publishing client's futures, until ``unpublish_dataset``.  A client that
gets a dataset is made to want its keys before the reply leaves, so they are
never unwanted in between.
"""
from __future__ import annotations

import uuid

from trioflow.core import events as ev
from trioflow.server.extensions.base import Deliveries, SchedulerExtension


class DatasetExtension(SchedulerExtension):
    name = "datasets"

    def __init__(self, scheduler):
        super().__init__(scheduler)
        #: name -> (payload, holder, keys)
        self.datasets: dict = {}
        self.handlers = {
            "publish-dataset": self._publish,
            "get-dataset": self._get,
            "list-datasets": self._list,
            "unpublish-dataset": self._unpublish,
            "dataset-delivered": self._delivered,
        }
        self.deliveries = Deliveries(self)

    def _publish(self, peer, msg):
        names = list(msg["names"])
        if not msg.get("override"):
            taken = [name for name in names if name in self.datasets]
            if taken:
                raise KeyError(f"Dataset {taken[0]!r} already exists: unpublish it first or "
                               "pass override=True")
        for name, payload, keys in zip(names, msg["payloads"], msg["keys"]):
            holder = f"dataset-{uuid.uuid4().hex}"
            keys = tuple(keys)
            self.hold_keys(holder, keys)
            old = self.datasets.get(name)
            self.datasets[name] = (payload, holder, keys)
            if old is not None:
                self._drop(old)

    def _get(self, peer, msg):
        found, wanted = [], []
        for name in msg["names"]:
            entry = self.datasets.get(name)
            if entry is None:
                found.append(None)
                continue
            payload, _, keys = entry
            wanted.extend(keys)
            found.append(payload)
        # held for the reply until the client says it made its futures
        return {"payloads": found, "delivery": self.deliveries.send(peer, wanted)}

    def _delivered(self, peer, msg):
        self.deliveries.delivered(peer, msg.get("delivery"))

    def peer_left(self, peer):
        self.deliveries.peer_left(peer)

    def _list(self, peer, msg):
        return sorted(self.datasets, key=str)

    def _unpublish(self, peer, msg):
        for name in msg["names"]:
            entry = self.datasets.pop(name, None)
            if entry is not None:
                self._drop(entry)

    def _drop(self, entry):
        _, holder, keys = entry
        if keys:
            # the holder is a pseudo-client: leaving lets go of its keys and of it
            self.scheduler.stimulus(ev.ClientDisconnected(holder, "dataset-unpublished"))

"""Datasets: named references to futures (or to collections built on
futures) kept on the scheduler for any client to fetch.

The scheduler stores each dataset as an opaque pickle with its futures
replaced by their keys (``values.pack``), and keeps those keys alive under a
holder of the dataset's own: a published dataset's data outlives the
publishing client's futures, until ``unpublish_dataset``.  A client that
gets a dataset is made to want its keys before the reply leaves, so they are
never unwanted in between.
"""
from __future__ import annotations

import uuid
from collections.abc import Mapping, MutableMapping

from trioflow.core import events as ev
from trioflow.extensions._common import Deliveries
from trioflow.extensions.base import SchedulerExtension
from trioflow.extensions.values import pack, unpack

_no_default = "__no_default__"


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


# ----------------------------------------------------------------------- Client methods

def publish_dataset(self, *args, name=None, override=False, **kwargs):
    """Publish named datasets to the scheduler, for other clients to
    ``get_dataset``: ``publish_dataset(my_data=futures)``,
    ``publish_dataset(futures, name="my_data")`` or
    ``publish_dataset({"my_data": futures})``.

    The scheduler keeps the data of the futures inside alive until the
    dataset is unpublished, also after this client's futures are gone.  Raises
    ``KeyError`` if a name is taken, unless ``override=True``."""
    names, data = list(kwargs), list(kwargs.values())
    if name is not None:
        if not args:
            raise ValueError("If name is provided, expecting call signature like "
                             "publish_dataset(df, name='ds')")
        names.append(name)
        data.append(args[0] if len(args) == 1 else args)
    elif args:
        if len(args) != 1 or not isinstance(args[0], Mapping):
            raise ValueError("If name is omitted, positional argument must be a "
                             "{name: value} dict")
        names.extend(args[0])
        data.extend(args[0].values())
    packed = [pack(value) for value in data]
    return self._sync(_request_none, self, {
        "op": "publish-dataset", "names": names, "payloads": [p for p, _ in packed],
        "keys": [k for _, k in packed], "override": bool(override)})


def get_dataset(self, name, default=_no_default, **kwargs):
    """The dataset published under ``name`` (a list of names gives a list),
    with its futures belonging to this client.  A missing name raises
    ``KeyError``, or gives ``default`` if one is passed."""
    return self._sync(_get_dataset, self, name, default)


def list_datasets(self, **kwargs):
    """Names of the datasets published on the scheduler."""
    return self._sync(_list_datasets, self)


def unpublish_dataset(self, name, **kwargs):
    """Remove the dataset ``name`` (or each of a list of names); its data is
    freed once no client holds futures of it.  Unknown names are ignored."""
    names = name if isinstance(name, list) else [name]
    return self._sync(_request_none, self, {"op": "unpublish-dataset", "names": names})


@property
def datasets(self):
    """The published datasets as a mapping: ``client.datasets["x"] = futures``
    publishes (replacing), ``client.datasets["x"]`` gets, ``del`` unpublishes.
    For blocking clients."""
    return Datasets(self)


async def _request_none(client, msg):
    await client._core.request(msg)


async def _get_dataset(client, name, default):
    names = name if isinstance(name, list) else [name]
    reply = await client._core.request({"op": "get-dataset", "names": names})
    out = []
    try:
        for one, payload in zip(names, reply["payloads"]):
            if payload is None:
                if isinstance(default, str) and default == _no_default:
                    raise KeyError(f"Dataset {one!r} not found")
                out.append(default)
            else:
                out.append(unpack(payload, client))
    finally:
        if reply.get("delivery") is not None:
            # after the futures' want-keys, on the same connection
            client._core.send({"op": "dataset-delivered", "delivery": reply["delivery"]})
    return out if isinstance(name, list) else out[0]


async def _list_datasets(client):
    return list(await client._core.request({"op": "list-datasets"}))


class Datasets(MutableMapping):
    """``client.datasets``: the published datasets as a mapping."""

    def __init__(self, client):
        self._client = client

    def __getitem__(self, name):
        return self._client.get_dataset(name)

    def __setitem__(self, name, value):
        self._client.publish_dataset(value, name=name, override=True)

    def __delitem__(self, name):
        if name not in self._client.list_datasets():
            raise KeyError(name)
        self._client.unpublish_dataset(name)

    def __contains__(self, name):
        return name in self._client.list_datasets()

    def __iter__(self):
        return iter(self._client.list_datasets())

    def __len__(self):
        return len(self._client.list_datasets())

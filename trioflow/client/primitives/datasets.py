"""Datasets, the client side of ``Client.publish_dataset`` and friends
(scheduler half: ``trioflow/server/extensions/datasets.py``).  Each function
takes the client's port; ``Client``'s methods of the same names call them."""
from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from trioflow.client.primitives.values import pack, unpack

#: the same string as ``Client.get_dataset``'s default: no default given
NO_DEFAULT = _no_default = "__no_default__"


def publish_dataset(port, args, name=None, override=False, kwargs=None):
    """``Client.publish_dataset``: ``args`` and ``kwargs`` are its positional
    and keyword datasets."""
    kwargs = kwargs or {}
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
    return port.request({
        "op": "publish-dataset", "names": names, "payloads": [p for p, _ in packed],
        "keys": [k for _, k in packed], "override": bool(override)}, _none)


def get_dataset(port, name, default=_no_default):
    """``Client.get_dataset``."""
    return port.run(_get_dataset, port, name, default)


def list_datasets(port):
    """``Client.list_datasets``."""
    return port.request({"op": "list-datasets"}, list)


def unpublish_dataset(port, name):
    """``Client.unpublish_dataset``."""
    names = name if isinstance(name, list) else [name]
    return port.request({"op": "unpublish-dataset", "names": names}, _none)


def _none(result):
    return None


async def _get_dataset(port, name, default):
    names = name if isinstance(name, list) else [name]
    reply = await port.ask({"op": "get-dataset", "names": names})
    out = []
    try:
        for one, payload in zip(names, reply["payloads"]):
            if payload is None:
                if isinstance(default, str) and default == _no_default:
                    raise KeyError(f"Dataset {one!r} not found")
                out.append(default)
            else:
                out.append(unpack(payload, port))
    finally:
        if reply.get("delivery") is not None:
            # after the futures' want-keys, on the same connection
            port.send({"op": "dataset-delivered", "delivery": reply["delivery"]})
    return out if isinstance(name, list) else out[0]


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

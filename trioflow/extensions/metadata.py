"""Metadata: small administrative values stored on the scheduler under a key
or a path of keys into nested dicts, as dask's ``set_metadata`` /
``get_metadata``.  Values must be msgpack-serializable."""
from __future__ import annotations

import copy

from trioflow.extensions.base import SchedulerExtension

_no_default = "__no_default__"


class MetadataExtension(SchedulerExtension):
    name = "metadata"

    def __init__(self, scheduler):
        super().__init__(scheduler)
        self.metadata: dict = {}
        self.handlers = {"set-metadata": self._set, "get-metadata": self._get}

    def _set(self, peer, msg):
        keys = list(msg["keys"])
        # a copy: an in-process client's later changes to its object must not leak in
        value = copy.deepcopy(msg.get("value"))
        metadata = self.metadata
        for key in keys[:-1]:
            if key not in metadata or not isinstance(metadata[key], (dict, list)):
                metadata[key] = {}
            metadata = metadata[key]
        metadata[keys[-1]] = value

    def _get(self, peer, msg):
        metadata = self.metadata
        try:
            for key in msg["keys"]:
                metadata = metadata[key]
        except (KeyError, IndexError, TypeError):
            return {"found": False}
        return {"found": True, "value": copy.deepcopy(metadata)}


# ----------------------------------------------------------------------- Client methods

def set_metadata(self, key, value):
    """Store ``value`` (msgpack-serializable) on the scheduler under ``key``.
    A list of keys is a path into nested dicts, made as needed:
    ``set_metadata(["a", "b", "c"], 1)`` sets ``metadata["a"]["b"]["c"]``."""
    from trioflow.extensions.event_log import _check_msgpack
    _check_msgpack(value, "Metadata")
    keys = key if isinstance(key, list) else [key]
    return self._sync(_set_metadata, self, keys, value)


def get_metadata(self, keys, default=_no_default):
    """The value stored under ``keys`` (a key, or a list/tuple path into
    nested dicts).  Missing: ``default`` if given, else ``KeyError``."""
    path = list(keys) if isinstance(keys, (list, tuple)) else [keys]
    return self._sync(_get_metadata, self, path, default)


async def _set_metadata(client, keys, value):
    await client._core.request({"op": "set-metadata", "keys": keys, "value": value})


async def _get_metadata(client, keys, default):
    result = await client._core.request({"op": "get-metadata", "keys": keys})
    if result["found"]:
        return result["value"]
    if isinstance(default, str) and default == _no_default:
        raise KeyError(keys[0] if len(keys) == 1 else keys)
    return default

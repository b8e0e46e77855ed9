"""The scheduler half of metadata (client side: ``trioflow/client/primitives/metadata.py``):
small administrative values stored on the scheduler under a key
or a path of keys into nested dicts, as dask's ``set_metadata`` /
``get_metadata``.  Values must be msgpack-serializable."""
from __future__ import annotations

import copy

from trioflow.server.extensions.base import SchedulerExtension


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

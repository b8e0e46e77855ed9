"""Metadata, the client side of ``Client.set_metadata``/``get_metadata``
(scheduler half: ``trioflow/server/extensions/metadata.py``)."""
from __future__ import annotations

from trioflow.client.primitives.datasets import NO_DEFAULT
from trioflow.protocol.primitives import check_msgpack


def set_metadata(port, key, value):
    """``Client.set_metadata``."""
    check_msgpack(value, "Metadata")
    keys = key if isinstance(key, list) else [key]
    return port.request({"op": "set-metadata", "keys": keys, "value": value}, _none)


def get_metadata(port, keys, default=NO_DEFAULT):
    """``Client.get_metadata``."""
    path = list(keys) if isinstance(keys, (list, tuple)) else [keys]

    def finish(result):
        if result["found"]:
            return result["value"]
        if isinstance(default, str) and default == NO_DEFAULT:
            raise KeyError(path[0] if len(path) == 1 else path)
        return default

    return port.request({"op": "get-metadata", "keys": path}, finish)


def _none(result):
    return None

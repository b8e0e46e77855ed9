"""``fire_and_forget``: run tasks even after every future for them is gone."""
from __future__ import annotations


def fire_and_forget(obj) -> None:
    """Have the scheduler keep these futures' tasks (and what they depend on)
    until they finish, whether or not any client still holds them or is
    still connected."""
    from trioflow.client.containers import futures_of
    futures = futures_of(obj)
    by_client: dict = {}
    for future in futures:
        by_client.setdefault(id(future.client), (future.client, []))[1].append(future.key)
    for client, keys in by_client.values():
        client.port.send({"op": "fire-and-forget", "keys": keys})

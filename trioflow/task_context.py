"""What a task can do about where it runs: ``get_worker``, ``get_client``,
``secede``/``rejoin``, ``worker_client`` (and its older name
``local_client``), and ``checkpoint``.

The worker's part lives in the server layer (``trioflow.server.task_api``),
the client's in the client layer (``trioflow.client.task_context``); this
module only gathers the names.
"""
from trioflow.client.task_context import get_client, local_client, worker_client
from trioflow.server.task_api import checkpoint, get_worker, rejoin, secede

__all__ = ["checkpoint", "get_client", "get_worker", "local_client", "rejoin", "secede",
           "worker_client"]

"""What SSHCluster runs on each host: ``python -m trioflow.deploy.ssh_remote``.

It reads one JSON line from its standard input (never from argv, where
every user of the host would see the token in ``ps``)::

    {"role": "scheduler" | "worker", "scheduler": address, "name": ...,
     "options": {...}, "token": ..., "security": {...}}

puts the token into its environment (``TRIOFLOW_TOKEN``: the nanny's worker
process inherits it there), starts a Scheduler, or a Nanny (a Worker with
``"nanny": false``), prints ``trioflow-ssh-started ADDRESS`` and runs until
its standard input closes: the cluster closing it, or the SSH connection
going away, stops the server, so no remote process outlives its cluster.
"""
from __future__ import annotations

import json
import os
import sys

import trio

STARTED = "trioflow-ssh-started"


def main() -> int:
    line = sys.stdin.readline()
    if not line:
        print("trioflow.deploy.ssh_remote: no spec on standard input", file=sys.stderr)
        return 2
    spec = json.loads(line)
    if spec.get("token"):
        os.environ["TRIOFLOW_TOKEN"] = spec["token"]
    options = dict(spec.get("options") or {})
    directory = options.pop("local_directory", None)
    if directory:
        os.makedirs(directory, exist_ok=True)
        os.chdir(directory)
    trio.run(_serve, spec, options)
    return 0


async def _serve(spec, options):
    from trioflow.security import Security
    security = Security(**spec["security"]) if spec.get("security") else None
    token = spec.get("token")
    if spec["role"] == "scheduler":
        from trioflow.server.scheduler import Scheduler
        server = Scheduler(token=token, security=security, **options)
    else:
        from trioflow.server.nanny import Nanny
        from trioflow.utils import memory_limit_bytes
        if "memory_limit" in options:  # "4GB", "auto": this host's memory
            options["memory_limit"] = memory_limit_bytes(options["memory_limit"])
        from trioflow.server.worker import Worker
        cls = Nanny if options.pop("nanny", True) else Worker
        server = cls(spec["scheduler"], name=spec.get("name"), token=token, security=security,
                     **options)
    async with server:
        print(f"{STARTED} {server.address}", flush=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_until_stdin_closes, nursery.cancel_scope)
            if spec["role"] == "scheduler":
                await server.terminated()  # a client's shutdown()
            else:
                await server.finished()
            nursery.cancel_scope.cancel()


async def _until_stdin_closes(scope):
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    try:
        while await stdin.receive_some(1024):
            pass
    finally:
        scope.cancel()
        await stdin.aclose()


if __name__ == "__main__":
    sys.exit(main())

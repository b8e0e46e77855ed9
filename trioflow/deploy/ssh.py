"""SSHCluster: a scheduler on the first host, a nanny (and its worker) on
each of the others, started over SSH with asyncssh.

Why asyncssh rather than the system ``ssh`` client: dask's SSHCluster takes
``connect_options``, the keyword arguments of ``asyncssh.connect``
(``known_hosts``, ``client_keys``, ``username``, ``port``...), so a dask
user's call works unchanged, and it needs no ``ssh`` binary or per-user
configuration on the machine the cluster starts from.  Its coroutines are
asyncio's: they run as any deployer's do (``SpecCluster``).

On each host ``remote_python -m trioflow.deploy.ssh_remote`` reads its spec,
with the cluster's token and TLS certificates, from its standard input (not
argv, which ``ps`` shows to every user; not the SSH environment, which sshd
drops by default), and stops when that input closes: closing the cluster,
or losing the connection, stops every remote process.
"""
from __future__ import annotations

import json
import logging
import sys

from trioflow.comm.tokens import new_token
from trioflow.deploy.spec import ProcessInterface, SpecCluster, Status

logger = logging.getLogger("trioflow.deploy")

_TLS = ("tls_ca_file", "tls_ciphers", "tls_min_version", "require_encryption")


class _Remote(ProcessInterface):
    """One ``trioflow.deploy.ssh_remote`` process on ``address`` over SSH."""

    role = "worker"

    def __init__(self, address, connect_options=None, remote_python=None, token=None,
                 security=None, kwargs=None, name=None, scheduler=None):
        super().__init__(scheduler=scheduler, name=name)
        self.host = address
        self.connect_options = dict(connect_options or {})
        self.remote_python = remote_python or sys.executable
        self.token = token
        self.security = security
        self.kwargs = dict(kwargs or {})
        self.name = name
        self.scheduler = scheduler
        self.connection = None
        self.proc = None

    def _spec(self) -> dict:
        options = dict(self.kwargs)
        # listen where the other hosts reach this one, unless told otherwise
        options.setdefault("host", self.host)
        return {"role": self.role, "scheduler": self.scheduler, "name": self.name,
                "options": options, "token": self.token,
                "security": _security_spec(self.security, self.role)}

    async def start(self):
        import asyncssh
        from trioflow.deploy.ssh_remote import STARTED
        self.connection = await asyncssh.connect(self.host, **self.connect_options)
        try:
            self.proc = await self.connection.create_process(
                f"{self.remote_python} -m trioflow.deploy.ssh_remote")
            self.proc.stdin.write(json.dumps(self._spec()) + "\n")
            lines = []
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    error = await self.proc.stderr.read()
                    raise RuntimeError(
                        f"the trioflow {self.role} on {self.host} exited before it started:"
                        f"\n{''.join(lines)}{error}")
                if line.startswith(STARTED):
                    self.address = line.split()[1]
                    break
                lines.append(line)
        except BaseException:
            self.connection.close()
            raise
        logger.info("trioflow %s on %s at %s", self.role, self.host, self.address)
        await super().start()

    async def close(self):
        import asyncio
        if self.proc is not None and self.proc.exit_status is None:
            self.proc.stdin.write_eof()  # the remote side stops when its input closes
            try:
                await asyncio.wait_for(self.proc.wait_closed(), 20)
            except asyncio.TimeoutError:
                logger.warning("the trioflow %s on %s did not stop: killing it",
                               self.role, self.host)
                self.proc.kill()
        if self.connection is not None:
            self.connection.close()
            await self.connection.wait_closed()
        await super().close()

    def __repr__(self):
        return f"<SSH {self.role} {self.host}: status={self.status.name}>"


class Scheduler(_Remote):
    """The scheduler of an SSHCluster (dask's ``distributed.deploy.ssh.Scheduler``)."""

    role = "scheduler"

    def __init__(self, address, connect_options=None, kwargs=None, remote_python=None,
                 token=None, security=None):
        super().__init__(address, connect_options, remote_python, token, security, kwargs)


class Worker(_Remote):
    """A nanny and its worker of an SSHCluster (dask's ``distributed.deploy.ssh.Worker``);
    ``kwargs={"nanny": False}`` runs the worker without one."""

    def __init__(self, scheduler, address, connect_options=None, kwargs=None,
                 remote_python=None, token=None, security=None, name=None):
        super().__init__(address, connect_options, remote_python, token, security, kwargs,
                         name=name, scheduler=scheduler)


def _security_spec(security, role) -> dict | None:
    """The certificates of ``security`` as PEM text, for the remote side."""
    if security is None:
        return None
    spec = {name: getattr(security, name) for name in _TLS
            if getattr(security, name, None) is not None}
    for part in ("cert", "key"):
        value = getattr(security, f"tls_{role}_{part}", None)
        if value is not None:
            spec[f"tls_{role}_{part}"] = value
    version = spec.get("tls_min_version")
    if version is not None and not isinstance(version, (int, float, str)) or \
            hasattr(version, "name"):  # an ssl.TLSVersion travels as 1.2 / 1.3
        spec["tls_min_version"] = {"TLSv1_2": 1.2, "TLSv1_3": 1.3}[version.name]
    for name, value in list(spec.items()):
        if not isinstance(value, str):
            continue
        if name.endswith(("_file", "_cert", "_key")) and "-----BEGIN" not in value:
            with open(value) as f:  # a path here: its contents travel
                spec[name] = f.read()
    return spec


def _per_host(value, n, what):
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"SSHCluster: {what} has {len(value)} entries for {n} hosts")
        return list(value)
    return [value] * n


def SSHCluster(hosts=None, connect_options=None, worker_options=None, scheduler_options=None,
               worker_module="deprecated", worker_class=None, remote_python=None,
               asynchronous=False, token=None, security=None, **kwargs):
    """A cluster over SSH: the scheduler on ``hosts[0]``, a worker on each
    other host (list a host twice for two).  ``connect_options``: keyword
    arguments of ``asyncssh.connect`` (one dict, or one per host);
    ``scheduler_options`` / ``worker_options``: keyword arguments of the
    Scheduler / Nanny (``local_directory`` too); ``remote_python``: the
    Python on the hosts (one, or one per host; default this one's path).
    The cluster makes a token (``token=`` gives one) and sends it, with
    ``security=``'s certificates, to each host over SSH."""
    if not hosts or isinstance(hosts, str) or len(hosts) < 2:
        raise ValueError("SSHCluster needs hosts=[scheduler host, worker host, ...]: at least "
                         f"two, not {hosts!r}")
    if worker_module != "deprecated" or worker_class not in (None, "trioflow.Nanny",
                                                              "distributed.Nanny"):
        raise ValueError("SSHCluster runs nannies; worker_options={'nanny': False} runs "
                         "workers without one")
    if security is True:
        from trioflow.security import Security
        security = Security.temporary()
    token = None if token is False else (token or new_token())
    connect = _per_host(connect_options or {}, len(hosts), "connect_options")
    python = _per_host(remote_python, len(hosts), "remote_python")
    common = {"token": token, "security": security}
    scheduler = {"cls": Scheduler, "options": {
        "address": hosts[0], "connect_options": connect[0], "remote_python": python[0],
        "kwargs": scheduler_options or {}, **common}}
    workers = {i: {"cls": Worker, "options": {
        "address": host, "connect_options": connect[i + 1], "remote_python": python[i + 1],
        "kwargs": worker_options or {}, **common}} for i, host in enumerate(hosts[1:])}
    return SpecCluster(workers=workers, scheduler=scheduler, asynchronous=asynchronous,
                       security=security, token=token or False, **kwargs)


__all__ = ["SSHCluster", "Scheduler", "Worker", "Status"]

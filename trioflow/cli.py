"""The ``trioflow`` console script: ``scheduler``, ``worker``, ``ssh``, ``story`` and ``demo``."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

import trio


def _scheduler_parser(sub):
    p = sub.add_parser("scheduler", help="run a scheduler",
                       description="Run a trioflow scheduler until interrupted.")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8786, help="port (default 8786; 0 picks one)")
    p.add_argument("--scheduler-file", default=None,
                   help="write the scheduler's address here as JSON")
    p.add_argument("--dashboard-address", default=None,
                   help="where the dashboard listens (default :8787, a free port if taken)")
    p.add_argument("--no-dashboard", action="store_true", help="serve no dashboard")
    _token_arguments(p, "require clients and workers to prove this token (default: a new "
                        "random one, written to the scheduler file)")
    p.add_argument("--no-token", action="store_true",
                   help="require no token: anyone who can reach the port can run code as "
                        "you, so only on a trusted network")
    p.add_argument("--protocol", default=None, choices=("ws", "wss", "tcp", "tls"),
                   help="ws (default), or wss (TLS; the default with --tls-cert)")
    p.add_argument("--allowed-failures", type=int, default=None, metavar="N",
                   help="a task may be executing on N workers that die before it errs with "
                        "KilledWorker (default: dask config "
                        "distributed.scheduler.allowed-failures, else 3)")
    _tls_arguments(p, "scheduler")
    p.set_defaults(run=_run_scheduler)


def _tls_arguments(p, role):
    p.add_argument("--tls-ca-file", default=None,
                   help="CA certificate (PEM): peers must present a certificate it signed")
    p.add_argument("--tls-cert", default=None, help=f"the {role}'s TLS certificate (PEM)")
    p.add_argument("--tls-key", default=None,
                   help=f"the {role}'s TLS private key (PEM), if not in --tls-cert")


def _token_arguments(p, what):
    p.add_argument("--token", default=None,
                   help=f"{what}. A token on the command line is visible to every user of "
                        "this machine in ps: prefer --token-file or $TRIOFLOW_TOKEN")
    p.add_argument("--token-file", default=None,
                   help="read the token from this file (its text, or a scheduler file's token)")


def _given_token(args, command, env=True):
    """The token of --token, --token-file (or $TRIOFLOW_TOKEN), or None."""
    from trioflow.comm.tokens import read_token_file, token_from_env
    if args.token and args.token_file:
        raise SystemExit(f"trioflow {command}: give --token or --token-file, not both")
    if args.token_file:
        try:
            return read_token_file(args.token_file)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"trioflow {command}: cannot read --token-file: {exc}") from None
    return args.token or (token_from_env() if env else None)


def _security(args, role):
    if not (args.tls_ca_file or args.tls_cert or args.tls_key):
        return None
    from trioflow.security import Security
    return Security(tls_ca_file=args.tls_ca_file, **{f"tls_{role}_cert": args.tls_cert,
                                                     f"tls_{role}_key": args.tls_key})


def _worker_parser(sub):
    p = sub.add_parser("worker", help="run workers connected to a scheduler",
                       description="Run trioflow workers (under nannies by default).")
    p.add_argument("scheduler", nargs="?", default=None,
                   help="scheduler address: ws://host:port, host:port, tcp://host:port, "
                        "or wss://host:port (TLS, with the --tls-* options)")
    p.add_argument("--scheduler-file", default=None, help="read the scheduler address from here")
    p.add_argument("--nthreads", type=int, default=None, help="threads per worker")
    p.add_argument("--nworkers", type=int, default=1, help="worker processes to start")
    p.add_argument("--name", default=None, help="worker name (suffixed -0, -1... with --nworkers)")
    p.add_argument("--memory-limit", default="auto",
                   help="bytes per worker ('4GB', 'auto', 0 for none); the nanny restarts "
                        "a worker that passes it")
    for name, does in (("target", "spill least recently used results to disk past it"),
                       ("spill", "spill while the process's memory is past it"),
                       ("pause", "start no new tasks past it"),
                       ("terminate", "the nanny restarts the worker past it")):
        p.add_argument(f"--memory-{name}-fraction", default=None, metavar="FRACTION",
                       help=f"of --memory-limit: {does} (default: dask's setting "
                            f"distributed.worker.memory.{name}; 'false' turns it off)")
    p.add_argument("--local-directory", default=None,
                   help="where workers spill to (default: the temporary directory)")
    p.add_argument("--host", default="127.0.0.1", help="interface the workers listen on")
    p.add_argument("--resources", default=None, help='e.g. "GPU=2 MEM=10e9"')
    p.add_argument("--no-nanny", dest="nanny", action="store_false",
                   help="run workers in this process, without nannies")
    p.add_argument("--nanny", dest="nanny", action="store_true", help="run under nannies (default)")
    p.add_argument("--dashboard-address", default=None,
                   help="serve each worker's /metrics here (e.g. :0; off by default)")
    p.add_argument("--no-dashboard", action="store_true", help="serve no /metrics endpoint")
    _token_arguments(p, "the token the scheduler requires (default: the scheduler file's, "
                        "$TRIOFLOW_TOKEN, or for a loopback address the one a scheduler of "
                        "yours on this machine wrote to its runtime file)")
    _tls_arguments(p, "worker")
    p.set_defaults(run=_run_worker, nanny=True)


def _story_parser(sub):
    p = sub.add_parser("story", help="print what happened to keys, cluster-wide",
                       description="Print the transitions of keys (or of the events with "
                                   "these stimulus ids) on the scheduler and every worker, "
                                   "oldest first.")
    p.add_argument("keys", nargs="+", metavar="KEY", help="a key or a stimulus id")
    p.add_argument("--scheduler-file", default=None, help="read the scheduler address from here")
    p.add_argument("--scheduler", default=None, help="or the scheduler's address")
    _token_arguments(p, "the token the scheduler requires")
    p.add_argument("--json", action="store_true", help="one JSON list per transition")
    p.set_defaults(run=_run_story)


def _run_story(args) -> int:
    import datetime

    from trioflow.client.client import Client
    if args.scheduler is None and args.scheduler_file is None:
        print("trioflow story: give --scheduler-file or --scheduler", file=sys.stderr)
        return 2
    with Client(args.scheduler, scheduler_file=args.scheduler_file,
                token=_given_token(args, "story"),
                set_as_default=False) as client:
        story = client.story(*args.keys, on_error="ignore")
    for where, key, start, finish, stimulus_id, when in story:
        if args.json:
            print(json.dumps([where, key, start, finish, stimulus_id, when], default=str))
        else:
            stamp = datetime.datetime.fromtimestamp(when).strftime("%H:%M:%S.%f")
            print(f"{stamp}  {where}  {key!s}  {start} -> {finish}  ({stimulus_id})")
    if not story:
        print(f"no transitions of {', '.join(args.keys)} are remembered", file=sys.stderr)
        return 1
    return 0


def _ssh_parser(sub):
    p = sub.add_parser("ssh", help="start a cluster on hosts over SSH",
                       description="Start a scheduler on the first host and a nanny on each "
                                   "other host over SSH (asyncssh), until interrupted. The "
                                   "token goes to the hosts over SSH, never on a command line.")
    p.add_argument("hosts", nargs="+", metavar="HOST",
                   help="the scheduler's host, then one per worker (repeat for more)")
    p.add_argument("--scheduler-port", type=int, default=8786, help="default 8786; 0 picks one")
    p.add_argument("--scheduler-file", default=None,
                   help="write the scheduler's address and token here (mode 0600)")
    p.add_argument("--nthreads", type=int, default=None, help="threads per worker")
    p.add_argument("--memory-limit", default="auto", help="bytes per worker ('4GB', 'auto')")
    p.add_argument("--ssh-username", default=None, help="user on the hosts")
    p.add_argument("--ssh-port", type=int, default=None, help="the hosts' SSH port")
    p.add_argument("--ssh-private-key", default=None, help="private key file to log in with")
    p.add_argument("--ssh-known-hosts", default=None,
                   help="known_hosts file to check the hosts' keys against (default "
                        "~/.ssh/known_hosts)")
    p.add_argument("--remote-python", default=None,
                   help="python on the hosts (default: this one's path)")
    p.add_argument("--no-nanny", dest="nanny", action="store_false",
                   help="run the workers without nannies")
    p.set_defaults(run=_run_ssh, nanny=True)


def _run_ssh(args) -> int:
    import threading

    from trioflow.comm.tokens import write_private_json
    from trioflow.deploy.ssh import SSHCluster
    connect = {key: value for key, value in (("username", args.ssh_username),
                                             ("port", args.ssh_port)) if value is not None}
    if args.ssh_private_key:
        connect["client_keys"] = [args.ssh_private_key]
    if args.ssh_known_hosts:
        connect["known_hosts"] = args.ssh_known_hosts
    worker_options = {"memory_limit": args.memory_limit, "nanny": args.nanny}
    if args.nthreads:
        worker_options["nthreads"] = args.nthreads
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with SSHCluster(args.hosts, connect_options=connect, worker_options=worker_options,
                    scheduler_options={"port": args.scheduler_port},
                    remote_python=args.remote_python) as cluster:
        if args.scheduler_file:
            write_private_json(args.scheduler_file, {"address": cluster.scheduler_address,
                                                     "token": cluster.token})
        print(f"trioflow scheduler at {cluster.scheduler_address}", flush=True)
        print(f"trioflow ssh: {len(cluster.workers)} worker(s) on {', '.join(args.hosts[1:])}; "
              "connect with --scheduler-file"
              + (f" {args.scheduler_file}" if args.scheduler_file else " (none given: pass "
                 "--scheduler-file to get the token)"), flush=True)
        stop.wait()
    return 0


def _demo_parser(sub):
    p = sub.add_parser("demo", help="run a demonstration job on a local cluster", add_help=False)
    p.set_defaults(run=None)


async def _until_interrupted(scope: trio.CancelScope):
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


def _scheduler_token(args):
    from trioflow.comm.tokens import new_token
    token = _given_token(args, "scheduler")
    if args.no_token:
        if args.token or args.token_file:
            raise SystemExit("trioflow scheduler: --no-token and a token contradict each other")
        logging.getLogger("trioflow.scheduler").warning(
            "--no-token: this scheduler runs code for anyone who can reach its port; use it "
            "only on a trusted network")
        return None
    return token or new_token()


def _print_token_use(scheduler, args):
    if scheduler.token is None:
        return
    where = [f for f in (args.scheduler_file, scheduler.runtime_file) if f]
    print(f"trioflow scheduler requires a token; it is in {' and '.join(where)} (readable by "
          "you only). Your workers and clients on this machine find it when they connect to a "
          "loopback address; elsewhere give them --scheduler-file, --token-file or "
          "$TRIOFLOW_TOKEN (Client(scheduler_file=...) or token=...)", flush=True)


def _run_scheduler(args) -> int:
    from trioflow.server.scheduler import Scheduler
    token = _scheduler_token(args)

    async def main():
        async with Scheduler(host=args.host, port=args.port, scheduler_file=args.scheduler_file,
                             token=token, protocol=args.protocol,
                             security=_security(args, "scheduler"),
                             allowed_failures=args.allowed_failures,
                             dashboard_address=_scheduler_dashboard(args)) as scheduler:
            print(f"trioflow scheduler at {scheduler.address}", flush=True)
            _print_token_use(scheduler, args)
            if "dashboard" in scheduler.services:
                from trioflow.utils import dashboard_link
                link = dashboard_link(scheduler.dashboard_host, scheduler.services["dashboard"])
                print(f"trioflow dashboard at {link}", flush=True)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_until_interrupted, nursery.cancel_scope)
                await scheduler.terminated()  # a client called shutdown()
                nursery.cancel_scope.cancel()
        return 0

    return trio.run(main)


def _scheduler_dashboard(args):
    if args.no_dashboard:
        return None
    if args.dashboard_address is not None:
        return args.dashboard_address
    from trioflow.utils import default_dashboard_address
    return default_dashboard_address()


def _parse_resources(text):
    if not text:
        return None
    out = {}
    for part in text.replace(",", " ").split():
        name, _, value = part.partition("=")
        out[name] = float(value)
    return out


def _run_worker(args) -> int:
    import os

    from trioflow.server.memory import memory_fractions
    from trioflow.server.nanny import Nanny
    from trioflow.server.warm_imports import warm_import_names
    from trioflow.server.worker import Worker
    from trioflow.utils import memory_limit_bytes

    # $TRIOFLOW_TOKEN comes after the scheduler file's: connect() reads it
    address, token = args.scheduler, _given_token(args, "worker", env=False)
    if address is None:
        if args.scheduler_file is None:
            print("trioflow worker: give a scheduler address or --scheduler-file", file=sys.stderr)
            return 2
        info = _wait_for_scheduler_file(args.scheduler_file)
        address, token = info["address"], token or info.get("token")
    nworkers = max(1, args.nworkers)
    nthreads = args.nthreads or max(1, (os.cpu_count() or 1) // nworkers)
    memory_limit = memory_limit_bytes(args.memory_limit, nworkers)
    fractions = {f"memory_{name}_fraction": getattr(args, f"memory_{name}_fraction")
                 for name in ("target", "spill", "pause", "terminate")}
    memory_fractions(*fractions.values())  # a bad value stops here, before any worker
    resources = _parse_resources(args.resources)
    security = _security(args, "worker")

    def name(i):
        if args.name is None:
            return None
        return args.name if nworkers == 1 else f"{args.name}-{i}"

    async def run_one(i):
        kwargs = dict(nthreads=nthreads, name=name(i), memory_limit=memory_limit,
                      resources=resources, host=args.host, token=token,
                      security=security, local_directory=args.local_directory, **fractions,
                      dashboard_address=None if args.no_dashboard else args.dashboard_address)
        if args.nanny:
            server = Nanny(address, **kwargs)
        else:
            server = Worker(address, warm_imports=warm_import_names(), **kwargs)
        async with server:
            print(f"trioflow worker {server.address} -> {address}", flush=True)
            await server.finished()

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_until_interrupted, nursery.cancel_scope)
            async with trio.open_nursery() as workers:
                for i in range(nworkers):
                    workers.start_soon(run_one, i)
            nursery.cancel_scope.cancel()
        return 0

    return trio.run(main)


def _wait_for_scheduler_file(path, timeout=60.0):
    import os
    import time
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                info = json.load(f)
            if isinstance(info.get("address"), str):
                return info
            raise ValueError("no address yet")
        except (OSError, ValueError, AttributeError):
            if time.monotonic() > deadline:
                raise SystemExit(f"trioflow worker: no scheduler file at {path} after {timeout} s")
            time.sleep(0.1)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        prog="trioflow", description="trioflow: dask.distributed's futures API on Trio.")
    sub = parser.add_subparsers(dest="command", metavar="{scheduler,worker,ssh,story,demo}")
    _scheduler_parser(sub)
    _worker_parser(sub)
    _ssh_parser(sub)
    _story_parser(sub)
    _demo_parser(sub)
    if argv and argv[0] == "demo":
        from trioflow.demo import main as demo_main
        return demo_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())

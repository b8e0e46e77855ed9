"""Tokens on by default (issue 18 points 1 and 2).

Every runtime file these tests make lands in a directory of their own
($XDG_RUNTIME_DIR points there for the whole module, subprocesses included).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import socket
import stat
import subprocess
import sys

import psutil
import pytest
import trio

from _tasks import add, inc
from _util import cli_scheduler, cli_worker, log_tail, raw_ws_connect, subprocess_env, wait_until
from test_wire_fuzz import _recv_batch, _send_batch
from trioflow import AuthenticationError, Client, LocalCluster
from trioflow.comm import connect, tokens
from trioflow.comm.connection import Connection
from trioflow.protocol.serialize import serialize
from trioflow.server.scheduler import Scheduler


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(scope="module", autouse=True)
def runtime_home(tmp_path_factory):
    directory = tmp_path_factory.mktemp("xdg-runtime")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_RUNTIME_DIR", str(directory))
        patch.delenv(tokens.TOKEN_ENV, raising=False)
        yield directory


@pytest.fixture
def no_runtime_files(tmp_path, monkeypatch):
    """From here on this process finds no scheduler's runtime file."""
    empty = tmp_path / "empty-runtime"
    empty.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(empty))


async def _identity(address, token=None):
    """Handshake with ``address`` and ask it who it is; returns the comm's token."""
    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                comm = await connect(address, nursery, token=token, retry=False,
                                     info={"role": "client", "id": "token-test"})
                conn = Connection(comm)
                nursery.start_soon(conn.run)
                assert await conn.request({"op": "identity"})
                conn.close()
                return comm.token
    except BaseExceptionGroup as group:  # the nursery's: the one error within
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- a CLI cluster started bench-style


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory, runtime_home):
    """``trioflow scheduler --port N`` (a token of its own) and ``trioflow worker
    ws://127.0.0.1:N --nworkers 2`` (nannies, told no token): as the shared
    benchmark harness starts them."""
    directory = tmp_path_factory.mktemp("bench-style")
    port = _free_port()
    with cli_scheduler(directory, "--port", str(port), "--no-dashboard") as (sproc, address,
                                                                              sfile):
        with cli_worker(directory, f"ws://127.0.0.1:{port}", "--nworkers", "2",
                        "--nthreads", "1") as wproc:
            # the worker processes exist before any test looks for leaked ones
            with Client(scheduler_file=str(sfile), set_as_default=False) as client:
                client.wait_for_workers(2, timeout=60)
            yield {"address": address, "port": port, "directory": directory,
                   "token": json.loads(sfile.read_text())["token"], "scheduler_file": sfile,
                   "procs": (sproc, wproc)}


def test_a_tokenless_bench_style_client_works_on_loopback(cli_cluster):
    assert cli_cluster["address"] == f"ws://127.0.0.1:{cli_cluster['port']}"  # binds loopback
    with Client(f"ws://127.0.0.1:{cli_cluster['port']}", set_as_default=False) as client:
        client.wait_for_workers(2, timeout=30)
        workers = sorted(client.scheduler_info()["workers"])
        assert all(w.startswith("ws://127.0.0.1:") for w in workers)
        # x lives on one worker, y on the other: the second fetches x from its
        # peer's port, which requires the token the worker found by itself
        x = client.submit(inc, 1, workers=[workers[0]], pure=False)
        y = client.submit(add, x, 10, workers=[workers[1]], pure=False)
        assert client.gather([x, y]) == [inc(1), add(inc(1), 10)]
        assert client.gather(client.map(inc, range(20))) == [inc(i) for i in range(20)]


def test_a_worker_port_refuses_a_peer_without_the_token(cli_cluster):
    with Client(cli_cluster["address"], set_as_default=False) as client:
        client.wait_for_workers(2, timeout=30)
        worker = sorted(client.scheduler_info()["workers"])[0]
    with pytest.raises(AuthenticationError, match=rf"the worker at {worker} requires a token; "
                                                  "pass token= or scheduler_file="):
        trio.run(_identity, worker)
    with pytest.raises(AuthenticationError, match=f"the worker at {worker} refused the token "
                                                  "given with token="):
        trio.run(_identity, worker, "not-the-token")
    assert trio.run(_identity, worker, cli_cluster["token"]) == cli_cluster["token"]


def test_a_wrong_or_missing_token_is_refused_clearly_and_the_scheduler_serves_on(
        cli_cluster, no_runtime_files):
    address = cli_cluster["address"]
    log = cli_cluster["directory"] / "scheduler.log"
    before = log_tail(log, 100000)
    with pytest.raises(AuthenticationError, match=rf"the scheduler at {address} requires a "
                                                  r"token; pass token= or scheduler_file="):
        Client(address, set_as_default=False, timeout=5)
    with pytest.raises(AuthenticationError, match=rf"the scheduler at {address} refused the "
                                                  r"token given with token=: it is not the token"):
        Client(address, token="wrong", set_as_default=False, timeout=5)

    def new_lines(what):
        return log_tail(log, 100000).count(what) - before.count(what)

    wait_until(lambda: new_lines("missing token") and new_lines("wrong token"),
               message="the scheduler's log lines")
    # one line per refused connection, and the scheduler goes on serving
    assert new_lines("missing token") == 1 and new_lines("wrong token") == 1
    with Client(scheduler_file=str(cli_cluster["scheduler_file"]), set_as_default=False) as client:
        assert client.submit(inc, 41).result(timeout=30) == 42
    assert all(proc.poll() is None for proc in cli_cluster["procs"])


class _LeavesAMark:
    """Unpickling this creates a file: proof that the scheduler unpickled it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize("proof", ["none", "wrong", "right"])
def test_nothing_from_a_peer_without_the_token_is_unpickled(cli_cluster, tmp_path, proof):
    """A hello and, at once behind it, a run-on-scheduler whose function leaves
    a mark when unpickled: refused peers leave none.  With the right token
    (the control) the same bytes do leave one."""
    mark = tmp_path / f"mark-{proof}"
    sock = raw_ws_connect(cli_cluster["port"])
    try:
        hello = _recv_batch(sock)[0]
        assert hello["auth"] is True
        reply = {"op": "hello", "version": hello["version"], "info": {"role": "client"}}
        token = {"wrong": "wrong-token", "right": cli_cluster["token"]}.get(proof)
        if token is not None:
            reply["proof"] = hmac.new(token.encode(), hello["nonce"], hashlib.sha256).digest()
        _send_batch(sock, [reply])
        _send_batch(sock, [{"op": "run-on-scheduler", "rid": 1,
                            "function": serialize(_LeavesAMark(mark)), "args": serialize(())}])
        answer = _recv_batch(sock)[0]
        if proof == "right":
            assert answer["op"] == "welcome"
            wait_until(mark.exists, timeout=20, message="the control's mark")
            return
        assert answer["op"] == "refused" and answer["auth"] is True
        sock.settimeout(10)
        try:
            while sock.recv(65536):  # the scheduler closes the connection
                pass
        except ConnectionResetError:  # closed with our request unread: what it should do
            pass
    finally:
        sock.close()
    # a marker request behind it would have been handled by now if it ever were
    trio.run(_identity, cli_cluster["address"], cli_cluster["token"])
    assert not mark.exists()


# ---------------------------------------------------------------- the CLI's token sources


def test_the_cli_scheduler_makes_a_token_writes_it_privately_and_says_how_to_use_it(
        tmp_path, runtime_home):
    with cli_scheduler(tmp_path, "--no-dashboard") as (proc, address, scheduler_file):
        info = json.loads(scheduler_file.read_text())
        assert isinstance(info["token"], str) and len(info["token"]) >= 32
        assert _mode(scheduler_file) == 0o600
        port = int(address.rsplit(":", 1)[1])
        runtime = runtime_home / "trioflow" / f"scheduler-127.0.0.1-{port}.json"
        assert json.loads(runtime.read_text())["token"] == info["token"]
        assert _mode(runtime) == 0o600 and _mode(runtime.parent) == 0o700
        log = tmp_path / "scheduler.log"
        wait_until(lambda: "requires a token" in log_tail(log), message="how to use the token")
        assert str(scheduler_file) in log_tail(log) and str(runtime) in log_tail(log)
    assert not runtime.exists(), "the runtime file outlived its scheduler"
    assert not scheduler_file.exists()


@pytest.mark.parametrize("source", ["--token", "--token-file", "TRIOFLOW_TOKEN"])
def test_the_cli_scheduler_takes_a_token_from_each_source(tmp_path, monkeypatch, source):
    token = f"token-from-{source.strip('-')}"
    args = []
    if source == "--token":
        args = ["--token", token]
    elif source == "--token-file":
        token_file = tmp_path / "token"
        token_file.write_text(token + "\n")
        args = ["--token-file", str(token_file)]
    else:
        monkeypatch.setenv(tokens.TOKEN_ENV, token)
    with cli_scheduler(tmp_path, "--no-dashboard", *args) as (proc, address, scheduler_file):
        assert json.loads(scheduler_file.read_text())["token"] == token


def test_a_cli_worker_and_a_client_pick_the_token_up_from_the_scheduler_file(
        tmp_path, monkeypatch, no_runtime_files):
    # no_runtime_files reaches the worker too: only the scheduler file can help it
    with cli_scheduler(tmp_path, "--no-dashboard") as (proc, address, scheduler_file):
        with cli_worker(tmp_path, "--scheduler-file", str(scheduler_file), "--nthreads", "1"):
            with Client(scheduler_file=str(scheduler_file), set_as_default=False) as client:
                client.wait_for_workers(1, timeout=30)
                assert client.gather(client.map(inc, range(5))) == [inc(i) for i in range(5)]
                copy = tmp_path / "copy.json"
                client.write_scheduler_file(str(copy))
                assert _mode(copy) == 0o600
                assert json.loads(copy.read_text())["token"] == json.loads(
                    scheduler_file.read_text())["token"]


def test_no_token_opts_out_with_a_warning(tmp_path, no_runtime_files):
    with cli_scheduler(tmp_path, "--no-dashboard", "--no-token") as (proc, address,
                                                                      scheduler_file):
        assert "token" not in json.loads(scheduler_file.read_text())
        assert trio.run(_identity, address) is None  # welcomed without a token
        wait_until(lambda: "--no-token" in log_tail(tmp_path / "scheduler.log"),
                   message="the --no-token warning")
        assert "trusted network" in log_tail(tmp_path / "scheduler.log")


@pytest.mark.parametrize("command", ["scheduler", "worker"])
def test_help_says_a_token_in_argv_is_visible_in_ps(command):
    out = subprocess.run([sys.executable, "-m", "trioflow", command, "--help"],
                         capture_output=True, text=True, env=subprocess_env(), timeout=60).stdout
    flat = " ".join(out.split())
    assert "visible to every user of this machine in ps" in flat
    assert "--token-file" in flat and "TRIOFLOW_TOKEN" in flat


# ---------------------------------------------------------------- LocalCluster and Client()


def test_client_makes_a_token_for_its_local_cluster_and_passes_it_in_the_environment(
        monkeypatch, tmp_path):
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None,
                set_as_default=False) as client:
        token = client.cluster.token
        assert token and client.cluster.scheduler.token == token
        client.wait_for_workers(2, timeout=30)
        workers = sorted(client.scheduler_info()["workers"])
        x = client.submit(inc, 1, workers=[workers[0]])
        y = client.submit(add, x, 1, workers=[workers[1]])  # a peer fetch between processes
        assert y.result(timeout=30) == 3
        processes = [p for p in psutil.Process().children()  # the nannies run here
                     if "trioflow.server.worker_main" in " ".join(p.cmdline())]
        assert len(processes) == 2
        for process in processes:
            assert token not in " ".join(process.cmdline())  # never in argv
            assert process.environ()[tokens.TOKEN_ENV] == token
        # dask's idiom: a second client by the cluster's address alone
        with Client(client.cluster.scheduler_address, set_as_default=False) as other:
            assert other.submit(inc, 5).result(timeout=30) == 6
        empty = tmp_path / "empty"
        empty.mkdir()
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(empty))
        with pytest.raises(AuthenticationError, match="requires a token"):
            trio.run(_identity, client.cluster.scheduler_address)
        with pytest.raises(AuthenticationError, match="requires a token"):
            trio.run(_identity, workers[0])


def test_local_cluster_token_false_requires_none():
    with LocalCluster(processes=False, n_workers=1, dashboard_address=None, token=False) as cluster:
        assert cluster.token is None and cluster.scheduler.token is None
    with LocalCluster(processes=False, n_workers=1, dashboard_address=None) as cluster:
        assert cluster.token and cluster.scheduler.token == cluster.token
        with Client(cluster, set_as_default=False) as client:
            assert client.submit(inc, 1).result(timeout=30) == 2


# ---------------------------------------------------------------- in-process schedulers


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_token_from_the_environment_and_the_errors_that_name_it(monkeypatch, tmp_path,
                                                                       anyio_backend, caplog):
    async with Scheduler(token="right") as scheduler:
        runtime = scheduler.runtime_file
        assert runtime and os.path.exists(runtime)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # no runtime file found
        with caplog.at_level(logging.WARNING, logger="trioflow.comm"):
            with pytest.raises(AuthenticationError, match="requires a token"):
                await _identity(scheduler.address)
            monkeypatch.setenv(tokens.TOKEN_ENV, "wrong")
            with pytest.raises(AuthenticationError,
                               match=r"refused the token from \$TRIOFLOW_TOKEN"):
                await _identity(scheduler.address)
            monkeypatch.setenv(tokens.TOKEN_ENV, "right")
            assert await _identity(scheduler.address) == "right"
        refusals = [r for r in caplog.records if "token" in r.getMessage()]
        assert [("missing token" in r.getMessage(), "wrong token" in r.getMessage())
                for r in refusals] == [(True, False), (False, True)]
    assert not os.path.exists(runtime), "the runtime file outlived its scheduler"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_runtime_file_falls_back_to_the_home_directory(monkeypatch, tmp_path,
                                                             anyio_backend):
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    directory = tmp_path / ".local" / "share" / "trioflow" / "runtime"
    # a file a killed scheduler left: its pid is gone
    directory.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = directory / "scheduler-127.0.0.1-9.json"
    stale.write_text(json.dumps({"address": "ws://127.0.0.1:9", "token": "t", "pid": dead.pid}))
    assert tokens.find_runtime_token("127.0.0.1", 9) is None
    async with Scheduler(token="home-token") as scheduler:
        port = int(scheduler.address.rsplit(":", 1)[1])
        path = directory / f"scheduler-127.0.0.1-{port}.json"
        assert scheduler.runtime_file == str(path) and _mode(path) == 0o600
        assert _mode(directory) == 0o700
        assert not stale.exists(), "a dead scheduler's file was kept"
        assert await _identity(f"ws://localhost:{port}") == "home-token"
    assert not path.exists()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_scheduler_on_a_non_loopback_address_warns_without_tls(caplog, anyio_backend):
    with caplog.at_level(logging.WARNING, logger="trioflow.scheduler"):
        async with Scheduler(token="t"):
            pass
        assert "without TLS" not in caplog.text  # loopback: nothing to say
        async with Scheduler(host="0.0.0.0", token="t") as scheduler:
            port = int(scheduler.address.rsplit(":", 1)[1])
            # a loopback connection on this machine still finds the token
            assert await _identity(f"ws://127.0.0.1:{port}") == "t"
        assert "without TLS" in caplog.text and "wss://" in caplog.text
        caplog.clear()
        async with Scheduler(host="0.0.0.0"):
            pass
        assert "requires no token" in caplog.text

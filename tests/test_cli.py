"""The command line (``python -m trioflow``), scheduler files and addresses."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import traceback
from urllib.parse import urlsplit

import psutil
import pytest

from trioflow import Client
from _tasks import divide, inc, make_lock, total
from _util import (
    cli_scheduler,
    cli_worker,
    key_is_forgotten,
    log_tail,
    run_python,
    scheduler_address,
    stop_process_group,
    subprocess_env,
    wait_until,
    worker_key_total,
)

pytestmark = pytest.mark.timeout(120)


def _port(address):
    port = urlsplit(address if "://" in address else f"ws://{address}").port
    assert port, address
    return port


def _connect(cluster, n_workers=2):
    """Connect a Client to a CLI cluster and wait for its workers."""
    client = Client(cluster.address, timeout=30)
    try:
        client.wait_for_workers(n_workers, timeout=30)
    except BaseException as exc:
        client.close()
        raise AssertionError(f"workers did not join ({exc!r}):\n" + cluster.logs()) from exc
    return client


CLIENT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from trioflow import Client
    from _tasks import inc
    kind, target = sys.argv[1], sys.argv[2]
    client = Client(target) if kind == "address" else Client(scheduler_file=target)
    with client:
        future = client.submit(inc, 41)
        print(json.dumps({"key": future.key, "result": future.result(timeout=30)}))
    """
)


def _start_client_process(kind, target):
    return subprocess.Popen(
        [sys.executable, "-c", CLIENT_SCRIPT, kind, str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )


def _client_process_output(proc):
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


# --- help ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, flags",
    [
        ([], ["scheduler", "worker"]),
        (["scheduler"], ["--port", "--scheduler-file"]),
        (
            ["worker"],
            ["--nthreads", "--nworkers", "--scheduler-file", "--name", "--memory-limit", "--no-nanny"],
        ),
    ],
    ids=["trioflow", "scheduler", "worker"],
)
def test_cli_help_exits_zero_with_usage(command, flags):
    result = subprocess.run(
        [sys.executable, "-m", "trioflow", *command, "--help"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()
    for flag in flags:
        assert flag in result.stdout, (flag, result.stdout)


# --- a scheduler and a worker command ------------------------------------------------


def test_cli_cluster_runs_tasks(cli_cluster):
    client = _connect(cli_cluster)
    with client:
        nthreads = client.nthreads()
        assert sorted(nthreads.values()) == [2, 2]
        assert client.run_on_scheduler(os.getpid) == cli_cluster.scheduler_proc.pid
        worker_pids = client.run(os.getpid)
        assert len(set(worker_pids.values())) == 2
        assert not {os.getpid(), cli_cluster.scheduler_proc.pid} & set(worker_pids.values())

        assert client.submit(inc, 1).result(timeout=30) == 2
        futures = client.map(inc, range(20))
        assert client.gather(futures) == list(range(1, 21))
        assert client.submit(total, futures).result(timeout=30) == sum(range(1, 21))

        worker_a, worker_b = sorted(nthreads)
        a = client.submit(inc, 1, workers=[worker_a])
        b = client.submit(inc, a, workers=[worker_b])
        assert b.result(timeout=30) == 3
        everywhere = client.scatter(b"data", broadcast=True)
        assert set(client.who_has([everywhere])[everywhere.key]) == {worker_a, worker_b}


def test_cli_cluster_task_errors_and_unpicklable_result(cli_cluster):
    client = _connect(cli_cluster)
    with client:
        failing = client.submit(divide, 1, 0)
        with pytest.raises(ZeroDivisionError, match="division by zero") as info:
            client.submit(inc, failing).result(timeout=30)
        assert "divide" in "".join(traceback.format_tb(info.value.__traceback__))

        unpicklable = client.submit(make_lock, pure=False)
        with pytest.raises(Exception) as info:
            unpicklable.result(timeout=30)
        assert "lock" in str(info.value).lower(), repr(info.value)

        assert client.submit(inc, 1, pure=False).result(timeout=30) == 2
        with Client(cli_cluster.address) as other:
            assert other.submit(inc, 2, pure=False).result(timeout=30) == 3


def test_cli_cluster_releases_worker_memory(cli_cluster):
    client = _connect(cli_cluster)
    with client:
        futures = client.map(inc, range(10))
        assert client.gather(futures) == list(range(1, 11))
        keys = [f.key for f in futures]
        assert worker_key_total(client) == 10
        del futures
        for key in keys:
            wait_until(lambda: key_is_forgotten(client, key), 20, message=f"{key} forgotten")
        wait_until(lambda: worker_key_total(client) == 0, 20, message="worker data empty")


def test_cli_two_client_processes_share_scheduler(cli_cluster):
    client = _connect(cli_cluster)
    client.close()
    port = _port(cli_cluster.address)
    by_address = _start_client_process("address", f"ws://127.0.0.1:{port}")
    by_file = _start_client_process("scheduler_file", cli_cluster.scheduler_file)
    first = _client_process_output(by_address)
    second = _client_process_output(by_file)
    assert first["result"] == second["result"] == 42
    assert first["key"] == second["key"]


def test_cli_client_accepts_ws_bare_and_tcp_addresses(cli_cluster):
    port = _port(cli_cluster.address)
    for address in (f"ws://127.0.0.1:{port}", f"127.0.0.1:{port}", f"tcp://127.0.0.1:{port}"):
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=30)
            assert client.submit(inc, port).result(timeout=30) == port + 1, address


def test_cli_write_scheduler_file_lets_another_process_connect(cli_cluster, tmp_path):
    path = tmp_path / "written.json"
    with Client(cli_cluster.address, timeout=30) as client:
        client.wait_for_workers(2, timeout=30)
        client.write_scheduler_file(str(path))
        written = json.loads(path.read_text())
        assert _port(written["address"]) == _port(cli_cluster.address)
        result = run_python(
            "from trioflow import Client\n"
            "from _tasks import inc\n"
            f"with Client(scheduler_file={str(path)!r}) as c:\n"
            "    print(c.submit(inc, 1).result(timeout=30))\n"
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip().splitlines()[-1] == "2"


def test_write_scheduler_file_writes_address_json(inproc_client, tmp_path):
    path = tmp_path / "scheduler.json"
    inproc_client.write_scheduler_file(str(path))
    written = json.loads(path.read_text())
    assert written["address"] == scheduler_address(inproc_client)
    with Client(scheduler_file=str(path)) as other:
        assert other.submit(inc, 1).result(timeout=10) == 2


def test_cli_worker_flags_no_nanny_name_memory_limit(tmp_path):
    with cli_scheduler(tmp_path) as (_, address, _scheduler_file):
        port = _port(address)
        with cli_worker(
            tmp_path,
            f"ws://127.0.0.1:{port}",
            "--no-nanny",
            "--name",
            "alpha",
            "--nthreads",
            "3",
            "--memory-limit",
            "1GiB",
        ) as worker_proc:
            with Client(address, timeout=30) as client:
                try:
                    client.wait_for_workers(1, timeout=30)
                except BaseException as exc:
                    raise AssertionError(log_tail(tmp_path / "worker.log")) from exc
                (info,) = client.scheduler_info()["workers"].values()
                assert info["name"] == "alpha"
                assert info["nthreads"] == 3
                assert info["memory_limit"] == 2**30
                # Without a nanny the worker runs in the command's own process.
                assert set(client.run(os.getpid).values()) == {worker_proc.pid}
                assert client.submit(inc, 1).result(timeout=30) == 2


def test_cli_sigterm_stops_scheduler_and_workers(cli_cluster):
    client = _connect(cli_cluster)
    client.close()
    processes = [cli_cluster.worker_proc, cli_cluster.scheduler_proc]
    descendants = [
        child
        for proc in processes
        for child in psutil.Process(proc.pid).children(recursive=True)
    ]
    assert len(descendants) >= 2  # the two worker processes under the nanny
    for proc in processes:
        proc.send_signal(signal.SIGTERM)

    def still_running(process):
        try:
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def all_exited():
        return all(p.poll() is not None for p in processes) and not any(
            still_running(d) for d in descendants
        )

    try:
        wait_until(all_exited, timeout=20, message="CLI processes exit on SIGTERM")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cli_cluster.logs()}") from None


def test_demo_runs_and_checks_its_answers(tmp_path):
    """The README's first command: `trioflow demo` runs its job on a local
    cluster, checks the answers and exits 0 with nothing left running."""
    proc = subprocess.Popen([sys.executable, "-m", "trioflow", "demo"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=subprocess_env(),
                            cwd=tmp_path, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=110)
    finally:
        stop_process_group(proc)  # its nannies and workers too, should it hang
    assert proc.returncode == 0, out[-5000:]
    assert "2/2 phases passed" in out, out[-3000:]
    assert "-> ok" in out and "FAIL" not in out

"""SSHCluster against a real sshd on this machine (issue 18, point 4).

The test starts its own ``sshd -D`` on a free loopback port, listening on
127.0.0.1 and 127.0.0.2, with a throwaway host key and user key; the
scheduler goes to "host" 127.0.0.1 and the workers to 127.0.0.2, each in a
directory of its own.  sshd is killed in a finally."""

import os
import shutil
import socket
import subprocess
import sys
import time

import psutil
import pytest

import trioflow
from trioflow import AuthenticationError, Client
from _util import wait_until

SSHD = "/usr/sbin/sshd"
ROOT = os.path.dirname(os.path.dirname(trioflow.__file__))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path):
    pytest.importorskip("asyncssh")
    if not os.path.exists(SSHD) or not shutil.which("ssh-keygen"):
        pytest.skip("needs openssh-server (sshd) and ssh-keygen: apt-get install openssh-server")
    if os.geteuid() != 0:
        pytest.skip("the test's sshd logs in as root: run as root")
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(keys / name)], check=True)
    (keys / "authorized_keys").write_text((keys / "user.pub").read_text())
    os.chmod(keys / "authorized_keys", 0o600)
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    port = _free_port()
    config = tmp_path / "sshd_config"
    config.write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
ListenAddress 127.0.0.2
HostKey {keys / 'host'}
PidFile {tmp_path / 'sshd.pid'}
AuthorizedKeysFile {keys / 'authorized_keys'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel ERROR
""")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)])
    try:
        deadline = time.monotonic() + 20
        for host in ("127.0.0.1", "127.0.0.2"):
            while True:
                try:
                    socket.create_connection((host, port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"sshd did not start on {host}:{port}")
                    time.sleep(0.05)
        host_key = (keys / "host.pub").read_text().split()
        (keys / "known_hosts").write_text("".join(
            f"[{h}]:{port} {host_key[0]} {host_key[1]}\n" for h in ("127.0.0.1", "127.0.0.2")))
        yield {"port": port, "known_hosts": str(keys / "known_hosts"),
               "client_keys": [str(keys / "user")], "username": "root"}
    finally:
        proc.kill()
        proc.wait(10)


def test_ssh_cluster_scheduler_and_workers_on_separate_hosts(sshd, tmp_path):
    from trioflow.deploy.ssh import SSHCluster
    # the remote side runs this checkout's trioflow (a worktree is not the installed one)
    python = f"env PYTHONPATH={ROOT} {sys.executable}"
    pids = []
    with SSHCluster(["127.0.0.1", "127.0.0.2", "127.0.0.2"], connect_options=sshd,
                    remote_python=python, security=True,
                    scheduler_options={"local_directory": str(tmp_path / "scheduler"),
                                       "dashboard_address": None},
                    worker_options={"local_directory": str(tmp_path / "workers"),
                                    "nthreads": 1}) as cluster:
        assert cluster.scheduler_address.startswith("wss://127.0.0.1:")
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=30)
            workers = client.scheduler_info()["workers"]
            assert all(a.startswith("wss://127.0.0.2:") for a in workers)
            assert sorted(w["name"] for w in workers.values()) == ["0", "1"]
            assert set(client.run(os.getcwd).values()) == {str(tmp_path / "workers")}
            assert client.run_on_scheduler(os.getcwd) == str(tmp_path / "scheduler")
            # (the remote hosts cannot import this test module: a function by value)
            assert client.gather(client.map(lambda x: x + 1, range(20))) == list(range(1, 21))
            pids = [*client.run(os.getpid).values(), client.run_on_scheduler(os.getpid)]
            # the token went over SSH's standard input: no process shows it in argv
            for proc in psutil.process_iter(["cmdline"]):
                assert cluster.token not in " ".join(proc.info["cmdline"] or [])
        with pytest.raises(AuthenticationError):
            Client(cluster.scheduler_address, security=cluster.security, token="wrong",
                   timeout=5)
    # closing the cluster stopped every remote process
    wait_until(lambda: not any(psutil.pid_exists(p) for p in pids), timeout=20,
               message="remote processes gone")


def test_trioflow_ssh_command_line(sshd, tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "trioflow", "ssh", "127.0.0.1", "127.0.0.2",
         "--scheduler-port", "0", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
         "--ssh-username", "root", "--ssh-port", str(sshd["port"]),
         "--ssh-private-key", sshd["client_keys"][0], "--ssh-known-hosts", sshd["known_hosts"],
         "--remote-python", f"env PYTHONPATH={ROOT} {sys.executable}"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    try:
        line = proc.stdout.readline()
        assert line.startswith("trioflow scheduler at ws://127.0.0.1:"), line
        assert oct(os.stat(scheduler_file).st_mode & 0o777) == "0o600"
        with Client(scheduler_file=str(scheduler_file), timeout=20) as client:
            client.wait_for_workers(1, timeout=30)
            assert client.submit(lambda: 41 + 1).result(timeout=20) == 42
            pids = [*client.run(os.getpid).values(), client.run_on_scheduler(os.getpid)]
        proc.terminate()
        assert proc.wait(30) == 0
        wait_until(lambda: not any(psutil.pid_exists(p) for p in pids), timeout=20,
                   message="remote processes gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

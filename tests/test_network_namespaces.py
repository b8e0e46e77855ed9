"""A cluster across hosts (issue 18): the scheduler and two workers each run
in their own Linux network namespace, joined to the test's namespace by veth
pairs on a bridge, so each has its own address and its own loopback, as on
separate machines.  The client runs in the test's namespace.

What only separate hosts show: the token reaches the workers through the
scheduler file alone (no same-machine loopback file helps off loopback), a
client that does not pass it is refused, the scheduler warns that it serves
a non-loopback address without TLS, and workers fetch each other's data over
the veth links.

The namespaces need root and the ``ip`` command (iproute2); where the kernel
refuses them the tests skip and say so.
"""
import contextlib
import os
import pathlib
import subprocess
import sys

import pytest

from _util import log_tail, read_scheduler_file, stop_process_group, subprocess_env, wait_until
from trioflow import AuthenticationError, Client

pytestmark = pytest.mark.timeout(120)

TAG = f"{os.getpid() % 100000}"
SUBNET = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
BRIDGE = f"tfbr{TAG}"
HOSTS = {"sched": 1, "w1": 2, "w2": 3}  # namespace -> last byte of its address


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def _namespace(host):
    return f"tf{TAG}{host}"


def _address(host):
    return f"{SUBNET}.{HOSTS[host]}"


def _remove_network():
    for host in HOSTS:
        subprocess.run(["ip", "netns", "del", _namespace(host)], capture_output=True, timeout=30)
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, timeout=30)


def _make_network():
    """A bridge in this namespace (it has the .254 address) and one namespace
    per host, each with a veth pair whose outer end is on the bridge."""
    _ip("link", "add", "name", BRIDGE, "type", "bridge")
    _ip("addr", "add", f"{SUBNET}.254/24", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    for host, byte in HOSTS.items():
        ns, inner, outer = _namespace(host), f"tfi{TAG}{byte}", f"tfo{TAG}{byte}"
        _ip("netns", "add", ns)
        _ip("link", "add", inner, "type", "veth", "peer", "name", outer)
        _ip("link", "set", inner, "netns", ns)
        _ip("link", "set", outer, "master", BRIDGE)
        _ip("link", "set", outer, "up")
        _ip("-n", ns, "addr", "add", f"{_address(host)}/24", "dev", inner)
        _ip("-n", ns, "link", "set", inner, "up")
        _ip("-n", ns, "link", "set", "lo", "up")


@pytest.fixture(scope="module")
def network():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    try:
        _make_network()
    except FileNotFoundError:
        _remove_network()
        pytest.skip("no `ip` command (Debian's iproute2) to make network namespaces")
    except subprocess.CalledProcessError as exc:
        _remove_network()
        pytest.skip(f"this kernel or container refuses network namespaces: {exc.stderr.strip()}")
    try:
        yield
    finally:
        _remove_network()


def _start_in(host, args, log_path):
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(
            ["ip", "netns", "exec", _namespace(host), sys.executable, "-m", "trioflow", *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=subprocess_env(), start_new_session=True)
    finally:
        log.close()


@pytest.fixture
def cluster(network, tmp_path, check_leaks):
    """`trioflow scheduler` on host sched, a `trioflow worker` (with its
    nanny) on each of w1 and w2, all given only the scheduler file."""
    scheduler_file = tmp_path / "s.json"
    procs = []
    try:
        procs.append(_start_in("sched", [
            "scheduler", "--host", _address("sched"), "--port", "0", "--no-dashboard",
            "--scheduler-file", str(scheduler_file)], tmp_path / "sched.log"))

        def written():
            assert procs[0].poll() is None, log_tail(tmp_path / "sched.log")
            return read_scheduler_file(scheduler_file)

        info = wait_until(written, timeout=30, message="the scheduler file")
        for host in ("w1", "w2"):
            procs.append(_start_in(host, [
                "worker", "--scheduler-file", str(scheduler_file), "--host", _address(host),
                "--nthreads", "1", "--name", host, "--no-dashboard"], tmp_path / f"{host}.log"))
        yield info, scheduler_file, tmp_path, procs
    finally:
        for proc in reversed(procs):
            stop_process_group(proc)


def _net_namespace(pid):
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _make_block(n):
    return bytes(range(256)) * n


def _checksum(block, salt):
    return (sum(block[::97]) + salt, len(block))


def test_scheduler_and_workers_on_separate_hosts(cluster):
    info, scheduler_file, logs, procs = cluster
    assert info["address"].startswith(f"ws://{_address('sched')}:")
    assert "token" in info  # on by default, and the file is all a worker gets
    with Client(scheduler_file=str(scheduler_file), timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
        workers = client.scheduler_info()["workers"]
        by_name = {w["name"]: address for address, w in workers.items()}
        assert sorted(by_name) == ["w1", "w2"]
        for host in ("w1", "w2"):
            assert by_name[host].startswith(f"ws://{_address(host)}:")

        # each server is in a network namespace of its own, none in this one's
        spaces = {_net_namespace(p.pid) for p in procs} | {_net_namespace(os.getpid())}
        assert len(spaces) == 4

        # a result made on w1 goes to a task on w2 over the veth links
        block = client.submit(_make_block, 4000, workers=[by_name["w1"]], pure=False)
        checked = client.submit(_checksum, block, 7, workers=[by_name["w2"]],
                                allow_other_workers=False)
        expected = _checksum(_make_block(4000), 7)
        assert checked.result(timeout=60) == expected
        assert client.who_has([checked])[checked.key] == (by_name["w2"],)
        # and a client gathers from each host
        assert client.gather(block) == _make_block(4000)

        # the scheduler said it serves a network address without TLS
        wait_until(lambda: "without TLS" in log_tail(logs / "sched.log", 20000), timeout=10,
                   message="the scheduler's warning about TLS")


def test_a_client_without_the_token_is_refused_and_the_cluster_serves_on(cluster):
    info, scheduler_file, _, _ = cluster
    # off loopback there is no same-machine runtime file to find the token in
    with pytest.raises(AuthenticationError, match="requires a token"):
        Client(info["address"], timeout=30)
    with pytest.raises(AuthenticationError):
        Client(info["address"], token="not-the-token", timeout=30)
    with Client(info["address"], token=info["token"], timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
        assert client.submit(sum, [1, 2, 3]).result(timeout=30) == 6

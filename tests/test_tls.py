"""wss://: TLS between every process of a cluster, with dask's Security
object; refusals are quick and clear, and the servers carry on."""
from __future__ import annotations

import logging
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import trio

from trioflow import Client, CommClosedError, LocalCluster, ProtocolError
from trioflow.comm import connect, serve
from trioflow.comm import ws as ws_module
from trioflow.comm.connection import Connection, reply_ok
from trioflow.protocol.serialize import deserialize, serialize
from trioflow.security import ENV_VAR, Security
from trioflow.server.scheduler import Scheduler
from _tasks import inc, total
from _util import cli_scheduler, cli_worker, subprocess_env, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def anyio_backend():
    return "trio"


@pytest.fixture(scope="module")
def temporary_security():
    return Security.temporary()


def _write_pems(directory, security):
    paths = {}
    for name, text in (("ca", security.tls_ca_file), ("cert", security.tls_scheduler_cert),
                       ("key", security.tls_scheduler_key)):
        path = directory / f"{name}.pem"
        path.write_text(text)
        paths[name] = str(path)
    return paths


def fetch_total_with_worker_client(values):
    from trioflow import get_client

    client = get_client()
    return client.submit(total, values).result()


def test_security_hides_its_keys_and_travels_to_worker_processes(temporary_security):
    text = repr(temporary_security)
    assert "PRIVATE KEY" not in text and "<PEM>" in text
    again = Security.from_env({ENV_VAR: temporary_security.to_env()})
    assert again.tls_worker_key == temporary_security.tls_worker_key
    assert again.require_encryption and again.tls_min_version == temporary_security.tls_min_version
    with pytest.raises(TypeError, match="tls_ca_file"):
        Security(tls_ca_file=b"bytes are not a path")
    with pytest.raises(ValueError, match="tls_min_version"):
        Security(tls_min_version=1.1)


@pytest.mark.anyio
async def test_large_messages_cross_tls_fragmented(monkeypatch, temporary_security):
    monkeypatch.setattr(ws_module, "MAX_FRAME", 256 * 1024)
    data = np.random.default_rng(4).random(1_000_000)  # 8 MB: 31 fragments
    blob = np.random.default_rng(5).bytes(3 * 1024 * 1024)

    async def handler(comm):
        conn = Connection(comm, lambda msg: conn.send(reply_ok(msg, msg.get("payload"))))
        await conn.run()

    async with trio.open_nursery() as nursery:
        address = await nursery.start(lambda task_status: serve(
            "wss://127.0.0.1:0", handler, security=temporary_security, task_status=task_status))
        assert address.startswith("wss://")
        conn = Connection(await connect(address, nursery, security=temporary_security))
        nursery.start_soon(conn.run)
        back = deserialize(await conn.request({"op": "echo", "payload": serialize(data)}))
        assert np.array_equal(back, data)
        back = deserialize(await conn.request({"op": "echo", "payload": serialize(blob)}))
        assert type(back) is bytes and back == blob
        conn.close()
        nursery.cancel_scope.cancel()


def test_local_cluster_with_security_true_encrypts_every_connection(check_leaks):
    array = np.random.default_rng(6).random(2_500_000)  # 20 MB
    with LocalCluster(n_workers=2, threads_per_worker=1, security=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=30)
        assert cluster.scheduler_address.startswith("wss://")
        workers = sorted(client.scheduler_info()["workers"])
        assert all(address.startswith("wss://") for address in workers)
        a, b = workers
        [held] = client.scatter([array], workers=[a], direct=True)
        # worker to worker, worker to client, and the worker's own client
        assert client.submit(lambda x: float(x.sum()), held, workers=[b]).result(30) == \
            pytest.approx(float(array.sum()))
        assert np.array_equal(client.gather(held, direct=True), array)
        assert np.array_equal(client.gather(held, direct=False), array)
        assert client.submit(fetch_total_with_worker_client, [1, 2, 3]).result(30) == 6
        assert client.submit(inc, 1).result(30) == 2


def test_clients_without_the_right_certificate_are_refused_and_the_cluster_carries_on(
        check_leaks, caplog):
    with LocalCluster(n_workers=1, threads_per_worker=1, security=True,
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        with caplog.at_level(logging.WARNING, logger="trioflow.comm"):
            for security in (None, Security.temporary()):  # no CA / another CA
                # ProtocolError, not the TimeoutError a retried refusal ends in
                with pytest.raises(ProtocolError, match="TLS handshake .* failed"):
                    Client(address, security=security, timeout=20)
            wait_until(lambda: "TLS handshake failed" in caplog.text, timeout=10,
                       message="the scheduler logged the refused handshakes")
        # cleartext to a TLS port: refused, with the likely cause in the error
        with pytest.raises(TimeoutError, match="wss://"):
            Client(address.replace("wss://", "ws://"), timeout=2)
        with Client(cluster) as client:
            assert client.submit(inc, 41).result(30) == 42


def test_require_encryption_refuses_plain_addresses(temporary_security):
    with pytest.raises(ValueError, match="not encrypted"):
        Client("ws://127.0.0.1:1", security=temporary_security)
    with pytest.raises(ValueError, match="not encrypted"):
        Client("tcp://127.0.0.1:1", security=Security(require_encryption=True))


@pytest.mark.anyio
async def test_serving_wss_without_a_certificate_fails_clearly():
    with pytest.raises(ValueError, match="needs a certificate"):
        async with Scheduler(protocol="wss"):
            pass
    with pytest.raises(ValueError, match="tls_scheduler_cert"):
        async with Scheduler(protocol="tls", security=Security(tls_ca_file=None)):
            pass


def test_cli_scheduler_and_workers_with_tls_options(check_leaks, tmp_path, temporary_security):
    pems = _write_pems(tmp_path, temporary_security)
    tls = ["--tls-ca-file", pems["ca"], "--tls-cert", pems["cert"], "--tls-key", pems["key"]]
    with cli_scheduler(tmp_path, *tls) as (_, address, scheduler_file):
        assert address.startswith("wss://")
        with cli_worker(tmp_path, "--scheduler-file", str(scheduler_file), "--nworkers", "2",
                        "--nthreads", "1", *tls):
            security = Security(tls_ca_file=pems["ca"], tls_client_cert=pems["cert"],
                                tls_client_key=pems["key"])
            with Client(scheduler_file=str(scheduler_file), security=security) as client:
                client.wait_for_workers(2, timeout=60)
                assert all(w.startswith("wss://") for w in client.scheduler_info()["workers"])
                futures = client.map(inc, range(20))
                assert client.submit(total, futures).result(60) == sum(range(1, 21))


@pytest.mark.parametrize("with_files", [False, True])
def test_tls_example_runs(check_leaks, tmp_path, temporary_security, with_files):
    script = pathlib.Path(__file__).resolve().parent.parent / "examples" / "tls_cluster.py"
    args = []
    if with_files:
        pems = _write_pems(tmp_path, temporary_security)
        args = [pems["ca"], pems["cert"], pems["key"]]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=90, env=subprocess_env())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "wss://" in done.stdout and "is refused" in done.stdout
    assert "499999500000" in done.stdout


@pytest.mark.anyio
async def test_a_client_certificate_of_another_ca_is_refused(tmp_path, monkeypatch,
                                                               temporary_security):
    # even when the system's store trusts that other CA: with tls_ca_file
    # the cluster's servers trust that CA only
    from trioflow.security import _self_signed_certificate

    stranger_cert, stranger_key = _self_signed_certificate("stranger")
    system_ca = tmp_path / "system-ca.pem"
    system_ca.write_text(stranger_cert)
    monkeypatch.setenv("SSL_CERT_FILE", str(system_ca))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    intruder = Security(tls_ca_file=temporary_security.tls_ca_file,
                        tls_client_cert=stranger_cert, tls_client_key=stranger_key)

    async def handler(comm):
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        address = await nursery.start(lambda task_status: serve(
            "wss://127.0.0.1:0", handler, security=temporary_security, task_status=task_status))
        with pytest.raises((ProtocolError, CommClosedError)):
            await connect(address, nursery, security=intruder, retry=False, timeout=10)
        comm = await connect(address, nursery, security=temporary_security)  # the right one
        await comm.aclose()
        nursery.cancel_scope.cancel()

"""The dashboard over plain HTTP: /health, /sitemap.json, /metrics against
scheduler_info(), the live feed, the task API, ports and links."""
import json
import logging
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from _util import cli_scheduler, cli_worker, wait_until
from trioflow import Client, LocalCluster
from trioflow.utils import default_dashboard_address


def _base(link):
    return link.rsplit("/", 1)[0]


def _get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def _metrics(url) -> dict:
    """{(name, labels as a sorted tuple): value} of a /metrics page."""
    values = {}
    for family in text_string_to_metric_families(_get(url)):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def inc(x):
    return x + 1


@pytest.fixture
def dash_client(check_leaks):
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=False,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield client


def test_health_and_sitemap(dash_client):
    base = _base(dash_client.dashboard_link)
    assert _get(base + "/health") == "ok"
    paths = json.loads(_get(base + "/sitemap.json"))["paths"]
    assert {"/status", "/workers", "/task/{key}", "/info", "/metrics", "/health"} <= set(paths)
    for path in ("/status", "/workers", "/info", "/task/nothing"):
        assert "<canvas" in _get(base + path) or "<table" in _get(base + path)


def test_metrics_match_scheduler_info(dash_client):
    client = dash_client
    futures = client.map(inc, range(20))
    client.gather(futures)
    base = _base(client.dashboard_link)
    info = client.scheduler_info()
    m = _metrics(base + "/metrics")
    assert m[("dask_scheduler_workers", ())] == len(info["workers"]) == 2
    assert m[("dask_scheduler_clients", ())] == info["clients"]
    task_total = sum(v for (name, _), v in m.items() if name == "dask_scheduler_tasks")
    assert task_total == info["n_tasks"] == 20
    assert m[("dask_scheduler_tasks", (("state", "memory"),))] == 20
    assert m[("trioflow_scheduler_prefix_tasks",
              (("state", "memory"), ("task_prefix_name", "inc")))] == 20
    assert m[("trioflow_scheduler_worker_threads", ())] == sum(
        w["nthreads"] for w in info["workers"].values())
    for address, worker in info["workers"].items():
        assert m[("trioflow_scheduler_worker_managed_bytes",
                  (("worker", address),))] == worker["nbytes"]
    assert m[("dask_scheduler_tasks_forgotten_total", ())] == 0
    del futures
    wait_until(lambda: _metrics(base + "/metrics")[("dask_scheduler_tasks_forgotten_total", ())]
               == 20, message="20 forgotten tasks")


def test_worker_metrics_endpoint(check_leaks):
    with LocalCluster(n_workers=1, threads_per_worker=3, processes=False,
                      dashboard_address=None, worker_dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as client:
        futures = client.map(inc, range(7))
        client.gather(futures)
        worker = next(iter(cluster.workers.values()))
        port = worker.services["dashboard"]
        base = f"http://127.0.0.1:{port}"
        assert _get(base + "/health") == "ok"
        m = _metrics(base + "/metrics")
        assert m[("dask_worker_threads", ())] == 3
        held = len(client.has_what()[worker.address])
        assert m[("dask_worker_tasks", (("state", "memory"),))] == held == 7
        assert m[("dask_worker_memory_bytes", (("type", "managed"),))] == (
            client.scheduler_info()["workers"][worker.address]["nbytes"])
        assert ("dask_worker_transfer_incoming_bytes_total", ()) in m
        assert client.dashboard_link is None


def test_feed_streams_task_runs_and_progress(dash_client):
    client = dash_client
    base = _base(client.dashboard_link)
    with urllib.request.urlopen(base + "/api/feed", timeout=10) as feed:
        first = json.loads(feed.readline().decode()[len("data: "):])
        assert first["reset"] and first["summary"]["workers"] == 2
        futures = client.map(inc, range(50))
        client.gather(futures)
        prefixes, progress = set(), {}
        while "inc" not in prefixes or progress.get("inc", [0, 0, 0])[2] < 50:
            line = feed.readline().decode()
            if line.startswith("data: "):
                message = json.loads(line[len("data: "):])
                prefixes |= {bar[3] for bar in message["tasks"]}
                progress = message["progress"]
        workers = {w["address"] for w in message["workers"]}
        assert workers == set(client.scheduler_info()["workers"])


def test_task_api_reports_state_and_holders(dash_client):
    client = dash_client
    a = client.submit(inc, 1, key="alpha")
    b = client.submit(inc, a, key="beta")
    b.result()
    base = _base(client.dashboard_link)
    info = json.loads(_get(base + "/api/task/beta"))
    assert info["state"] == "memory"
    assert info["dependencies"] == [{"key": "alpha", "state": "memory"}]
    assert info["who_has"] == client.who_has([b])["beta"]
    assert json.loads(_get(base + "/api/task/no-such-key"))["found"] is False


def test_task_page_says_why_a_task_cannot_run(dash_client):
    # issue 12, point 6: a task no current worker can run is shown, not silent
    future = dash_client.submit(inc, 1, resources={"TPU": 1})
    url = _base(dash_client.dashboard_link) + f"/api/task/{future.key}"

    def waiting_for_a_worker():
        info = json.loads(_get(url))
        return info if info.get("state") == "no-worker" else None

    info = wait_until(waiting_for_a_worker, timeout=10, message="the task is no-worker")
    assert "TPU" in info["facts"]["cannot run because"]
    future.cancel()


def test_taken_port_falls_back_to_a_free_one(check_leaks, caplog):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        with caplog.at_level(logging.WARNING, logger="trioflow.dashboard"), \
                LocalCluster(n_workers=1, processes=False,
                             dashboard_address=f"127.0.0.1:{port}") as cluster:
            link = cluster.dashboard_link
            assert f":{port}/" not in link
            assert _get(_base(link) + "/health") == "ok"
        assert f"port {port} is already in use" in caplog.text
    finally:
        taken.close()


@pytest.mark.parametrize("off", [None, False])
def test_dashboard_off(check_leaks, off):
    with LocalCluster(n_workers=1, processes=False, dashboard_address=off) as cluster, \
            Client(cluster) as client:
        assert client.dashboard_link is None
        assert client.scheduler_info()["services"] == {}


def test_default_address_is_dasks_and_env_can_change_it(check_leaks, monkeypatch):
    assert default_dashboard_address({}) == ":8787"
    assert default_dashboard_address({"TRIOFLOW_DASHBOARD_ADDRESS": "none"}) is None
    monkeypatch.setenv("TRIOFLOW_DASHBOARD_ADDRESS", "127.0.0.1:0")
    with Client(n_workers=1, processes=False) as client:  # no dashboard_address= given
        assert _get(_base(client.dashboard_link) + "/health") == "ok"


def test_link_template(check_leaks, monkeypatch):
    monkeypatch.setenv("TRIOFLOW_DASHBOARD_LINK", "https://proxy.example/{USER_PREFIX}{port}/x")
    monkeypatch.setenv("USER_PREFIX", "me/")
    with LocalCluster(n_workers=1, processes=False, dashboard_address="127.0.0.1:0") as cluster:
        port = cluster.scheduler.services["dashboard"]
        assert cluster.dashboard_link == f"https://proxy.example/me/{port}/x"


def test_bad_address_is_named(check_leaks):
    with pytest.raises(ValueError, match="dashboard_address 'nonsense'"):
        LocalCluster(n_workers=1, processes=False, dashboard_address="nonsense")


def test_cli_scheduler_serves_dashboard_and_remote_client_links_it(check_leaks, tmp_path):
    with cli_scheduler(tmp_path, "--dashboard-address", "127.0.0.1:0") as (proc, address, _), \
            cli_worker(tmp_path, address, "--no-nanny", "--dashboard-address", "127.0.0.1:0"):
        with Client(address) as client:
            client.wait_for_workers(1)
            link = client.dashboard_link
            assert link.startswith("http://127.0.0.1:") and link.endswith("/status")
            assert _get(_base(link) + "/health") == "ok"
            worker = next(iter(client.scheduler_info()["workers"]))
            m = _metrics(_base(link) + "/metrics")
            assert m[("dask_scheduler_workers", ())] == 1
            info = _get(_base(link) + "/info")
            assert worker in info and "/metrics" in info


def test_cli_no_dashboard(check_leaks, tmp_path):
    with cli_scheduler(tmp_path, "--no-dashboard") as (proc, address, _):
        with Client(address) as client:
            assert client.dashboard_link is None


def test_task_stream_rows_stay_one_per_thread_slot(dash_client):
    # trio's thread cache replaces idle threads: new thread ids must take over
    # lanes, not add rows for as long as the cluster runs
    from trioflow.dashboard.feed import SchedulerFeed
    scheduler = dash_client.cluster.scheduler
    feed = SchedulerFeed(scheduler)
    worker = next(iter(scheduler.state.workers))
    rows = {feed._row(worker, thread_id) for thread_id in range(100, 120)}
    assert len(rows) == scheduler.state.workers[worker].nthreads == 2
    assert feed._row(worker, "transfer") not in rows

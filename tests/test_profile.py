"""Client.profile: sampled call stacks of tasks and of the servers, in dask's
tree format."""
from __future__ import annotations

import gc
import sys
import time

import pytest

from trioflow import Client
from trioflow.profiling import Profiler, add, merge, new_tree, stack
import _tasks
from _tasks import hold_marker_until_profiled, inc, slow_inc, spin_for, spin_until_profiled
from _util import wait_until

pytestmark = pytest.mark.timeout(120)


def _names(tree) -> set:
    out = set()
    for child in tree["children"].values():
        out.add(child["description"]["name"])
        out |= _names(child)
    return out


def _consistent(tree) -> bool:
    """Every node counts at least the samples of its children."""
    return all(child["count"] <= tree["count"] and _consistent(child)
               for child in tree["children"].values())


def test_a_profile_counts_stacks_into_a_tree_by_cycle_and_prefix():
    now = [1000.0]
    profiler = Profiler(cycle=1.0, history=3, clock=lambda: now[0])

    def here():
        return stack(sys._getframe())

    profiler.record("inc", here())
    profiler.record("inc", here())
    profiler.record(None, here())
    now[0] += 1.5
    profiler.record("add", here())
    assert profiler.get()["count"] == 3
    assert profiler.get(key="inc")["count"] == 2
    assert profiler.get(server=True)["count"] == 1
    assert profiler.get(start=1001.2)["count"] == 1  # only the second cycle
    assert profiler.get(stop=1000.5)["count"] == 2
    tree = profiler.get()
    assert "here" in _names(tree) and _consistent(tree)
    for _ in range(4):  # old cycles fall out of the history
        now[0] += 1.5
        profiler.record("later", here())
    assert profiler.get(key="inc")["count"] == 0

    one, two = new_tree(), new_tree()
    add(one, here())
    add(two, here())
    add(two, here())
    merged = merge(one, two)
    assert merged["count"] == 3 and one["count"] == 1 and _consistent(merged)


def test_stack_leaves_out_the_frames_from_the_boundary_outwards():
    def inner():
        return stack(sys._getframe(), boundary=outer.__code__)

    def outer():
        return inner()

    frames = outer()
    assert [f.f_code.co_name for f in frames] == ["inner"]
    assert stack(sys._getframe(), boundary=outer.__code__) is None  # not inside outer


def _profile_of_spinning_tasks(client):
    futures = client.map(spin_until_profiled, [5] * 4, pure=False)
    slow = client.submit(slow_inc, 1, delay=0.4)
    assert all(seen >= 5 for seen in client.gather(futures))
    slow.result(timeout=30)
    return client.profile()


def _check_profiles(client):
    started = time.time()
    tree = _profile_of_spinning_tasks(client)
    names = _names(tree)
    assert {"spin_until_profiled", "spin_for"} <= names and _consistent(tree)
    # only the tasks' own frames, not the worker's threads around them
    assert not any(name in names for name in ("_run_in_thread", "_bootstrap", "_loop"))
    spin_only = client.profile(key="spin_until_profiled")
    assert "spin_for" in _names(spin_only) and "slow_inc" not in _names(spin_only)
    assert client.profile(key="no_such_prefix")["count"] == 0
    assert client.profile(start=time.time() + 60)["count"] == 0
    assert client.profile(start=started - 1, stop=time.time() + 1)["count"] > 0
    per_worker = client.profile(merge_workers=False)
    assert set(per_worker) == set(client.nthreads())
    assert sum(t["count"] for t in per_worker.values()) == tree["count"]
    (first,) = sorted(client.nthreads())[:1]
    assert set(client.profile(workers=[first], merge_workers=False)) == {first}
    wait_until(lambda: client.profile(server=True)["count"] > 0, timeout=30,
               message="worker event loops sampled")
    wait_until(lambda: client.profile(scheduler=True)["count"] > 0, timeout=30,
               message="scheduler event loop sampled")
    plotted, document = client.profile(plot=True)
    assert plotted["count"] > 0 and document.startswith("<!doctype html>")
    assert '<canvas id="profile">' in document and "spin_until_profiled" in document


@pytest.mark.parametrize("processes", [False, True])
def test_profile_of_tasks_and_servers(check_leaks, monkeypatch, processes):
    monkeypatch.setenv("TRIOFLOW_PROFILE_SERVERS", "1")
    with Client(processes=processes, n_workers=2, threads_per_worker=1,
                dashboard_address=None) as client:
        client.wait_for_workers(2, timeout=30)
        _check_profiles(client)


def test_server_profiles_are_off_unless_asked_for(inproc_client):
    # sampling the event loops costs latency: tasks are profiled, loops not
    futures = inproc_client.map(spin_until_profiled, [3] * 2, pure=False)
    assert all(seen >= 3 for seen in inproc_client.gather(futures))
    assert "spin_for" in _names(inproc_client.profile())
    with pytest.raises(RuntimeError, match="TRIOFLOW_PROFILE_SERVERS=1"):
        inproc_client.profile(server=True)
    with pytest.raises(RuntimeError, match="TRIOFLOW_PROFILE_SERVERS=1"):
        inproc_client.profile(scheduler=True)


def test_sampling_can_be_turned_off_and_refuses_a_bad_interval(check_leaks, monkeypatch):
    monkeypatch.setenv("TRIOFLOW_PROFILE_INTERVAL", "0")
    with Client(processes=False, n_workers=1, threads_per_worker=1,
                dashboard_address=None) as client:
        client.gather(client.map(spin_for, [0.2] * 2, pure=False))
        assert client.profile()["count"] == 0
        assert client.submit(inc, 1).result(timeout=10) == 2
    monkeypatch.setenv("TRIOFLOW_PROFILE_INTERVAL", "often")
    with pytest.raises(ValueError, match="TRIOFLOW_PROFILE_INTERVAL"):
        Client(processes=False, n_workers=1, dashboard_address=None)


def test_sampling_keeps_no_task_frame_alive(inproc_client):
    # a frame kept by the sampler past its sample would keep the task's
    # locals alive: here a Marker, in real use a Sub, a lock, a large array
    _tasks.MARKERS.clear()
    assert inproc_client.submit(hold_marker_until_profiled, pure=False).result(timeout=60)
    assert len(_tasks.MARKERS) == 1

    def gone():
        gc.collect()
        return _tasks.MARKERS[0]() is None

    wait_until(gone, timeout=10, message="the task's locals were freed")

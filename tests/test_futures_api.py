"""The futures API through the blocking client.

Errors and retries, cancellation and release, waiting (wait, as_completed,
done callbacks, fire_and_forget), progress, every documented keyword of the
calls in spec/002, and cluster management (replicate, rebalance, restart,
the executor, shutdown).  The async faces of the same calls are in
test_async_client.py, dask collections in test_collections.py.
"""

import concurrent.futures
import gc
import io
import os
import pathlib
import threading
import traceback
import types

import pytest
import sniffio

import trioflow
from trioflow import (
    CancelledError,
    Client,
    Future,
    LocalCluster,
    as_completed,
    fire_and_forget,
    wait,
)
from _tasks import (
    add,
    append_line,
    divide,
    double,
    flaky_inc,
    getpid,
    identity,
    inc,
    wait_for_path,
)
from _util import barrier, key_is_forgotten, scheduler_address, wait_until


# --- task functions (in-process workers import them from this module) ----------


def _parse_setting(text):
    return int(text)


def load_setting(text):
    """Fails inside a helper, so the remote traceback has two of our frames."""
    return _parse_setting(text)


def write_marker(path, *dependencies):
    pathlib.Path(path).write_text("ran")
    return path


# --- helpers ------------------------------------------------------------------


def scheduler_task_count(client):
    return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.state.tasks))


def wait_forgotten(client, key, timeout=10):
    wait_until(lambda: key_is_forgotten(client, key), timeout, message=f"{key} forgotten")


def two_workers(client):
    workers = sorted(client.nthreads())
    assert len(workers) == 2, workers
    return workers


class Recorder:
    """A done-callback that records each call and where it ran."""

    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, future):
        try:
            library = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            library = None
        with self.lock:
            self.calls.append((future, threading.current_thread(), library))

    def wait_for(self, n, timeout=10):
        wait_until(lambda: len(self.calls) >= n, timeout, message=f"{n} callback call(s)")


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


# --- 2. errors and retries ----------------------------------------------------


def test_exception_returns_the_task_exception_and_none_when_it_finished(inproc_client):
    failing = inproc_client.submit(load_setting, "not a number")
    finishing = inproc_client.submit(load_setting, "12")
    error = failing.exception(timeout=10)
    assert isinstance(error, ValueError)
    assert "not a number" in str(error)
    assert failing.status == "error"
    assert finishing.exception(timeout=10) is None
    assert finishing.traceback(timeout=10) is None
    assert finishing.result() == 12


def test_traceback_is_a_traceback_object_with_the_task_frames(inproc_client):
    failing = inproc_client.submit(load_setting, "x")
    tb = failing.traceback(timeout=10)
    assert isinstance(tb, types.TracebackType)
    frames = traceback.format_tb(tb)
    text = "".join(frames)
    assert "load_setting" in text and "_parse_setting" in text
    # the innermost frame is where the error was raised
    assert "_parse_setting" in frames[-1]
    names = [frame.name for frame in traceback.extract_tb(tb)]
    assert names.index("load_setting") < names.index("_parse_setting")


def test_result_reraises_the_exception_with_its_remote_traceback(inproc_client):
    failing = inproc_client.submit(load_setting, "x")
    with pytest.raises(ValueError, match="invalid literal") as info:
        failing.result(timeout=10)
    assert "_parse_setting" in "".join(traceback.format_tb(info.value.__traceback__))


def test_exception_and_traceback_time_out(inproc_client, tmp_path):
    release = tmp_path / "release"
    try:
        blocked = inproc_client.submit(wait_for_path, str(release))
        with pytest.raises(trioflow.TimeoutError):
            blocked.exception(timeout=0.1)
        with pytest.raises(trioflow.TimeoutError):
            blocked.traceback(timeout=0.1)
    finally:
        release.touch()
    assert blocked.exception(timeout=10) is None


def test_retries_rerun_a_failing_task_until_it_succeeds(inproc_client, tmp_path):
    counter = tmp_path / "attempts"
    future = inproc_client.submit(flaky_inc, str(counter), 2, 10, retries=2)
    assert future.result(timeout=10) == 11
    assert counter.read_text() == "3"


def test_retries_apply_to_each_task_of_map(inproc_client, tmp_path):
    counters = [str(tmp_path / f"attempts-{i}") for i in range(3)]
    futures = inproc_client.map(flaky_inc, counters, [1] * 3, range(3), retries=1)
    assert inproc_client.gather(futures) == [1, 2, 3]
    assert all(pathlib.Path(c).read_text() == "2" for c in counters)


def test_too_few_retries_raise_the_last_error(inproc_client, tmp_path):
    counter = tmp_path / "attempts"
    future = inproc_client.submit(flaky_inc, str(counter), 3, 0, retries=1)
    with pytest.raises(RuntimeError, match="attempt 2"):
        future.result(timeout=10)


def test_client_retry_reruns_an_erred_future(inproc_client, tmp_path):
    counter = tmp_path / "attempts"
    future = inproc_client.submit(flaky_inc, str(counter), 1, 1)
    assert isinstance(future.exception(timeout=10), RuntimeError)
    inproc_client.retry([future])
    assert future.result(timeout=10) == 2
    assert future.status == "finished"


def test_future_retry_reruns_it(inproc_client, tmp_path):
    counter = tmp_path / "attempts"
    future = inproc_client.submit(flaky_inc, str(counter), 1, 5)
    with pytest.raises(RuntimeError):
        future.result(timeout=10)
    future.retry()
    assert future.result(timeout=10) == 6


def test_retry_of_a_dependent_reruns_the_failed_dependency(inproc_client, tmp_path):
    counter = tmp_path / "attempts"
    root = inproc_client.submit(flaky_inc, str(counter), 1, 1)
    dependent = inproc_client.submit(inc, root)
    with pytest.raises(RuntimeError):
        dependent.result(timeout=10)
    inproc_client.retry([dependent])
    assert dependent.result(timeout=10) == 3
    assert root.result(timeout=10) == 2


def test_gather_errors_skip_leaves_out_erred_futures(inproc_client):
    good = inproc_client.map(inc, range(3))
    bad = inproc_client.submit(divide, 1, 0)
    assert inproc_client.gather([good[0], bad, good[1], good[2]], errors="skip") == [1, 2, 3]
    assert inproc_client.gather({"a": good[0], "b": bad}, errors="skip") == {"a": 1}
    with pytest.raises(ZeroDivisionError):
        inproc_client.gather([good[0], bad], errors="raise")
    with pytest.raises(ValueError):
        inproc_client.gather(good, errors="ignore")


# --- 3. cancellation and release -----------------------------------------------


def test_future_cancel_makes_result_raise_cancelled_error(inproc_client, tmp_path):
    release = tmp_path / "release"
    try:
        future = inproc_client.submit(wait_for_path, str(release))
        future.cancel()
        assert future.cancelled()
        assert future.done()
        assert future.status == "cancelled"
        with pytest.raises(CancelledError, match=future.key):
            future.result(timeout=10)
        with pytest.raises(CancelledError):
            inproc_client.gather([future])
    finally:
        release.touch()


def test_client_cancel_takes_collections_of_futures(inproc_client, tmp_path):
    release = tmp_path / "release"
    try:
        futures = [inproc_client.submit(wait_for_path, str(release), i) for i in range(3)]
        inproc_client.cancel({"a": futures[0], "rest": futures[1:]})
        assert all(f.cancelled() for f in futures)
    finally:
        release.touch()


def test_cancelled_task_waiting_on_a_dependency_never_runs(inproc_client, tmp_path):
    release, marker = tmp_path / "release", tmp_path / "marker"
    try:
        dependency = inproc_client.submit(wait_for_path, str(release))
        waiting = inproc_client.submit(write_marker, str(marker), dependency)
        waiting.cancel()
    finally:
        release.touch()
    assert dependency.result(timeout=10) is True
    # a task submitted after the cancelled one on the same input has run
    # once this finishes; the scheduler has then handled the cancellation
    later = inproc_client.submit(identity, dependency)
    assert later.result(timeout=10) is True
    barrier(inproc_client)
    assert not marker.exists()
    with pytest.raises(CancelledError):
        waiting.result(timeout=10)


def test_dependents_of_a_cancelled_future_are_cancelled(inproc_client, tmp_path):
    release = tmp_path / "release"
    try:
        root = inproc_client.submit(wait_for_path, str(release))
        child = inproc_client.submit(identity, root)
        grandchild = inproc_client.submit(inc, child, pure=False)
        unrelated = inproc_client.submit(inc, 1)
        root.cancel()
        wait_until(lambda: child.cancelled() and grandchild.cancelled(),
                   message="dependents cancelled")
        for future in (child, grandchild):
            with pytest.raises(CancelledError):
                future.result(timeout=10)
        assert unrelated.result(timeout=10) == 2
    finally:
        release.touch()


def test_cancel_without_force_leaves_other_clients_futures(inproc_client, tmp_path):
    release = tmp_path / "release"
    with Client(scheduler_address(inproc_client), set_as_default=False) as other:
        try:
            mine = inproc_client.submit(wait_for_path, str(release))
            theirs = other.submit(wait_for_path, str(release))
            assert mine.key == theirs.key
            barrier(other)  # the scheduler knows both clients want the key
            inproc_client.cancel([mine])
            assert mine.cancelled()
            barrier(inproc_client)
            assert not theirs.cancelled()
        finally:
            release.touch()
        assert theirs.result(timeout=10) is True


def test_cancel_with_force_cancels_for_every_client(inproc_client, tmp_path):
    release = tmp_path / "release"
    with Client(scheduler_address(inproc_client), set_as_default=False) as other:
        try:
            mine = inproc_client.submit(wait_for_path, str(release))
            theirs = other.submit(wait_for_path, str(release))
            barrier(other)  # the scheduler knows both clients want the key
            inproc_client.cancel([mine], force=True)
            wait_until(theirs.cancelled, message="other client's future cancelled")
            with pytest.raises(CancelledError):
                theirs.result(timeout=10)
        finally:
            release.touch()


def test_resubmitting_a_cancelled_key_runs_it_again(inproc_client, tmp_path):
    release = tmp_path / "release"
    try:
        first = inproc_client.submit(wait_for_path, str(release))
        first.cancel()
        again = inproc_client.submit(wait_for_path, str(release))
        assert again.key == first.key
        assert not again.cancelled()
    finally:
        release.touch()
    assert again.result(timeout=10) is True
    assert first.cancelled()


def test_release_lets_the_scheduler_forget_the_key(inproc_client):
    assert scheduler_task_count(inproc_client) == 0
    future = inproc_client.submit(inc, 1)
    future.result(timeout=10)
    key = future.key
    assert inproc_client.who_has()[key]
    assert scheduler_task_count(inproc_client) == 1
    future.release()
    wait_forgotten(inproc_client, key)
    wait_until(lambda: scheduler_task_count(inproc_client) == 0, message="no tasks left")


def test_key_is_forgotten_only_when_its_last_future_is_gone(inproc_client):
    first = inproc_client.submit(inc, 41)
    second = inproc_client.submit(inc, 41)
    third = Future(first.key, inproc_client)
    assert first.key == second.key == third.key
    assert third.result(timeout=10) == 42
    key = first.key
    del first, second
    gc.collect()
    barrier(inproc_client)
    assert inproc_client.who_has([third])[key]
    assert any(key in keys for keys in inproc_client.has_what().values())
    assert scheduler_task_count(inproc_client) == 1
    del third
    gc.collect()
    wait_forgotten(inproc_client, key)
    wait_until(lambda: scheduler_task_count(inproc_client) == 0, message="no tasks left")


def test_dropping_every_future_of_a_graph_forgets_all_of_it(inproc_client):
    first = inproc_client.submit(inc, 1)
    second = inproc_client.submit(double, first)
    third = inproc_client.submit(add, first, second)
    assert third.result(timeout=10) == 6
    del first, second, third
    gc.collect()
    wait_until(lambda: scheduler_task_count(inproc_client) == 0, message="graph forgotten")
    assert inproc_client.who_has() == {}
    assert all(not keys for keys in inproc_client.has_what().values())


# --- 4. waiting ---------------------------------------------------------------


def test_wait_all_completed_returns_done_and_not_done(inproc_client):
    futures = inproc_client.map(inc, range(5))
    result = wait(futures, timeout=10, return_when="ALL_COMPLETED")
    done, not_done = result
    assert done == set(futures) and not_done == set()
    assert result.done == done and result.not_done == not_done
    assert wait(futures[0]) == ({futures[0]}, set())
    assert wait([]) == (set(), set())


def test_wait_first_completed(inproc_client, tmp_path):
    release = tmp_path / "release"
    try:
        blocked = inproc_client.submit(wait_for_path, str(release))
        quick = inproc_client.submit(inc, 1)
        done, not_done = wait([blocked, quick], timeout=10, return_when="FIRST_COMPLETED")
        assert quick in done and not_done == {blocked}
    finally:
        release.touch()


def test_wait_first_exception(inproc_client, tmp_path):
    release = tmp_path / "release"
    try:
        blocked = inproc_client.submit(wait_for_path, str(release))
        quick = inproc_client.submit(inc, 1)
        quick.result(timeout=10)
        failing = inproc_client.submit(divide, 1, 0)
        done, not_done = wait([blocked, quick, failing], timeout=10,
                              return_when="FIRST_EXCEPTION")
        assert done == {quick, failing} and not_done == {blocked}
    finally:
        release.touch()
    # without a failure FIRST_EXCEPTION waits for everything
    futures = inproc_client.map(inc, range(3))
    assert wait(futures, timeout=10, return_when="FIRST_EXCEPTION") == (set(futures), set())


def test_wait_timeout_raises_timeout_error(inproc_client, tmp_path):
    release = tmp_path / "release"
    try:
        blocked = inproc_client.submit(wait_for_path, str(release))
        with pytest.raises(trioflow.TimeoutError):
            wait([blocked], timeout=0.1)
        with pytest.raises(TimeoutError):
            wait([blocked], timeout="100ms", return_when="FIRST_COMPLETED")
    finally:
        release.touch()
    with pytest.raises(ValueError):
        wait([blocked], return_when="SOMETIMES")


def test_as_completed_yields_futures_in_completion_order(inproc_client, tmp_path):
    paths = [tmp_path / name for name in "abc"]
    try:
        futures = [inproc_client.submit(wait_for_path, str(p)) for p in paths]
        seq = as_completed(futures)
        order = []
        for index in (1, 2, 0):
            paths[index].touch()
            order.append(next(seq))
        assert order == [futures[1], futures[2], futures[0]]
        with pytest.raises(StopIteration):
            next(seq)
    finally:
        for p in paths:
            p.touch()


def test_as_completed_with_results(inproc_client):
    futures = inproc_client.map(inc, range(5))
    pairs = list(as_completed(futures, with_results=True))
    assert sorted(result for _, result in pairs) == [1, 2, 3, 4, 5]
    assert {future for future, _ in pairs} == set(futures)
    assert all(future.result() == result for future, result in pairs)


def test_as_completed_raise_errors(inproc_client):
    good = inproc_client.submit(inc, 1)
    bad = inproc_client.submit(divide, 1, 0)
    with pytest.raises(ZeroDivisionError):
        list(as_completed([good, bad], with_results=True))
    pairs = dict(as_completed([good, bad], with_results=True, raise_errors=False))
    assert pairs[good] == 2
    assert isinstance(pairs[bad], ZeroDivisionError)
    # without results, erred futures are simply yielded
    assert set(as_completed([good, bad])) == {good, bad}


def test_as_completed_add_while_iterating(inproc_client):
    seq = as_completed(inproc_client.map(inc, [1, 2, 3]))
    results = []
    for future in seq:
        value = future.result()
        results.append(value)
        if value < 20:
            seq.add(inproc_client.submit(double, future))
    # each chain doubles until it reaches 20 or more
    assert sorted(results) == sorted([2, 4, 8, 16, 32, 3, 6, 12, 24, 4, 8, 16, 32])


def test_as_completed_update_count_len_and_is_empty(inproc_client, tmp_path):
    release = tmp_path / "release"
    seq = as_completed()
    assert seq.is_empty() and seq.count() == 0 and len(seq) == 0
    try:
        blocked = inproc_client.submit(wait_for_path, str(release))
        seq.update([blocked] + inproc_client.map(inc, range(3)))
        assert seq.count() == 4 and len(seq) == 4 and not seq.is_empty()
        for _ in range(3):
            assert next(seq) is not blocked
        assert seq.count() == 1
    finally:
        release.touch()
    assert next(seq) is blocked
    assert seq.is_empty() and len(seq) == 0


def test_as_completed_next_batch_and_batches(inproc_client, tmp_path):
    futures = inproc_client.map(inc, range(6))
    wait(futures, timeout=10)
    seq = as_completed(futures)
    first = seq.next_batch(block=True)
    rest = [f for batch in seq.batches() for f in batch]
    assert first and set(first) | set(rest) == set(futures)
    assert len(first) + len(rest) == 6
    assert seq.next_batch(block=False) == []

    release = tmp_path / "release"
    try:
        blocked = inproc_client.submit(wait_for_path, str(release))
        seq = as_completed([blocked])
        assert seq.next_batch(block=False) == []
    finally:
        release.touch()
    assert seq.next_batch(block=True) == [blocked]

    pairs = [pair for batch in as_completed(futures, with_results=True).batches()
             for pair in batch]
    assert sorted(value for _, value in pairs) == [1, 2, 3, 4, 5, 6]


def test_add_done_callback_runs_once_off_the_event_loop(inproc_client, tmp_path):
    release = tmp_path / "release"
    recorder = Recorder()
    try:
        future = inproc_client.submit(wait_for_path, str(release))
        future.add_done_callback(recorder)
        assert recorder.calls == []
    finally:
        release.touch()
    recorder.wait_for(1)
    (called_with, thread, library), = recorder.calls
    assert called_with is future
    assert called_with.done() and called_with.status == "finished"
    assert thread is not threading.main_thread()
    assert library is None  # a plain thread, not the client's trio loop
    # a callback added after completion runs as well; the first ran only once
    late = Recorder()
    future.add_done_callback(late)
    late.wait_for(1)
    assert [call[0] for call in late.calls] == [future]
    assert len(recorder.calls) == 1


def test_add_done_callback_on_erred_and_cancelled_futures(inproc_client, tmp_path):
    recorder = Recorder()
    failing = inproc_client.submit(divide, 1, 0)
    failing.add_done_callback(recorder)
    recorder.wait_for(1)
    release = tmp_path / "release"
    try:
        blocked = inproc_client.submit(wait_for_path, str(release))
        blocked.add_done_callback(recorder)
        blocked.cancel()
        recorder.wait_for(2)
    finally:
        release.touch()
    statuses = {future.key: future.status for future, _, _ in recorder.calls}
    assert statuses == {failing.key: "error", blocked.key: "cancelled"}


def test_a_failing_callback_does_not_stop_the_others(inproc_client):
    def broken(future):
        raise RuntimeError("broken callback")

    recorder = Recorder()
    future = inproc_client.submit(inc, 1)
    future.add_done_callback(broken)
    future.add_done_callback(recorder)
    recorder.wait_for(1)
    assert future.result(timeout=10) == 2


def test_fire_and_forget_runs_after_the_future_and_the_client_are_gone(tmp_path):
    release, marker = tmp_path / "release", tmp_path / "marker"
    with LocalCluster(processes=False, n_workers=2, threads_per_worker=2) as cluster:
        try:
            with Client(cluster, set_as_default=False) as client:
                dependency = client.submit(wait_for_path, str(release))
                task = client.submit(write_marker, str(marker), dependency)
                fire_and_forget(task)
                del dependency, task
                gc.collect()
                barrier(client)
            assert not marker.exists()
        finally:
            release.touch()
        wait_until(marker.exists, message="fire-and-forget task wrote its marker")
        with Client(cluster, set_as_default=False) as observer:
            # the result was not kept: nobody holds a future for it
            wait_until(lambda: scheduler_task_count(observer) == 0, message="tasks forgotten")


def test_dropped_future_without_fire_and_forget_does_not_run(inproc_client, tmp_path):
    release, marker = tmp_path / "release", tmp_path / "marker"
    try:
        dependency = inproc_client.submit(wait_for_path, str(release))
        inproc_client.submit(write_marker, str(marker), dependency)  # dropped at once
    finally:
        release.touch()
    assert dependency.result(timeout=10) is True
    assert inproc_client.submit(identity, dependency).result(timeout=10) is True
    barrier(inproc_client)
    assert not marker.exists()


def test_fire_and_forget_accepts_collections(inproc_client, tmp_path):
    out = tmp_path / "out"
    futures = {"one": inproc_client.submit(append_line, str(out), "one"),
               "more": [inproc_client.submit(append_line, str(out), w) for w in ("two", "three")]}
    fire_and_forget(futures)
    del futures
    gc.collect()
    wait_until(lambda: out.exists() and len(out.read_text().split()) == 3,
               message="three lines written")
    assert sorted(out.read_text().split()) == ["one", "three", "two"]


# --- 6. progress --------------------------------------------------------------


def test_progress_prints_plain_lines_when_stdout_is_not_a_terminal(inproc_client, capsys):
    futures = inproc_client.map(inc, range(10))
    assert trioflow.progress(futures) is None
    assert all(f.done() for f in futures)
    out = capsys.readouterr().out
    assert "\r" not in out
    assert out.splitlines()[-1].startswith("progress: 100% | 10/10")


def test_progress_counts_erred_futures(inproc_client, capsys):
    futures = inproc_client.map(inc, range(3)) + [inproc_client.submit(divide, 1, 0)]
    trioflow.progress(futures)
    last = capsys.readouterr().out.splitlines()[-1]
    assert "4/4" in last and "1 erred" in last


def test_progress_draws_a_live_bar_on_a_terminal(inproc_client, tmp_path):
    paths = [tmp_path / f"release-{i}" for i in range(3)]
    terminal = FakeTerminal()
    try:
        futures = [inproc_client.submit(wait_for_path, str(p)) for p in paths]
        follower = threading.Thread(
            target=trioflow.progress, args=(futures,),
            kwargs={"file": terminal, "interval": 0.02, "width": 30})
        follower.start()
        wait_until(lambda: "0/3" in terminal.getvalue(), message="bar drawn at 0/3")
        paths[0].touch()
        wait_until(lambda: "1/3" in terminal.getvalue(), message="bar redrawn at 1/3")
        assert not terminal.getvalue().endswith("\n")
    finally:
        for p in paths:
            p.touch()
        follower.join(timeout=20)
    assert not follower.is_alive()
    text = terminal.getvalue()
    assert text.startswith("\r[")
    assert "[" + "#" * 30 + "] 100% | 3/3" in text
    assert text.endswith("\n")


def test_progress_of_nothing_returns_at_once(inproc_client, capsys):
    assert trioflow.progress([]) is None
    done = inproc_client.submit(inc, 1)
    done.result(timeout=10)
    trioflow.progress(done, complete=False)
    assert "progress" not in capsys.readouterr().out


# --- 7. every documented keyword is accepted ----------------------------------------


def test_every_documented_keyword_is_accepted(inproc_client, tmp_path):
    c = inproc_client
    worker_a, worker_b = two_workers(c)

    future = c.submit(inc, 1, key="inc-keywords", workers=[worker_a], resources=None,
                      retries=1, priority=1, fifo_timeout="100 ms", allow_other_workers=True,
                      actor=False, actors=False, pure=True)
    futures = c.map(inc, [1, 2], key="map-keywords", workers=[worker_a, worker_b],
                    retries=1, resources=None, priority=0, allow_other_workers=False,
                    fifo_timeout="100 ms", actor=False, actors=False, pure=False, batch_size=1)
    assert c.gather(futures, errors="raise", direct=None, asynchronous=None) == [2, 3]
    assert future.result(timeout=10) == 2

    scattered = c.scatter([10, 20], workers=[worker_b], broadcast=False, direct=None,
                          hash=False, timeout=10, asynchronous=None)
    assert c.gather(scattered) == [10, 20]

    assert c.get({"x": (inc, 1)}, "x", workers=None, allow_other_workers=None, resources=None,
                 sync=True, asynchronous=None, direct=None, retries=None, priority=0,
                 fifo_timeout="60s", actors=None) == 2

    import dask

    delayed = dask.delayed(inc)(5)
    computed = c.compute(delayed, sync=False, optimize_graph=True, workers=None,
                         allow_other_workers=False, resources=None, retries=0, priority=0,
                         fifo_timeout="60s", actors=None, traverse=True)
    assert computed.result(timeout=10) == 6
    persisted = c.persist(delayed, optimize_graph=True, workers=None,
                          allow_other_workers=None, resources=None, retries=None,
                          priority=0, fifo_timeout="60s", actors=None)
    assert persisted.compute() == 6

    assert set(c.who_has(futures=[future])) == {future.key}
    assert set(c.has_what(workers=[worker_a])) == {worker_a}
    assert c.nthreads(workers=[worker_a]) == {worker_a: 2}
    assert c.ncores(workers=[worker_b]) == {worker_b: 2}
    assert set(c.scheduler_info()["workers"]) == {worker_a, worker_b}
    assert c.run(getpid, workers=[worker_a], wait=True, nanny=False) == {worker_a: os.getpid()}
    assert c.run_on_scheduler(add, 1, 2) == 3
    c.wait_for_workers(n_workers=2, timeout=10)

    c.replicate(futures=[future], n=2, workers=[worker_a, worker_b], branching_factor=2)
    c.rebalance(futures=futures, workers=[worker_a, worker_b])

    with c.get_executor(workers=[worker_a], retries=1) as executor:
        assert executor.submit(inc, 1).result(timeout=10) == 2

    failing = c.submit(divide, 1, 0)
    failing.exception(timeout=10)
    c.retry(futures=[failing], asynchronous=None)
    failing.retry()
    assert isinstance(failing.exception(timeout=10), ZeroDivisionError)
    assert failing.traceback(timeout=10) is not None
    c.cancel(futures=[failing], asynchronous=None, force=False)
    c.submit(inc, 100).cancel(force=True)

    same = Future(future.key, client=c, inform=True, state=None)
    assert same.result(timeout=10) == 2
    assert Future(future.key, c, False).result(timeout=10) == 2
    same.add_done_callback(fn=lambda f: None)

    assert wait(fs=futures, timeout=10, return_when="ALL_COMPLETED")[1] == set()
    seq = as_completed(futures=futures, loop=None, with_results=True, raise_errors=True)
    assert sorted(value for _, value in seq) == [2, 3]
    fire_and_forget(obj=c.submit(inc, 7))
    trioflow.progress(futures, notebook=False, multi=True, complete=True, group_by="prefix",
                      interval="50ms", file=io.StringIO())
    assert c.dashboard_link is None


def test_client_constructor_keywords_are_accepted(inproc_client, tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    inproc_client.write_scheduler_file(str(scheduler_file))
    with Client(address=None, loop=None, timeout=10, set_as_default=False,
                scheduler_file=str(scheduler_file), security=None, asynchronous=False,
                name="keywords", heartbeat_interval=1000, serializers=None, deserializers=None,
                extensions=None, direct_to_workers=True, connection_limit=512) as client:
        assert client.submit(inc, 1).result(timeout=10) == 2
    client.close(timeout=10)


# --- 8. cluster management ------------------------------------------------------


def test_replicate_copies_data_to_n_workers_then_to_all(inproc_client):
    worker_a, worker_b = two_workers(inproc_client)
    future = inproc_client.submit(inc, 1, workers=[worker_a])
    future.result(timeout=10)
    assert inproc_client.who_has([future])[future.key] == [worker_a]
    inproc_client.replicate([future], n=1)
    assert inproc_client.who_has([future])[future.key] == [worker_a]
    inproc_client.replicate([future])
    assert sorted(inproc_client.who_has([future])[future.key]) == [worker_a, worker_b]
    assert all(future.key in keys for keys in inproc_client.has_what().values())
    assert future.result(timeout=10) == 2


def test_replicate_onto_chosen_workers(inproc_client):
    worker_a, worker_b = two_workers(inproc_client)
    futures = inproc_client.map(inc, range(3), workers=[worker_a])
    wait(futures, timeout=10)
    inproc_client.replicate(futures, n=1, workers=[worker_b])
    who_has = inproc_client.who_has(futures)
    assert all(sorted(who_has[f.key]) == [worker_a, worker_b] for f in futures)


def test_rebalance_spreads_data_over_the_workers(inproc_client):
    worker_a, worker_b = two_workers(inproc_client)
    futures = inproc_client.map(inc, range(10), workers=[worker_a])
    wait(futures, timeout=10)
    assert len(inproc_client.has_what()[worker_b]) == 0
    inproc_client.rebalance(futures)
    has_what = inproc_client.has_what()
    assert len(has_what[worker_a]) > 0 and len(has_what[worker_b]) > 0
    assert inproc_client.gather(futures) == list(range(1, 11))


def test_scheduler_info_and_dashboard_link(inproc_client):
    info = inproc_client.scheduler_info()
    assert info["type"] == "Scheduler"
    assert info["address"] == inproc_client.scheduler_address
    assert set(info["workers"]) == set(inproc_client.nthreads())
    for worker in info["workers"].values():
        assert worker["nthreads"] == 2
    assert inproc_client.dashboard_link is None


def test_get_executor_is_a_concurrent_futures_executor(inproc_client):
    executor = inproc_client.get_executor()
    assert isinstance(executor, concurrent.futures.Executor)
    future = executor.submit(add, 1, y=2)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=10) == 3
    assert list(executor.map(inc, range(5), timeout=10)) == [1, 2, 3, 4, 5]
    failing = executor.submit(divide, 1, 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=10)
    done, _ = concurrent.futures.wait([executor.submit(inc, i) for i in range(3)], timeout=10)
    assert sorted(f.result() for f in done) == [1, 2, 3]
    executor.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        executor.submit(inc, 1)


def test_get_executor_passes_submit_keywords(inproc_client):
    worker_a, _ = two_workers(inproc_client)
    from trioflow import get_worker

    def where():
        return get_worker().address

    with inproc_client.get_executor(workers=[worker_a]) as executor:
        assert {f.result(timeout=10) for f in [executor.submit(where) for _ in range(4)]} == {
            worker_a}


def test_restart_cancels_every_future_with_a_clear_message(inproc_client, tmp_path):
    release = tmp_path / "release"
    try:
        finished = inproc_client.submit(inc, 1)
        finished.result(timeout=10)
        running = inproc_client.submit(wait_for_path, str(release))
        inproc_client.restart(timeout=30, wait_for_workers=True)
        assert finished.cancelled() and running.cancelled()
        with pytest.raises(CancelledError, match="restart"):
            finished.result(timeout=10)
        with pytest.raises(CancelledError, match="restart"):
            running.result(timeout=10)
    finally:
        release.touch()
    inproc_client.wait_for_workers(2, timeout=10)
    assert scheduler_task_count(inproc_client) == 0
    # the same computation can be submitted again
    assert inproc_client.submit(inc, 1).result(timeout=10) == 2


def test_processes_restart_replaces_the_worker_processes(proc_client):
    pids = set(proc_client.run(getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids
    future = proc_client.submit(inc, 1)
    future.result(timeout=30)
    proc_client.restart()
    with pytest.raises(CancelledError, match="restart"):
        future.result(timeout=10)
    proc_client.wait_for_workers(2, timeout=30)
    new_pids = set(proc_client.run(getpid).values())
    assert len(new_pids) == 2 and not (new_pids & pids)
    assert proc_client.submit(inc, 2).result(timeout=30) == 3


def test_shutdown_closes_the_cluster_and_the_client():
    cluster = LocalCluster(processes=False, n_workers=2, threads_per_worker=1)
    try:
        client = Client(cluster, set_as_default=False)
        assert client.submit(inc, 1).result(timeout=10) == 2
        client.shutdown()
        assert client.status == "closed"
        assert cluster.status == "closed"
    finally:
        cluster.close()


def test_shutdown_by_address_stops_the_scheduler():
    with LocalCluster(processes=False, protocol="ws", n_workers=1,
                      threads_per_worker=1) as cluster:
        address = cluster.scheduler_address
        client = Client(address, set_as_default=False)
        client.shutdown()
        assert client.status == "closed"
        with pytest.raises((trioflow.TimeoutError, trioflow.CommClosedError, OSError)):
            Client(address, timeout=2, set_as_default=False).close()

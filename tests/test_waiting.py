"""Waiting for futures: result(timeout=), wait (return_when, timeout),
as_completed (order, results, errors, adding, batches, ``async for``), done
callbacks, and progress (plain lines, a live bar, awaitable)."""

import datetime
import inspect
import io
import threading

import pytest
import sniffio

import trioflow
from trioflow import as_completed, wait
from trioflow.utils import parse_timedelta
from _tasks import (
    divide,
    double,
    inc,
    wait_for_path,
    wait_for_path_after,
)
from _util import async_client, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request):
    return request.param


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


# --- result(timeout=) and wait -------------------------------------------------------------


def test_result_timeout_raises_trioflow_timeout_error(face, tmp_path):
    assert issubclass(trioflow.TimeoutError, TimeoutError)
    release = tmp_path / "release"

    async def scenario(c):
        async with face.held_task(c, release) as future:
            with pytest.raises(trioflow.TimeoutError):
                await face(future.result(timeout=0.2))
        assert await face(future.result(timeout=10)) is True
    face.run(scenario)


#: what dask's parse_timedelta gives (distributed 2026.8.0): timeouts are read the same
DASK_DURATIONS = {"5": 5, 5: 5, 2.5: 2.5, "3s": 3, " 3 S ": 3, "100ms": 0.1, "10us": 1e-5,
                  "1ns": 1e-9, "1.5h": 5400, "1 hour": 3600, "2 minutes": 120, "hour": 3600,
                  "2 Seconds": 2, "1e3ms": 1, "1d": 86400, "1w": 604800,
                  datetime.timedelta(seconds=5): 5, datetime.timedelta(minutes=1.5): 90}


def test_timeouts_are_read_as_dask_reads_them(inproc_client):
    for value, seconds in DASK_DURATIONS.items():
        assert parse_timedelta(value) == pytest.approx(seconds), value
    for refused in ("0:00:05", "zz", "", "5 parsecs"):  # dask refuses these too
        with pytest.raises(ValueError, match="as a duration"):
            parse_timedelta(refused)
    future = inproc_client.submit(inc, 1)
    assert future.result(timeout=datetime.timedelta(seconds=10)) == 2
    assert future.result(timeout="2 minutes") == 2
    assert wait([future], timeout=datetime.timedelta(seconds=10)).done == {future}
    timed = inproc_client.submit(inc, 2, timeout=datetime.timedelta(minutes=1))
    assert timed.result(timeout="1 hour") == 3
    with pytest.raises(ValueError, match="timeout must not be negative"):
        inproc_client.submit(inc, 3, timeout=datetime.timedelta(seconds=-1))


def test_wait_return_when_and_timeout(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        futures = c.map(inc, range(3))
        done, not_done = await face(wait(futures, timeout=10))
        assert done == set(futures) and not not_done
        try:
            blocked = c.submit(wait_for_path_after, str(release))
            quick = c.submit(inc, 10)
            done, not_done = await face(wait([blocked, quick], return_when="FIRST_COMPLETED"))
            assert quick in done and blocked in not_done
            failing = c.submit(divide, 1, 0)
            done, not_done = await face(wait([blocked, failing], timeout=10,
                                             return_when="FIRST_EXCEPTION"))
            assert done == {failing} and not_done == {blocked}
            with pytest.raises(trioflow.TimeoutError):
                await face(wait([blocked], timeout=0.1))
        finally:
            release.touch()
        assert await face(wait([blocked], timeout=10)) == ({blocked}, set())
    face.run(scenario)


def test_wait_returns_done_and_not_done(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        futures = c.map(inc, range(5))
        done, not_done = await face(trioflow.wait(futures, timeout=10))
        assert done == set(futures) and not not_done

        try:
            blocked = c.submit(wait_for_path, str(release))
            quick = c.submit(inc, 100)
            done, not_done = await face(trioflow.wait(
                [blocked, quick], timeout=10, return_when="FIRST_COMPLETED"
            ))
            assert quick in done and blocked in not_done
            with pytest.raises(TimeoutError):
                await face(trioflow.wait([blocked], timeout=0.2))
        finally:
            release.touch()
        done, not_done = await face(trioflow.wait([blocked, quick], timeout=10))
        assert done == {blocked, quick} and not not_done
    face.run(scenario)


def test_wait_all_completed_returns_done_and_not_done(face):
    async def scenario(c):
        futures = c.map(inc, range(5))
        result = await face(wait(futures, timeout=10, return_when="ALL_COMPLETED"))
        done, not_done = result
        assert done == set(futures) and not_done == set()
        assert result.done == done and result.not_done == not_done
        assert await face(wait(futures[0])) == ({futures[0]}, set())
        assert await face(wait([])) == (set(), set())
    face.run(scenario)


def test_wait_first_completed(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        try:
            blocked = c.submit(wait_for_path, str(release))
            quick = c.submit(inc, 1)
            done, not_done = await face(wait([blocked, quick], timeout=10,
                                             return_when="FIRST_COMPLETED"))
            assert quick in done and not_done == {blocked}
        finally:
            release.touch()
    face.run(scenario)


def test_wait_first_exception(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        try:
            blocked = c.submit(wait_for_path, str(release))
            quick = c.submit(inc, 1)
            await face(quick.result(timeout=10))
            failing = c.submit(divide, 1, 0)
            done, not_done = await face(wait([blocked, quick, failing], timeout=10,
                                             return_when="FIRST_EXCEPTION"))
            assert done == {quick, failing} and not_done == {blocked}
        finally:
            release.touch()
        # without a failure FIRST_EXCEPTION waits for everything
        futures = c.map(inc, range(3))
        assert await face(wait(futures, timeout=10, return_when="FIRST_EXCEPTION")) == (
            set(futures), set())
    face.run(scenario)


def test_wait_timeout_raises_timeout_error(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        try:
            blocked = c.submit(wait_for_path, str(release))
            with pytest.raises(trioflow.TimeoutError):
                await face(wait([blocked], timeout=0.1))
            with pytest.raises(TimeoutError):
                await face(wait([blocked], timeout="100ms", return_when="FIRST_COMPLETED"))
        finally:
            release.touch()
        with pytest.raises(ValueError):
            await face(wait([blocked], return_when="SOMETIMES"))
    face.run(scenario)


# --- as_completed --------------------------------------------------------------------------


def test_as_completed_next_batch(face):
    async def scenario(c):
        futures = c.map(inc, range(4))
        await face(wait(futures))
        seq = as_completed(futures)
        seen = []
        while not seq.is_empty():
            seen.extend(await face(seq.next_batch(block=True)))
        assert set(seen) == set(futures) and len(seen) == 4
        assert await face(seq.next_batch(block=False)) == []
    face.run(scenario)


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


async def test_async_for_as_completed_in_completion_order(tmp_path):
    paths = [tmp_path / name for name in "abc"]
    async with async_client() as c:
        try:
            futures = [c.submit(wait_for_path, str(p)) for p in paths]
            seq = as_completed(futures)
            assert seq.count() == 3 and len(seq) == 3 and not seq.is_empty()
            order = []
            for index in (2, 0, 1):
                paths[index].touch()
                order.append(await seq.__anext__())
            assert order == [futures[2], futures[0], futures[1]]
            assert seq.is_empty()
            with pytest.raises(StopAsyncIteration):
                await seq.__anext__()
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


async def test_async_for_as_completed_with_results_and_adding():
    async with async_client() as c:
        seq = as_completed(c.map(inc, [1, 2]), with_results=True)
        results = []
        async for future, value in seq:
            results.append(value)
            if value < 10:
                seq.add(c.submit(double, future))
        assert sorted(results) == sorted([2, 4, 8, 16, 3, 6, 12])

        seq = as_completed()
        seq.update(c.map(inc, range(3)))
        assert seq.count() == 3
        assert sorted([await f async for f in seq]) == [1, 2, 3]
        assert seq.is_empty()
        good, bad = c.submit(inc, 1), c.submit(divide, 1, 0)
        with pytest.raises(ZeroDivisionError):
            async for _ in as_completed([good, bad], with_results=True):
                pass
        pairs = {f: v async for f, v in as_completed([good, bad], with_results=True,
                                                       raise_errors=False)}
        assert pairs[good] == 2 and isinstance(pairs[bad], ZeroDivisionError)


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


# --- done callbacks ------------------------------------------------------------------------


def test_add_done_callback_runs_in_a_thread_once(face, tmp_path):
    release = tmp_path / "release"
    calls = []

    def callback(future):
        try:
            library = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            library = None
        calls.append((future, threading.current_thread(), library))

    async def scenario(c):
        try:
            future = c.submit(wait_for_path_after, str(release))
            future.add_done_callback(callback)
        finally:
            release.touch()
        await face.result(future)
        await face.until(lambda: len(calls) == 1, message="callback called")
        (called_with, thread, library), = calls
        assert called_with is future and library is None
        assert thread is not threading.main_thread()
        late = []
        future.add_done_callback(late.append)
        await face.until(lambda: late == [future], message="late callback called")
        assert len(calls) == 1
    face.run(scenario)


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


# --- progress ------------------------------------------------------------------------------


def test_progress_prints_plain_lines_when_stdout_is_not_a_terminal(face, capsys):
    async def scenario(c):
        futures = c.map(inc, range(10))
        assert await face(trioflow.progress(futures)) is None
        assert all(f.done() for f in futures)
        out = capsys.readouterr().out
        assert "\r" not in out
        assert out.splitlines()[-1].startswith("progress: 100% | 10/10")
    face.run(scenario)


def test_progress_counts_erred_futures(face, capsys):
    async def scenario(c):
        futures = c.map(inc, range(3)) + [c.submit(divide, 1, 0)]
        await face(trioflow.progress(futures))
        last = capsys.readouterr().out.splitlines()[-1]
        assert "4/4" in last and "1 erred" in last
    face.run(scenario)


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


def test_progress_of_nothing_returns_at_once(face, capsys):
    async def scenario(c):
        assert await face(trioflow.progress([])) is None
        done = c.submit(inc, 1)
        await face(done.result(timeout=10))
        await face(trioflow.progress(done, complete=False))
        assert "progress" not in capsys.readouterr().out
    face.run(scenario)


async def test_progress_is_awaitable(capsys):
    async with async_client() as c:
        futures = c.map(inc, range(5)) + [c.submit(divide, 1, 0)]
        following = trioflow.progress(futures, interval=0.02)
        assert inspect.isawaitable(following)
        await following
        assert all(f.done() for f in futures)
        last = capsys.readouterr().out.splitlines()[-1]
        assert last.startswith("progress: 100% | 6/6") and "1 erred" in last

        terminal = FakeTerminal()
        await trioflow.progress(c.map(inc, range(10, 13)), file=terminal, interval=0.02)
        text = terminal.getvalue()
        assert text.startswith("\r[") and "3/3" in text and text.endswith("\n")

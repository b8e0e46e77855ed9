"""Cancellation: Future.cancel and Client.cancel (of collections, with and
without force across clients), CancelledError, a cancelled task that never
runs, dependents cancelled with it, and a cancelled key submitted again."""

import pytest

import trioflow
from trioflow import CancelledError, Client
from _tasks import (
    identity,
    inc,
    wait_for_path,
    wait_for_path_after,
    write_marker,
)
from _util import barrier, scheduler_address, wait_until


# --- every face ----------------------------------------------------------------------------


def test_cancel_and_cancelled_error(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        try:
            future = c.submit(wait_for_path_after, str(release))
            await face(future.cancel())
            assert future.cancelled() and future.done()
            with pytest.raises(CancelledError):
                await face.result(future)
            with pytest.raises(CancelledError):
                await face(future.result())
            others = [c.submit(wait_for_path_after, str(release), i) for i in range(2)]
            await face(c.cancel(others, force=True))
            assert all(f.cancelled() for f in others)
            resubmitted = c.submit(wait_for_path_after, str(release))
            assert not resubmitted.cancelled()
        finally:
            release.touch()
        assert await face.result(resubmitted) is True
    face.run(scenario)


def test_cancelled_waiting_task_never_runs_and_dependents_are_cancelled(face, tmp_path):
    release, marker = tmp_path / "release", tmp_path / "marker"

    async def scenario(c):
        try:
            dependency = c.submit(wait_for_path_after, str(release))
            waiting = c.submit(write_marker, str(marker), dependency)
            downstream = c.submit(inc, c.submit(len, waiting))
            await face(waiting.cancel())
            await face.until(downstream.cancelled, message="downstream cancelled")
        finally:
            release.touch()
        assert await face.result(dependency) is True
        later = c.submit(wait_for_path_after, str(release), dependency)
        assert await face.result(later) is True
        await face.barrier(c)
        assert not marker.exists()
        with pytest.raises(CancelledError):
            await face.result(downstream)
    face.run(scenario)


# --- the blocking client -------------------------------------------------------------------


def test_cancel_marks_future_cancelled(inproc_client, tmp_path):
    release = tmp_path / "release"
    try:
        future = inproc_client.submit(wait_for_path, str(release))
        future.cancel()
        wait_until(future.cancelled, message="future cancelled")
        assert future.status == "cancelled"
        with pytest.raises(trioflow.CancelledError):
            future.result(timeout=10)
    finally:
        release.touch()


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

"""Cancellation: Future.cancel and Client.cancel (of collections, with and
without force across clients), CancelledError, a cancelled task that never
runs, dependents cancelled with it, and a cancelled key submitted again."""

import pytest

import trioflow
from trioflow import CancelledError
from _tasks import (
    identity,
    inc,
    wait_for_path,
    wait_for_path_after,
    write_marker,
)


# --- every face: one scenario per behaviour (all of them run on all three) -----------------


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


def test_cancel_marks_future_cancelled(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        try:
            future = c.submit(wait_for_path, str(release))
            await face(future.cancel())
            await face.until(future.cancelled, message="future cancelled")
            assert future.status == "cancelled"
            with pytest.raises(trioflow.CancelledError):
                await face(future.result(timeout=10))
        finally:
            release.touch()
    face.run(scenario)


def test_future_cancel_makes_result_raise_cancelled_error(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        try:
            future = c.submit(wait_for_path, str(release))
            await face(future.cancel())
            assert future.cancelled()
            assert future.done()
            assert future.status == "cancelled"
            with pytest.raises(CancelledError, match=future.key):
                await face(future.result(timeout=10))
            with pytest.raises(CancelledError):
                await face(c.gather([future]))
        finally:
            release.touch()
    face.run(scenario)


def test_client_cancel_takes_collections_of_futures(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        try:
            futures = [c.submit(wait_for_path_after, str(release), i) for i in range(3)]
            await face(c.cancel({"a": futures[0], "rest": futures[1:]}))
            assert all(f.cancelled() for f in futures)
        finally:
            release.touch()
    face.run(scenario)


def test_cancelled_task_waiting_on_a_dependency_never_runs(face, tmp_path):
    release, marker = tmp_path / "release", tmp_path / "marker"

    async def scenario(c):
        try:
            dependency = c.submit(wait_for_path, str(release))
            waiting = c.submit(write_marker, str(marker), dependency)
            await face(waiting.cancel())
        finally:
            release.touch()
        assert await face(dependency.result(timeout=10)) is True
        # a task submitted after the cancelled one on the same input has run
        # once this finishes; the scheduler has then handled the cancellation
        later = c.submit(identity, dependency)
        assert await face(later.result(timeout=10)) is True
        await face.barrier(c)
        assert not marker.exists()
        with pytest.raises(CancelledError):
            await face(waiting.result(timeout=10))
    face.run(scenario)


def test_dependents_of_a_cancelled_future_are_cancelled(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        try:
            root = c.submit(wait_for_path, str(release))
            child = c.submit(identity, root)
            grandchild = c.submit(inc, child, pure=False)
            unrelated = c.submit(inc, 1)
            await face(root.cancel())
            await face.until(lambda: child.cancelled() and grandchild.cancelled(),
                             message="dependents cancelled")
            for future in (child, grandchild):
                with pytest.raises(CancelledError):
                    await face(future.result(timeout=10))
            assert await face(unrelated.result(timeout=10)) == 2
        finally:
            release.touch()
    face.run(scenario)


async def _both_clients_want_one_key(face, client, other, release):
    """Both clients submit the same task; returns once the scheduler knows both want it."""
    mine = client.submit(wait_for_path, str(release))
    theirs = other.submit(wait_for_path, str(release))
    await face.barrier(other)
    return mine, theirs


def test_cancel_without_force_leaves_other_clients_futures(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        async with face.other_client(c) as other:
            try:
                mine, theirs = await _both_clients_want_one_key(face, c, other, release)
                assert mine.key == theirs.key
                await face(c.cancel([mine]))
                assert mine.cancelled()
                await face.barrier(c)
                assert not theirs.cancelled()
            finally:
                release.touch()
            assert await face(theirs.result(timeout=10)) is True
    face.run(scenario)


def test_cancel_with_force_cancels_for_every_client(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        async with face.other_client(c) as other:
            try:
                mine, theirs = await _both_clients_want_one_key(face, c, other, release)
                await face(c.cancel([mine], force=True))
                await face.until(theirs.cancelled, message="other client's future cancelled")
                with pytest.raises(CancelledError):
                    await face(theirs.result(timeout=10))
            finally:
                release.touch()
    face.run(scenario)


def test_resubmitting_a_cancelled_key_runs_it_again(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        try:
            first = c.submit(wait_for_path, str(release))
            await face(first.cancel())
            again = c.submit(wait_for_path, str(release))
            assert again.key == first.key
            assert not again.cancelled()
        finally:
            release.touch()
        assert await face(again.result(timeout=10)) is True
        assert first.cancelled()
    face.run(scenario)

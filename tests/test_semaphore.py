"""Semaphore: a limit on holders on every face, from the client and from sync
and ``async def`` tasks, and leases given back when their caller gives up,
closes, or its process is killed."""

import pytest

from trioflow import Lock, Semaphore
from trioflow.errors import TrioflowError
from _faces import ASYNC_FACES
from _primitive_tasks import async_hold_exclusively, hold_exclusively
from _primitive_views import (
    cancelled_at_once,
    check_lease_of_a_killed_client_process_is_given_back,
    lease_state,
)


def test_semaphore_limits_holders(face):
    async def scenario(client):
        sem = Semaphore(max_leases=2, name="s-basic")
        assert await face(sem.acquire()) and await face(sem.acquire())
        assert await face(sem.get_value()) == 2
        assert await face(sem.acquire(timeout=0.05)) is False
        assert await face(lease_state(client, "s-basic", "semaphores")) == (2, 0)
        await face(sem.release())
        await face(sem.release())
        with pytest.raises(RuntimeError):
            await face(sem.release())
        if face.blocking:
            with sem:
                assert sem.get_value() == 1
        else:
            async with sem:
                assert await sem.get_value() == 1
        assert await face(sem.get_value()) == 0

        sem = Semaphore(max_leases=2)
        sync = client.map(hold_exclusively, [sem] * 6, ["s-count"] * 6, pure=False)
        asyn = client.map(async_hold_exclusively, [sem] * 6, ["s-count"] * 6, pure=False)
        assert max(await face(client.gather(sync + asyn))) <= 2
        assert await face(sem.get_value()) == 0
        await face(sem.close())
        with pytest.raises(TrioflowError):
            await face(sem.acquire())
    face.run(scenario)


@pytest.mark.parametrize("face", ASYNC_FACES, indirect=True)
def test_lease_granted_to_a_caller_that_gave_up_is_given_back(face):
    async def scenario(client):
        sem = Semaphore(max_leases=1, name="as-abandoned")
        assert await cancelled_at_once(sem.acquire())
        await face.until_equal(lambda: lease_state(client, "as-abandoned", "semaphores"),
                               (0, 0))
        assert await sem.acquire(timeout=5)
        await sem.release()
    face.run(scenario)


@pytest.mark.parametrize("face", ASYNC_FACES, indirect=True)
def test_leases_of_a_closing_client_are_given_back(face):
    async def scenario(client):
        sem = Semaphore(max_leases=1, name="as-closing")
        async with face.other_client(client) as other:
            assert await Semaphore(max_leases=1, name="as-closing", client=other).acquire()
            assert await Lock("al-holder", client=other).acquire()
            assert await sem.get_value() == 1
            assert await sem.acquire(timeout=0.05) is False
        assert await sem.acquire(timeout=10)
        assert not await Lock("al-holder").locked()
        await sem.release()
    face.run(scenario)


@pytest.mark.timeout(120)
def test_semaphore_of_a_killed_client_process_is_given_back(check_leaks, tmp_path):
    check_lease_of_a_killed_client_process_is_given_back(tmp_path, "semaphore")

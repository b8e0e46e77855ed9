"""A scheduler and a worker build the extensions (server halves of the
coordination primitives) they are given, and a user object reaches its
scheduler half through the client's public port."""
from __future__ import annotations

import pytest
import trio

from trioflow import Client, Scheduler, Worker
from trioflow.comm.inproc import new_address
from trioflow.server.extensions import scheduler_extensions, worker_extensions
from trioflow.server.extensions.base import SchedulerExtension, WorkerExtension
from trioflow.server.extensions.queue import QueueExtension

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "trio"


class Tally(SchedulerExtension):
    """A primitive's scheduler half in a few lines: counts per name."""

    name = "tally"

    def __init__(self, scheduler):
        super().__init__(scheduler)
        self.counts: dict = {}
        self.handlers = {"tally-add": self.add}

    def add(self, peer, msg):
        self.counts[msg["name"]] = self.counts.get(msg["name"], 0) + msg["n"]
        return self.counts[msg["name"]]


class Quiet(WorkerExtension):
    name = "quiet"


async def test_a_scheduler_builds_only_the_extensions_it_is_given(check_leaks):
    with trio.fail_after(30):
        async with Scheduler(address=new_address(), extensions=[Tally, QueueExtension]) as s:
            assert list(s.extensions) == ["tally", "queues"]
            async with Client(s.address, asynchronous=True) as client:
                assert await client.port.request({"op": "tally-add", "name": "x", "n": 2}) == 2
                assert await client.port.request({"op": "tally-add", "name": "x", "n": 3},
                                                 finish=str) == "5"
                with pytest.raises(ValueError, match="unknown operation 'event-set'"):
                    await client.port.request({"op": "event-set", "name": "e"})
            assert s.extensions["tally"].counts == {"x": 5}


async def test_a_worker_builds_only_the_extensions_it_is_given(check_leaks):
    with trio.fail_after(30):
        async with Scheduler(address=new_address(), extensions={"tally": Tally}) as s:
            async with Worker(s.address, extensions=[Quiet]) as w:
                assert list(w.extensions) == ["quiet"]
            async with Worker(s.address) as w:
                assert [type(e) for e in w.extensions.values()] == worker_extensions()
            assert list(s.extensions) == ["tally"]


async def test_without_extensions_a_scheduler_builds_the_default_list(check_leaks):
    with trio.fail_after(30):
        async with Scheduler(address=new_address()) as s:
            assert [type(e) for e in s.extensions.values()] == scheduler_extensions()


def test_extensions_must_be_classes():
    with pytest.raises(TypeError, match="extension classes, not 'queues'"):
        Scheduler(extensions=["queues"])
    with pytest.raises(TypeError, match="extension classes"):
        Worker("inproc://nowhere", extensions={"quiet": "Quiet"})

"""``wait``: block until futures are done."""
from __future__ import annotations

from typing import NamedTuple

import trio

from trioflow.client.core import _timeout

_RETURN_WHEN = ("ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION")


class DoneAndNotDoneFutures(NamedTuple):
    """What ``wait`` returns, as ``concurrent.futures.wait`` does."""
    done: set
    not_done: set


def wait(fs, timeout=None, return_when="ALL_COMPLETED"):
    """Wait until the futures are done; returns the named tuple ``(done, not_done)`` of sets.
    ``fs`` is a future or anything holding futures: nested lists, tuples,
    sets, dicts, iterators, a persisted dask collection.
    ``return_when`` is ``"ALL_COMPLETED"``, ``"FIRST_COMPLETED"`` or
    ``"FIRST_EXCEPTION"``; past ``timeout`` seconds raises ``TimeoutError``."""
    from trioflow.client.containers import futures_of
    fs = futures_of(fs)
    if return_when not in _RETURN_WHEN:
        raise ValueError(f"return_when must be one of {_RETURN_WHEN}, not {return_when!r}")
    if not fs:
        return DoneAndNotDoneFutures(set(), set())
    client = fs[0].client
    from trioflow.utils import parse_timedelta
    return client.port.run(_wait, fs, parse_timedelta(timeout), return_when)


async def _wait(fs, timeout, return_when):
    states = {id(f): f._state for f in fs}
    with _timeout(timeout, f"{len(fs)} future(s) not all done"):
        if return_when == "ALL_COMPLETED":
            for state in states.values():
                await state.wait()
        else:
            done = trio.Event()

            async def watch(state):
                await state.wait()
                if return_when == "FIRST_COMPLETED" or state.status != "finished":
                    done.set()

            async with trio.open_nursery() as nursery:
                pending = [s for s in states.values() if not s.done()]
                if len(pending) == len(states) or return_when == "FIRST_EXCEPTION":
                    if return_when == "FIRST_EXCEPTION" and any(
                            s.done() and s.status != "finished" for s in states.values()):
                        done.set()
                    for state in pending:
                        nursery.start_soon(watch, state)

                    async def all_done():
                        for state in pending:
                            await state.wait()
                        done.set()
                    nursery.start_soon(all_done)
                    await done.wait()
                nursery.cancel_scope.cancel()
    done_set = {f for f in fs if f._state.done()}
    return DoneAndNotDoneFutures(done_set, {f for f in fs if f not in done_set})

"""How workers ended, as their nannies tell the scheduler.

A worker process that dies takes its connection with it; the scheduler sees
the connection close but not why.  Its nanny knows (an exit code, a signal,
or a reason of its own such as the memory limit) and reports it over a
connection of its own (role ``nanny``): ``worker-started`` once a worker
process has printed its address, ``worker-ended`` with the cause once it is
gone.  The scheduler removes a nanny's worker only when the report has come
(or after ``REPORT_GRACE`` seconds, or when the nanny's connection closes
too), so the cause reaches each task death it records and the KilledWorker
text that lists them.  Reports and closes race: whichever comes second
completes the removal.
"""
from __future__ import annotations

import logging
import signal
from collections import OrderedDict

import trio

logger = logging.getLogger("trioflow.scheduler")

#: seconds the scheduler waits for a nanny's report on a worker that left
REPORT_GRACE = 3.0
#: causes reported before their worker's connection closed, kept at most
_MAX_EARLY = 256


class DeathReports:
    def __init__(self):
        self._nanny_of: dict[str, object] = {}  # worker address -> its nanny's connection
        self._early: OrderedDict[str, str] = OrderedDict()  # address -> cause, not yet used
        self._waiting: dict[str, trio.Event] = {}

    def started(self, nanny, address: str) -> None:
        self._nanny_of[address] = nanny
        self._early.pop(address, None)

    def ended(self, nanny, address: str, cause: str) -> None:
        """A nanny says how its worker at ``address`` ended."""
        if self._nanny_of.get(address) is not nanny:
            logger.warning("a nanny reported the end of %s, which it did not start; ignored",
                           address)
            return
        del self._nanny_of[address]
        self._early[address] = cause
        while len(self._early) > _MAX_EARLY:
            self._early.popitem(last=False)
        waiter = self._waiting.pop(address, None)
        if waiter is not None:
            waiter.set()

    def nanny_gone(self, nanny) -> None:
        for address in [a for a, n in self._nanny_of.items() if n is nanny]:
            del self._nanny_of[address]
            waiter = self._waiting.pop(address, None)
            if waiter is not None:
                waiter.set()

    def expects_report(self, address: str) -> bool:
        return address in self._early or address in self._nanny_of

    def take(self, address: str) -> str:
        """The reported cause of ``address``'s end, or "" if none came."""
        return self._early.pop(address, "")

    async def wait(self, address: str, grace: float = REPORT_GRACE) -> str:
        """Wait (at most ``grace`` s) for the report on ``address``; its cause."""
        if address not in self._early and address in self._nanny_of:
            waiter = self._waiting.setdefault(address, trio.Event())
            with trio.move_on_after(grace):
                await waiter.wait()
            if self._waiting.get(address) is waiter:
                del self._waiting[address]
        return self.take(address)


def describe_exit(returncode: int | None) -> str:
    """"exit code 3" or "killed by signal 9 (SIGKILL)" for a process's return code."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-returncode} ({name})"
    return f"exit code {returncode}"

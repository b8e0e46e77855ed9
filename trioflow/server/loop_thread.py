"""The background thread that runs trio for blocking (sync) callers.

Every blocking Client and LocalCluster in a process shares one loop thread,
so in-process servers and clients can talk over inproc:// channels.  The
thread starts with its first user and stops (and is joined) when the last
one is done, so nothing outlives ``close()``.  (The asyncio code of in-process
workers' ``async def`` tasks runs on a side loop: see ``asyncio_bridge``.)"""
from __future__ import annotations

import threading

import trio
from anyio.from_thread import BlockingPortal

try:  # the portal loads anyio's trio backend on first use: load it with us
    import anyio._backends._trio  # noqa: F401
except ImportError:  # a future anyio laid out otherwise still works, lazily
    pass


class LoopRunner:
    _lock = threading.Lock()
    _users = 0
    _portal_cm = None
    _portal = None
    _token = None

    @classmethod
    def acquire(cls) -> "LoopRunner":
        with cls._lock:
            if cls._portal is None:
                cls._portal_cm = _LoopThread()
                cls._portal, cls._token = cls._portal_cm.start()
            cls._users += 1
            return cls()

    def __init__(self):
        self.portal = LoopRunner._portal
        self.token = LoopRunner._token
        self._released = False

    def call(self, fn, *args):
        """Run async ``fn(*args)`` in the loop and return its result; blocks.
        One hop each way (the portal's ``call`` waits for a second one to
        spawn the task, which doubles the cost of every blocking call)."""
        return trio.from_thread.run(fn, *args, trio_token=self.token)

    def run_sync_soon(self, fn, *args):
        """Thread-safe, non-blocking: run ``fn(*args)`` in the loop soon."""
        self.token.run_sync_soon(fn, *args)

    def in_loop_thread(self) -> bool:
        try:
            return trio.lowlevel.current_trio_token() is self.token
        except RuntimeError:
            return False

    def release(self):
        if self._released:
            return
        self._released = True
        with LoopRunner._lock:
            LoopRunner._users -= 1
            if LoopRunner._users == 0:
                cm = LoopRunner._portal_cm
                LoopRunner._portal = LoopRunner._portal_cm = LoopRunner._token = None
                cm.stop()


class _LoopThread:
    """The thread: trio, holding a BlockingPortal open
    until ``stop``."""

    def __init__(self):
        self._ready = threading.Event()
        self._portal = self._token = self._stop = self._error = None
        self._thread = threading.Thread(target=self._main, name="trioflow-loop", daemon=True)

    def start(self):
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self._portal, self._token

    def _main(self):
        try:
            trio.run(self._serve)
        except BaseException as exc:  # noqa: B036 - handed to the thread that started us
            self._error = exc
            self._ready.set()

    async def _serve(self):
        async with BlockingPortal() as portal:
            self._portal, self._token = portal, trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._ready.set()
            await self._stop.wait()

    def stop(self):
        """Close the portal (it waits for the tasks it runs) and join the thread."""
        self._token.run_sync_soon(self._stop.set)
        self._thread.join()

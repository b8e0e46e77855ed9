"""The background thread that runs trio for blocking (sync) callers.

Every blocking Client and LocalCluster in a process shares one loop thread,
so in-process servers and clients can talk over inproc:// channels.  The
thread starts with its first user and stops (and is joined) when the last
one is done, so nothing outlives ``close()``."""
from __future__ import annotations

import threading

import trio
from anyio.from_thread import start_blocking_portal

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
                cls._portal_cm = start_blocking_portal(backend="trio", name="trioflow-loop")
                cls._portal = cls._portal_cm.__enter__()
                cls._token = cls._portal.call(trio.lowlevel.current_trio_token)
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
                cm.__exit__(None, None, None)

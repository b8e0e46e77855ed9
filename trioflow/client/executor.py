"""``client.get_executor()``: the concurrent.futures face of a client."""
from __future__ import annotations

import concurrent.futures
import threading


class ClientExecutor(concurrent.futures.Executor):
    """Submits each call as a task (``pure=False``); the returned
    ``concurrent.futures.Future`` completes when the task does, and
    cancelling it cancels the task."""

    def __init__(self, client, **submit_kwargs):
        self._client = client
        self._submit_kwargs = submit_kwargs
        self._futures: set = set()
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn, /, *args, **kwargs):
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to an executor that was shut down")
            future = self._client.submit(fn, *args, pure=False, **self._submit_kwargs, **kwargs)
            outer = concurrent.futures.Future()
            outer._trioflow_future = future  # keeps the task wanted while someone waits
            self._futures.add(outer)

        def forward(done):
            if outer.cancelled() or not outer.set_running_or_notify_cancel():
                return
            try:
                outer.set_result(done.result())
            except BaseException as exc:
                outer.set_exception(exc)

        def on_outer_done(f):
            with self._lock:
                self._futures.discard(f)
            if f.cancelled():
                future.cancel()

        outer.add_done_callback(on_outer_done)
        future.add_done_callback(forward)
        return outer

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._lock:
            self._shutdown = True
            pending = list(self._futures)
        if cancel_futures:
            for f in pending:
                f.cancel()
        if wait:
            concurrent.futures.wait(pending)

"""``performance_report``: what the cluster did inside a block, as one
self-contained HTML file (dask's ``distributed.performance_report``)."""
from __future__ import annotations

import inspect
import time

from trioflow.client import report


class performance_report:
    """``with performance_report(filename="report.html"):`` runs the block,
    then writes the task stream, the tasks per prefix and the workers'
    profile of that time to ``filename``, using the default client (or
    ``client=``).  Opens in any browser, with no network.  ``stacklevel``
    picks the frame whose code the report shows; ``mode`` and
    ``storage_options`` are accepted for dask compatibility."""

    def __init__(self, filename="dask-report.html", stacklevel=1, mode=None,
                 storage_options=None, client=None):
        self.filename = filename
        self.stacklevel = stacklevel
        self.client = client
        self.started: float | None = None
        self.code = ""

    def __enter__(self):
        from trioflow.client.current import default_client
        self.client = self.client or default_client()
        if self.client._asynchronous:
            raise TypeError("performance_report needs a blocking Client; an asynchronous "
                            "client can write the same with get_task_stream/profile")
        self.code = _caller_code(self.stacklevel + 1)
        self.started = time.time()
        return self

    def __exit__(self, *exc_info):
        stopped = time.time()
        records = self.client.get_task_stream(start=self.started)
        tree = self.client.profile(start=self.started, stop=stopped)
        report.write(self.filename, report.performance_report_html(
            records, tree, self.started, stopped, self.code))


def _caller_code(depth: int) -> str:
    frame = inspect.currentframe()
    for _ in range(depth):
        frame = frame.f_back if frame is not None else None
    try:
        return inspect.getsource(frame) if frame is not None else ""
    except (OSError, TypeError):
        return ""

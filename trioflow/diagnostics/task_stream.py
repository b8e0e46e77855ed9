"""``get_task_stream``: the tasks the cluster ran inside a block (dask's
``distributed.get_task_stream``)."""
from __future__ import annotations

import time


class get_task_stream:
    """``with get_task_stream() as ts:`` runs the block; afterwards
    ``ts.data`` is the list of task records (key, worker, start, stop,
    status...) of what ran meanwhile, as ``client.get_task_stream`` gives
    them.  ``plot=True`` also keeps ``ts.figure``, a self-contained HTML page
    drawing them (``plot="save"`` writes it to ``filename``).  With an
    asynchronous client use ``async with``."""

    def __init__(self, client=None, plot=False, filename="task-stream.html"):
        self.client = client
        self.plot = plot
        self.filename = filename
        self.start: float | None = None
        self.data: list = []
        self.figure = None

    def _begin(self):
        if self.client is None:
            from trioflow.client.current import default_client
            self.client = default_client()
        self.start = time.time()
        return self

    def _keep(self, found):
        if self.plot:
            self.data, self.figure = found
        else:
            self.data = found

    def __enter__(self):
        self._begin()
        if self.client.asynchronous:
            raise TypeError("use 'async with get_task_stream()' with an asynchronous client")
        return self

    def __exit__(self, *exc_info):
        self._keep(self.client.get_task_stream(start=self.start, plot=self.plot,
                                               filename=self.filename))

    async def __aenter__(self):
        return self._begin()

    async def __aexit__(self, *exc_info):
        self._keep(await self.client.get_task_stream(start=self.start, plot=self.plot,
                                                     filename=self.filename))

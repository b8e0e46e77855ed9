"""Run an ASGI app with hypercorn's trio worker on a socket we bound."""
from __future__ import annotations

import logging

import trio

logger = logging.getLogger("trioflow.dashboard")


async def serve_app(app, sock, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` on the bound socket ``sock`` until cancelled; reports
    ``(host, port)`` once listening."""
    from hypercorn.config import Config, Sockets
    from hypercorn.trio.run import worker_serve
    from hypercorn.utils import wrap_app

    config = Config()
    config.accesslog = None
    config.errorlog = logging.getLogger("trioflow.dashboard.http")
    config.graceful_timeout = 0.5  # live feeds never end by themselves
    sock.listen(config.backlog)
    host, port = sock.getsockname()[:2]
    try:
        await worker_serve(wrap_app(app, config.wsgi_max_body_size, "asgi"), config,
                           sockets=Sockets([], [sock], []),
                           task_status=_Relay(task_status, (host, port)))
    finally:
        sock.close()


class _Relay:
    """Passes hypercorn's "started" on as our (host, port)."""

    def __init__(self, task_status, bound):
        self._task_status, self._bound = task_status, bound

    def started(self, value=None):
        self._task_status.started(self._bound)

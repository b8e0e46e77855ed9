"""A worker's own small HTTP endpoint: /metrics, /health, /sitemap.json."""
from __future__ import annotations

import logging

import trio

from trioflow.dashboard.binding import bind, parse_address, server_host
from trioflow.dashboard.http import serve_app

logger = logging.getLogger("trioflow.dashboard")

PAGES = ["/health", "/metrics", "/sitemap.json"]


async def serve(worker, address: str, task_status=trio.TASK_STATUS_IGNORED):
    host, port = parse_address(address, server_host(worker.address))
    sock = bind(host, port, what=f"dashboard of worker {worker.address}")
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(serve_app, build_app(worker), sock)
        logger.info("worker %s serves /metrics at http://%s:%d/metrics", worker.address, *bound)
        task_status.started(bound)


def build_app(worker):
    from prometheus_client import CONTENT_TYPE_LATEST
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    from trioflow.dashboard.metrics import worker_metrics

    async def health(request):
        return PlainTextResponse("ok")

    async def metrics(request):
        return Response(worker_metrics(worker), media_type=CONTENT_TYPE_LATEST)

    async def sitemap(request):
        return JSONResponse({"paths": PAGES})

    return Starlette(routes=[Route("/health", health), Route("/metrics", metrics),
                             Route("/sitemap.json", sitemap)])

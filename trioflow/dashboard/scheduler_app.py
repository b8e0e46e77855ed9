"""The scheduler's dashboard: pages, the live feed, /metrics, /health."""
from __future__ import annotations

import html
import json
import logging

import trio

from trioflow.core.records import priority_tuple
from trioflow.dashboard import pages
from trioflow.dashboard.binding import bind, parse_address, server_host
from trioflow.dashboard.feed import COUNT_SLICE, SchedulerFeed
from trioflow.dashboard.http import serve_app

logger = logging.getLogger("trioflow.dashboard")

PAGES = ["/status", "/workers", "/task/{key}", "/info", "/health", "/metrics",
         "/sitemap.json", "/api/feed", "/api/info", "/api/task/{key}"]
#: edges of a task the task page lists, at most
MAX_EDGES = 200


async def serve(scheduler, address: str, task_status=trio.TASK_STATUS_IGNORED):
    """Serve the dashboard of ``scheduler`` on ``address`` (``":8787"``...)
    until cancelled; reports ``(host, port)`` once listening."""
    host, port = parse_address(address, server_host(scheduler.address))
    sock = bind(host, port)
    feed = SchedulerFeed(scheduler)
    app = build_app(scheduler, feed)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        bound = await nursery.start(serve_app, app, sock)
        logger.info("dashboard at http://%s:%d/status", *bound)
        task_status.started(bound)


def static_files():
    from starlette.staticfiles import StaticFiles
    # charts.js/.css are shared with the HTML reports, live.js/task.js are ours
    return StaticFiles(packages=[("trioflow.client", "static"),
                                 ("trioflow.dashboard", "static")])


def build_app(scheduler, feed: SchedulerFeed):
    from starlette.applications import Starlette
    from starlette.responses import (HTMLResponse, JSONResponse, PlainTextResponse,
                                     RedirectResponse, Response)
    from starlette.routing import Mount, Route

    from trioflow.dashboard.metrics import scheduler_metrics

    async def index(request):
        return RedirectResponse("status")

    async def status(request):
        return HTMLResponse(pages.page("status", "status", pages.STATUS))

    async def workers(request):
        return HTMLResponse(pages.page("workers", "workers", pages.WORKERS))

    async def task(request):
        key = request.path_params["key"]
        body = pages.TASK.format(key=html.escape(key))
        return HTMLResponse(pages.page("task", f"task {key}", body, scripts=("task.js",),
                                       data={"key": key}, root="../"))

    async def info(request):
        return HTMLResponse(pages.page("info", "info", pages.info_body(
            scheduler.identity(), worker_dashboards(scheduler)), scripts=()))

    async def health(request):
        return PlainTextResponse("ok")

    async def sitemap(request):
        return JSONResponse({"paths": PAGES})

    async def metrics(request):
        from prometheus_client import CONTENT_TYPE_LATEST
        return Response(await scheduler_metrics(scheduler), media_type=CONTENT_TYPE_LATEST)

    async def api_info(request):
        return JSONResponse(json.loads(json.dumps(scheduler.identity(), default=str)))

    async def api_task(request):
        return JSONResponse(await task_info(scheduler, request.path_params["key"]))

    return Starlette(routes=[
        Route("/", index), Route("/status", status), Route("/workers", workers),
        Route("/task/{key:path}", task), Route("/info", info), Route("/health", health),
        Route("/sitemap.json", sitemap), Route("/metrics", metrics),
        Route("/api/info", api_info), Route("/api/task/{key:path}", api_task),
        Route("/api/feed", FeedStream(feed)),
        Mount("/static", static_files()),
    ])


class FeedStream:
    """``/api/feed``: server-sent events, one JSON message per update.  A raw
    ASGI app so that a page going away ends its stream at once."""

    def __init__(self, feed: SchedulerFeed):
        self.feed = feed

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        page, messages = self.feed.open_page()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_until_disconnect, receive, nursery.cancel_scope)
                await send(_event(await self.feed.first_message()))
                async with messages:
                    async for message in messages:
                        await send(_event(message))
        finally:
            self.feed.close_page(page)


async def _until_disconnect(receive, scope):
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


def _event(encoded: bytes) -> dict:
    return {"type": "http.response.body", "body": encoded, "more_body": True}


def worker_dashboards(scheduler) -> dict:
    links = {}
    for address, info in scheduler.worker_info.items():
        port = info.get("dashboard_port")
        if port:
            links[address] = f"http://{info.get('host') or '127.0.0.1'}:{port}/metrics"
    return links


async def find_task(tasks: dict, text: str):
    """The scheduler's task whose key is ``text`` or prints as ``text``."""
    ts = tasks.get(text)
    if ts is not None:
        return ts
    snapshot = list(tasks.values())
    for start in range(0, len(snapshot), COUNT_SLICE):
        for ts in snapshot[start:start + COUNT_SLICE]:
            if str(ts.key) == text:
                return ts
        await trio.sleep(0)
    return None


async def task_info(scheduler, text: str) -> dict:
    ts = await find_task(scheduler.state.tasks, text)
    if ts is None:
        return {"found": False, "key": text}

    def edges(tasks):
        return [{"key": str(t.key), "state": t.state} for t in list(tasks)[:MAX_EDGES]]

    facts = {"prefix": ts.prefix, "priority": list(priority_tuple(ts.priority)), "bytes": ts.nbytes,
             "type": ts.type_name or "-", "wanted by": ", ".join(sorted(ts.who_wants)) or "-",
             "processing on": ts.processing_on.address if ts.processing_on else "-",
             "retries left": ts.retries}
    if ts.text:
        facts["error"] = ts.text
    if ts.state == "no-worker":  # why it waits, as the scheduler's log says
        from trioflow.server.unrunnable import describe, need_of
        facts["cannot run because"] = describe(need_of(ts), scheduler.state.workers)
    return {"found": True, "key": str(ts.key), "state": ts.state, "facts": facts,
            "dependencies": edges(ts.dependencies), "dependents": edges(ts.dependents),
            "who_has": sorted(ws.address for ws in ts.who_has),
            "story": _story(scheduler, ts.key)}


def _story(scheduler, key):
    # the scheduler keeps a story once the state machine records one (issue 14)
    story = getattr(scheduler, "story", None) or getattr(scheduler.state, "story", None)
    if story is None:
        return None
    try:
        return [[str(part) for part in (row if isinstance(row, (list, tuple)) else [row])]
                for row in story(key)]
    except Exception:
        logger.exception("could not read the story of %r", key)
        return None

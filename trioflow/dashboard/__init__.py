"""The dashboard: HTTP pages, a live feed, ``/metrics`` and ``/health``.

A scheduler (or a worker, when asked) runs it in its own nursery through
``trioflow.server.services``; nothing here is imported by ``import
trioflow``.  ``scheduler_app.serve`` and ``worker_app.serve`` are the entry
points; the pages draw in the browser from compact JSON the feed sends, so the
scheduler does no drawing.
"""

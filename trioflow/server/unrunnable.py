"""Tell the operator about tasks that no current worker can run.

A task whose ``resources=`` no worker has, or whose ``workers=`` are none
of the cluster's, waits in state ``no-worker`` until a worker that fits
joins, as in dask.  Waiting without a word looks like a hang, so the
scheduler logs each such task once (grouped by what they need), with what
the workers do have; ``client.story(key)`` shows the move to ``no-worker``
and the dashboard's task page says why it waits.
"""
from __future__ import annotations

import logging

import trio

logger = logging.getLogger("trioflow.scheduler")

#: seconds between looks at the unrunnable tasks
INTERVAL = 0.5


def need_of(ts) -> tuple:
    resources = tuple(sorted((ts.resources or {}).items()))
    workers = tuple(sorted(map(str, ts.worker_restrictions or ())))
    return resources, workers, bool(ts.allow_other_workers)


def describe(need: tuple, workers: dict) -> str:
    """Why tasks with ``need`` (from ``need_of``) fit none of ``workers``."""
    resources, restricted, _ = need
    reasons = []
    if resources:
        have = sorted({f"{k}={v:g}" for ws in workers.values()
                       for k, v in (ws.resources or {}).items()})
        reasons.append(f"they need resources {dict(resources)}, and the workers have "
                       f"{', '.join(have) if have else 'none'}")
    if restricted:
        reasons.append(f"they may run only on {list(restricted)}, and the workers are "
                       f"{sorted(workers) or 'none yet'} (names "
                       f"{sorted({str(ws.name) for ws in workers.values()})})")
    paused = sorted(a for a, ws in workers.items() if getattr(ws, "status", "") == "paused")
    if paused:
        reasons.append(f"{len(paused)} worker(s) are paused, their memory past the pause "
                       f"threshold ({', '.join(paused[:3])}{', ...' if len(paused) > 3 else ''}),"
                       f" and get tasks again once it drops")
    if not workers and not reasons:
        reasons.append("there are no workers yet")
    return "; ".join(reasons) or "no worker fits them"


def report_new(state, reported: dict) -> None:
    """Log the tasks that became unrunnable since the last call; ``reported``
    (key -> need) remembers what was logged."""
    unrunnable = {ts.key: ts for ts in state.unrunnable if ts.state == "no-worker"}
    for key in [k for k in reported if k not in unrunnable]:
        del reported[key]
    groups: dict = {}
    for key, ts in unrunnable.items():
        need = need_of(ts)
        if reported.get(key) != need:
            reported[key] = need
            groups.setdefault(need, []).append(key)
    for need, keys in groups.items():
        shown = ", ".join(repr(k) for k in keys[:3]) + (", ..." if len(keys) > 3 else "")
        logger.warning("%d task(s) (%s) cannot run on any current worker: %s; they wait "
                       "until a worker that fits joins or resumes", len(keys), shown,
                       describe(need, state.workers))


async def watch(state, interval: float = INTERVAL) -> None:
    """Until cancelled: report unrunnable tasks every ``interval`` seconds."""
    reported: dict = {}
    while True:
        await trio.sleep(interval)
        if state.unrunnable or reported:
            report_new(state, reported)

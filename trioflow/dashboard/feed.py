"""What the scheduler's pages show, gathered cheaply and sent as deltas.

While at least one page listens, the feed wakes every ``interval`` seconds,
asks each worker for the task runs and transfers it recorded since the last
poll (one small request per worker, answered from a bounded buffer), counts
the scheduler's tasks per prefix and state in slices that yield to the event
loop, and hands every listener one compact JSON-able message.  With no page
open it costs nothing.
"""
from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict, deque

import trio

from trioflow.core.keys import key_prefix

logger = logging.getLogger("trioflow.dashboard")

#: tasks counted between two checkpoints: a slice takes about a millisecond
COUNT_SLICE = 1_000
#: task-stream bars the feed keeps for a page that opens now
STREAM_LENGTH = 10_000
#: prefixes shown in the progress panel (the ones with most tasks)
MAX_PREFIXES = 60
#: messages queued per page; a page that falls further behind misses some
PAGE_BACKLOG = 4
#: new bars one message carries at most (the newest): 2,000 a second is more
#: than a screen-wide task stream can show, and keeps each message small
MAX_NEW_BARS = 1_000
#: how the page's four progress colours group the scheduler's states
PROGRESS_STATES = {"released": 0, "waiting": 0, "queued": 0, "no-worker": 0,
                   "processing": 1, "memory": 2, "erred": 3}


async def count_tasks(tasks: dict) -> dict:
    """``{prefix: {state: n}}`` over ``tasks`` (a scheduler's), yielding to
    the loop every ``COUNT_SLICE`` tasks so no pass blocks it for long."""
    snapshot = list(tasks.values())
    counts: dict = {}
    for start in range(0, len(snapshot), COUNT_SLICE):
        for ts in snapshot[start:start + COUNT_SLICE]:
            by_state = counts.get(ts.prefix)
            if by_state is None:
                by_state = counts[ts.prefix] = {}
            by_state[ts.state] = by_state.get(ts.state, 0) + 1
        if start + COUNT_SLICE < len(snapshot):
            await trio.sleep(0)
    return counts


def progress_rows(counts: dict) -> dict:
    """``{prefix: [waiting, processing, memory, erred]}`` of the biggest prefixes."""
    rows = {}
    for prefix, by_state in counts.items():
        row = [0, 0, 0, 0]
        for state, n in by_state.items():
            row[PROGRESS_STATES.get(state, 0)] += n
        rows[prefix] = row
    if len(rows) > MAX_PREFIXES:
        biggest = sorted(rows, key=lambda p: -sum(rows[p]))[:MAX_PREFIXES]
        rows = {p: rows[p] for p in biggest}
    return rows


def encode(message: dict) -> bytes:
    """One server-sent event carrying ``message`` as JSON."""
    return b"data: " + json.dumps(message, default=str, separators=(",", ":")).encode() + b"\n\n"


class SchedulerFeed:
    """The live data of one scheduler's dashboard."""

    def __init__(self, scheduler, interval: float = 0.5):
        self.scheduler = scheduler
        self.interval = interval
        self.pages: set = set()  # send channels of the open pages
        self._page_opened = trio.Event()
        self.stream: deque = deque(maxlen=STREAM_LENGTH)  # [row, start, stop, prefix, ok]
        self.transfers: deque = deque(maxlen=STREAM_LENGTH)  # [row, start, stop, nbytes]
        self.rows: dict = {}  # (worker, lane) -> row number; see _row
        self._threads: dict = {}  # worker -> OrderedDict of thread id -> lane, oldest first
        self._next_row = 0
        self._rows_changed = False
        self._cursors: dict = {}  # worker -> the task stream cursor to ask for next
        self.worker_metrics: dict = {}  # worker -> what its last poll reported
        self.last: dict | None = None  # the latest message, for pages that open
        self.started = time.time()

    # ---------------------------------------------------------------- pages

    def open_page(self):
        """A receive channel of messages for one page; close it when done."""
        send, receive = trio.open_memory_channel(PAGE_BACKLOG)
        self.pages.add(send)
        self._page_opened.set()
        return send, receive

    def close_page(self, send) -> None:
        self.pages.discard(send)
        send.close()

    async def first_message(self) -> bytes:
        """Everything the feed holds, for a page that has just opened."""
        message = dict(self.last or self._message({}, [], []))
        message["reset"] = True
        message["tasks"] = list(self.stream)
        message["transfers"] = list(self.transfers)
        message["rows"] = self._row_list()
        return await trio.to_thread.run_sync(encode, message)

    # ---------------------------------------------------------------- the loop

    async def run(self, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        while True:
            if not self.pages:
                self._page_opened = trio.Event()
                await self._page_opened.wait()
            started = trio.current_time()
            try:
                message = await self.tick()
            except Exception:
                logger.exception("the dashboard feed failed to gather an update")
            else:
                # once, however many pages listen, and off the event loop
                encoded = await trio.to_thread.run_sync(encode, message)
                for page in list(self.pages):
                    try:
                        page.send_nowait(encoded)
                    except trio.WouldBlock:
                        pass  # a slow page skips an update rather than slowing us
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self.pages.discard(page)
            await trio.sleep_until(started + self.interval)

    async def tick(self) -> dict:
        """Poll the workers, count the tasks; the message for the pages."""
        new_tasks, new_transfers = await self._poll_workers()
        new_tasks, new_transfers = new_tasks[-MAX_NEW_BARS:], new_transfers[-MAX_NEW_BARS:]
        counts = await count_tasks(self.scheduler.state.tasks)
        message = self._message(counts, new_tasks, new_transfers)
        if self._rows_changed:
            self._rows_changed = False
            message["rows"] = self._row_list()
        self.last = {k: v for k, v in message.items() if k not in ("tasks", "transfers", "rows")}
        return message

    async def _poll_workers(self):
        new_tasks, new_transfers = [], []
        workers = list(self.scheduler.state.workers)
        for gone in (set(self._cursors) | set(self._threads)) - set(workers):
            self._cursors.pop(gone, None)
            self.worker_metrics.pop(gone, None)
            self._threads.pop(gone, None)
            for lane in [lane for lane in self.rows if lane[0] == gone]:
                del self.rows[lane]  # its old bars are no longer drawn
            self._rows_changed = True
        async with trio.open_nursery() as nursery:
            for address in workers:
                nursery.start_soon(self._poll_one, address, new_tasks, new_transfers)
        return new_tasks, new_transfers

    async def _poll_one(self, address, new_tasks, new_transfers):
        with trio.move_on_after(max(2 * self.interval, 1.0)):
            try:
                conn = self.scheduler.worker_connection(address)
                found = await conn.request({
                    "op": "task-stream-since", "cursor": self._cursors.get(address, 0),
                    "limit": max(50, MAX_NEW_BARS // max(1, len(self.scheduler.state.workers)))})
            except Exception as exc:  # a worker that is leaving; the next poll retries
                logger.debug("dashboard could not poll %s: %r", address, exc)
                return
            self._cursors[address] = found["cursor"]
            self.worker_metrics[address] = found.get("metrics") or {}
            for run in found.get("runs") or ():
                thread = "async" if run.get("async") else run.get("thread") or 0
                bar = [self._row(address, thread), round(run["start"], 4),
                       round(run["stop"], 4), key_prefix(run["key"]),
                       1 if run.get("status") == "ok" else 0]
                self.stream.append(bar)
                new_tasks.append(bar)
            for transfer in found.get("transfers") or ():
                bar = [self._row(address, "transfer"), round(transfer["start"], 4),
                       round(transfer["stop"], 4), transfer.get("nbytes", 0)]
                self.transfers.append(bar)
                new_transfers.append(bar)

    def _row(self, worker, thread) -> int:
        """The row of a worker's thread: one lane per thread slot (trio's thread
        cache replaces idle threads, so a new thread id takes over the lane of
        the one used longest ago once the worker has ``nthreads`` lanes), one
        for its async tasks, one for its transfers."""
        if isinstance(thread, int):
            threads = self._threads.setdefault(worker, OrderedDict())
            lane = threads.get(thread)
            if lane is None:
                ws = self.scheduler.state.workers.get(worker)
                if ws is not None and len(threads) >= ws.nthreads:
                    _, lane = threads.popitem(last=False)
                else:
                    lane = f"thread-{len(threads)}"
            threads[thread] = lane
            threads.move_to_end(thread)
            thread = lane
        row = self.rows.get((worker, thread))
        if row is None:
            row = self.rows[(worker, thread)] = self._next_row
            self._next_row += 1
            self._rows_changed = True
        return row

    def _row_list(self) -> list:
        return [[worker, str(thread), row] for (worker, thread), row in self.rows.items()]

    def _message(self, counts, new_tasks, new_transfers) -> dict:
        state = self.scheduler.state
        return {"now": time.time(),
                "summary": {"workers": len(state.workers), "tasks": len(state.tasks),
                            "clients": len(self.scheduler.clients),
                            "forgotten": getattr(state, "n_forgotten", 0),
                            "threads": sum(ws.nthreads for ws in state.workers.values())},
                "progress": progress_rows(counts),
                "workers": self.worker_rows(),
                "tasks": new_tasks, "transfers": new_transfers}

    def worker_rows(self) -> list:
        """One row per worker: what the workers page and the memory bars show."""
        now = time.monotonic()
        rows = []
        for address, ws in self.scheduler.state.workers.items():
            polled = self.worker_metrics.get(address) or {}
            beat = ws.metrics or {}
            by_state = polled.get("tasks") or {}
            rows.append({
                "address": address, "name": str(ws.name), "nthreads": ws.nthreads,
                "cpu": polled.get("cpu", 0.0),
                "memory": polled.get("memory", beat.get("memory", 0)),
                # in memory and on disk, as the worker last said (managed: all
                # of its results, as the scheduler counts them, until it says)
                "managed": polled.get("managed", beat.get("managed", ws.nbytes)),
                "spilled": polled.get("spilled_bytes", beat.get("spilled_bytes", 0)),
                "paused": bool(ws.status == "paused"), "memory_limit": ws.memory_limit,
                "processing": len(ws.processing),
                "executing": polled.get("executing", beat.get("executing", 0)),
                "ready": by_state.get("ready", 0),
                "in_memory": polled.get("in_memory", beat.get("in_memory", 0)),
                "last_seen": round(max(0.0, now - ws.last_seen), 2) if ws.last_seen else None,
            })
        return rows

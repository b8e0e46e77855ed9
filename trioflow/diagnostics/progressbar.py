"""A text progress bar for futures, with the signature of distributed's ``progress``.

In a terminal the bar is redrawn in place::

    [################                        ] 41% | 820/2000 | 1.3s | 0 erred

When standard output is not a terminal (a log file, CI) plain lines are
printed instead: one when a second has passed or another tenth of the
futures is done since the last line, and always one at the end.

Only the futures passed in are counted, not the tasks they depend on.
``notebook``, ``multi`` and ``group_by`` are accepted for compatibility; there
is no notebook widget, so the text bar is shown everywhere.
"""
from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from trioflow.utils import parse_timedelta

__all__ = ["progress"]

#: a non-terminal stream gets a line after this long, or after a tenth more is done
_PLAIN_LINE_EVERY_S = 1.0


def parse_interval(interval: str | float | int) -> float:
    """Seconds in ``interval``: a number of seconds, or a string like ``"100ms"``, ``"1s"``."""
    seconds = parse_timedelta(interval)
    if seconds is None or seconds <= 0:
        raise ValueError(f"interval must be a positive duration such as '100ms' or 0.5, "
                         f"got {interval!r}")
    return seconds


def _flatten(items: Iterable[Any]) -> list[Any]:
    """Futures found in ``items``, looking inside lists, tuples, sets and dict values."""
    found: list[Any] = []
    seen: set[int] = set()
    stack = list(items)[::-1]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            stack.extend(list(item.values())[::-1])
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(list(item)[::-1])
        elif hasattr(item, "done") and hasattr(item, "key"):
            if id(item) not in seen:
                seen.add(id(item))
                found.append(item)
        else:
            raise TypeError(
                f"progress() takes futures, or lists, tuples, sets or dicts of futures; "
                f"got {type(item).__name__}"
            )
    return found


class _Display:
    """Draws the bar; knows nothing about futures, only counts."""

    def __init__(self, total: int, stream: TextIO, width: int = 40) -> None:
        self.total = total
        self.stream = stream
        self.width = width
        self.start = time.monotonic()
        self.interactive = bool(getattr(stream, "isatty", lambda: False)())
        self._last_line_at = self.start
        self._last_done = 0

    def _text(self, done: int, erred: int) -> str:
        fraction = done / self.total if self.total else 1.0
        elapsed = time.monotonic() - self.start
        return f"{fraction:4.0%} | {done}/{self.total} | {elapsed:.1f}s | {erred} erred"

    def update(self, done: int, erred: int) -> None:
        if self.interactive:
            filled = int(self.width * done / self.total) if self.total else self.width
            bar = "#" * filled + " " * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self._text(done, erred)}")
            self.stream.flush()
            return
        now = time.monotonic()
        advanced = done - self._last_done
        if advanced > 0 and (
            now - self._last_line_at >= _PLAIN_LINE_EVERY_S or 10 * advanced >= self.total
        ):
            self._plain_line(done, erred, now)

    def finish(self, done: int, erred: int) -> None:
        if self.interactive:
            self.update(done, erred)
            self.stream.write("\n")
            self.stream.flush()
        else:
            self._plain_line(done, erred, time.monotonic())

    def abandon(self) -> None:
        """End the bar's line when following stops early (Ctrl-C, cancellation)."""
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()

    def _plain_line(self, done: int, erred: int, now: float) -> None:
        self.stream.write(f"progress: {self._text(done, erred)}\n")
        self.stream.flush()
        self._last_line_at = now
        self._last_done = done


def _erred(futures: list[Any]) -> int:
    """How many of ``futures`` are done without having finished well."""
    return sum(1 for f in futures if f.done() and getattr(f, "status", "finished") != "finished")


def _is_asynchronous(futures: list[Any]) -> bool:
    client = getattr(futures[0], "client", None)
    return bool(getattr(client, "asynchronous", False))


def progress(
    *futures: Any,
    notebook: bool | None = None,
    multi: bool = True,
    complete: bool = True,
    group_by: Any = "prefix",
    interval: str | float = "100ms",
    **kwargs: Any,
):
    """Show a progress bar until every future given is done.

    ``futures`` may be futures or lists, tuples, sets or dicts of them. With a
    blocking client this returns ``None`` once all of them are finished,
    erred, cancelled or lost (an erred future counts as done and is shown in
    the erred count; nothing is raised). With an asynchronous client it
    returns a coroutine that does the same when awaited.

    ``complete=False`` leaves out futures already done when it is called.
    ``interval`` is how often the bar is redrawn (``"100ms"``, ``"1s"`` or
    seconds). ``width`` (characters of the bar, default 40) and ``file`` (a
    stream instead of ``sys.stdout``) may be given as keyword arguments.
    ``notebook``, ``multi`` and ``group_by`` are accepted and ignored.
    """
    given = _flatten(futures)
    asynchronous = bool(given) and _is_asynchronous(given)
    tracked = given if complete else [f for f in given if not f.done()]
    seconds = parse_interval(interval)
    stream = kwargs.get("file") or sys.stdout
    display = _Display(len(tracked), stream, width=int(kwargs.get("width", 40)))
    if asynchronous:
        return _follow_async(tracked, display, seconds)
    _follow_blocking(tracked, display, seconds)
    return None


def _follow_blocking(futures: list[Any], display: _Display, seconds: float) -> None:
    from trioflow import wait

    if not futures:
        return
    # Block on one unfinished future at a time, not on all of them: a wait()
    # costs in proportion to the futures it is given, and one per completion
    # over thousands of futures is quadratic. All of them must finish anyway,
    # so waiting on the oldest loses nothing; the full recount is per redraw.
    pending = deque(futures)
    next_draw = time.monotonic()
    try:
        while True:
            while pending and pending[0].done():
                pending.popleft()
            if not pending:
                break
            now = time.monotonic()
            if now >= next_draw:
                pending = deque(f for f in pending if not f.done())
                display.update(len(futures) - len(pending), _erred(futures))
                next_draw = now + seconds
                continue
            try:
                wait([pending[0]], timeout=next_draw - now, return_when="FIRST_COMPLETED")
            except BaseException as error:
                # wait() raises when its timeout passes (our redraw tick) and
                # when the future was cancelled; both are counted above.
                if not _is_timeout_or_cancel(error):
                    raise
    except BaseException:
        display.abandon()
        raise
    display.finish(len(futures), _erred(futures))


async def _follow_async(futures: list[Any], display: _Display, seconds: float) -> None:
    import anyio

    if not futures:
        return
    remaining = list(futures)
    try:
        while remaining:
            display.update(len(futures) - len(remaining), _erred(futures))
            await anyio.sleep(seconds)
            remaining = [f for f in remaining if not f.done()]
    except BaseException:
        display.abandon()
        raise
    display.finish(len(futures), _erred(futures))


def _is_timeout_or_cancel(error: BaseException) -> bool:
    import concurrent.futures

    import trioflow

    kinds: tuple[type[BaseException], ...] = (TimeoutError, concurrent.futures.CancelledError)
    for name in ("TimeoutError", "CancelledError"):
        kind = getattr(trioflow, name, None)
        if isinstance(kind, type) and issubclass(kind, BaseException):
            kinds += (kind,)
    return isinstance(error, kinds)

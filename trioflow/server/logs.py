"""A ring buffer of this process's recent trioflow log records, for
``get_scheduler_logs`` / ``get_worker_logs``."""
from __future__ import annotations

import logging
from collections import deque

_RECORDS: deque = deque(maxlen=10_000)


class _RingHandler(logging.Handler):
    def emit(self, record):
        try:
            _RECORDS.append((record.name, record.levelname, self.format(record)))
        except Exception:
            self.handleError(record)


_handler = _RingHandler(level=logging.INFO)
_handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))


def install() -> None:
    logger = logging.getLogger("trioflow")
    if _handler not in logger.handlers:
        logger.addHandler(_handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            # INFO reaches the ring buffer; the console handlers keep their own levels
            logger.setLevel(logging.INFO)


def recent(n=None, names=("trioflow",)) -> list[tuple[str, str]]:
    records = [(level, text) for name, level, text in _RECORDS
               if any(name == p or name.startswith(p + ".") for p in names)]
    return records[-n:] if n else records

"""Diagnostics for running computations: a progress bar for futures, and
self-contained HTML reports (``performance_report``)."""
from trioflow.diagnostics.progressbar import progress


def __getattr__(name):
    if name == "performance_report":  # loaded on first use
        from trioflow.diagnostics.performance_report import performance_report
        return performance_report
    raise AttributeError(f"module 'trioflow.diagnostics' has no attribute {name!r}")


__all__ = ["performance_report", "progress"]

"""Diagnostics for running computations: a progress bar for futures."""
from trioflow.diagnostics.progressbar import progress

__all__ = ["progress"]

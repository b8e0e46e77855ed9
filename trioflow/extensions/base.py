"""Moved to ``trioflow/server/extensions/base.py``; the primitives not yet
split in two halves still import it from here."""
from trioflow.server.extensions.base import SchedulerExtension, WorkerExtension  # noqa: F401

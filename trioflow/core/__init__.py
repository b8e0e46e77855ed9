"""Sans-I/O state machines: no trio, no sockets, no clock, no threads.

The shells in ``trioflow.server`` feed these objects events and carry out the
messages and instructions they return.
"""
from trioflow.core.scheduler_state import SchedulerState
from trioflow.core.worker_state import WorkerState

__all__ = ["SchedulerState", "WorkerState"]

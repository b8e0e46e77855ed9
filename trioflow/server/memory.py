"""A worker's memory: its thresholds, its data (in memory or spilled), its monitor.

The decisions (which key to spill, when to pause) are the core's
(``WorkerState``, see trioflow/core/worker_state.py); this module carries
them out and measures the process:

* ``memory_fractions`` reads dask's four thresholds from keyword arguments,
  else dask's configuration names (``distributed.worker.memory.target`` ...,
  ``DASK_DISTRIBUTED__WORKER__MEMORY__TARGET`` in the environment);
* ``SpillBuffer`` is the worker's ``data``: values in memory ("fast") and
  values written to files in the worker's own directory ("slow"), read back
  transparently; a spilled value served to a peer or a client is sent as the
  pickled frames in its file, without unpickling it;
* ``monitor`` measures the process's RSS every ``monitor-interval``.

Why not zict (dask's buffer)?  zict's ``Buffer`` decides for itself what to
evict when a value is stored, inside a mapping; here the sans-I/O core
decides, so that its invariants (every key in memory is in exactly one of
fast and slow storage; a paused worker starts nothing) are checked by the
state machine's property tests, and the scheduler is told what the core
knows.  What is left to carry out is small: write frames to a file, read
them back, delete the file.
"""
from __future__ import annotations

import logging
import os
import shutil
import struct
import tempfile
import time
from collections.abc import MutableMapping

import psutil
import trio

from trioflow.config import config_value, env_name
from trioflow.core import events as ev
from trioflow.protocol.serialize import Serialized, deserialize, dumps
from trioflow.server.stimuli import new_stimulus_id
from trioflow.utils import format_bytes, parse_timedelta

logger = logging.getLogger("trioflow.worker")

#: dask's defaults (worker-memory page of its documentation)
DEFAULT_FRACTIONS = {"target": 0.6, "spill": 0.7, "pause": 0.8, "terminate": 0.95}
SCRATCH = "trioflow-scratch-space"
#: at most one log line about spilling per this many seconds
SPILL_LOG_INTERVAL = 10.0


def parse_fraction(value, source: str):
    """A threshold: a fraction in (0, 1], or False for none."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("false", "no", "off", "none"):
            return False
        try:
            value = float(text)
        except ValueError:
            value = text
    if value is False:
        return False
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"{source} must be a fraction of memory_limit in (0, 1], or False "
                         f"to turn it off, not {value!r}")
    return float(value)


def memory_fractions(target=None, spill=None, pause=None, terminate=None) -> dict:
    """``{"target", "spill", "pause", "terminate"}`` from the arguments (None:
    not given), else dask's configuration, else dask's defaults."""
    given = {"target": target, "spill": spill, "pause": pause, "terminate": terminate}
    out = {}
    for name, default in DEFAULT_FRACTIONS.items():
        value = given[name]
        source = f"memory_{name}_fraction="
        if value is None:
            setting = f"distributed.worker.memory.{name}"
            value = config_value(setting, default)
            source = f"the setting {setting} ({env_name(setting)})"
        out[name] = parse_fraction(value, source)
    return out


def monitor_interval() -> float:
    setting = "distributed.worker.memory.monitor-interval"
    value = config_value(setting, "100ms")
    try:
        seconds = parse_timedelta(value)
    except ValueError as exc:
        raise ValueError(f"the setting {setting} ({env_name(setting)}): {exc}") from None
    if not seconds or seconds <= 0:
        raise ValueError(f"the setting {setting} must be a positive duration, not {value!r}")
    return seconds


def scratch_root(local_directory=None) -> str:
    """``<local_directory>/trioflow-scratch-space`` (default: dask's
    ``temporary-directory`` setting, else the system's temporary directory)."""
    base = local_directory or config_value("temporary-directory") or tempfile.gettempdir()
    root = os.path.join(os.fspath(base), SCRATCH)
    os.makedirs(root, exist_ok=True)
    return root


def make_worker_directory(local_directory=None, prefix: str = "worker-") -> str:
    return tempfile.mkdtemp(prefix=prefix, dir=scratch_root(local_directory))


# ---------------------------------------------------------------- the buffer

_HEADER = struct.Struct("<I")
_LENGTH = struct.Struct("<Q")


class SpillBuffer(MutableMapping):
    """The worker's data (a mapping, as dask's ``SpillBuffer``).  ``buffer[key]`` reads a spilled value from its file
    (leaving it there); ``spill``/``unspill`` move a key between memory and
    disk as the core says; storing a key keeps it in memory and drops any
    copy on disk."""

    def __init__(self, directory: str | None = None):
        self.directory = directory
        self.fast: dict = {}
        self.slow: dict = {}  # key -> (path, bytes on disk)
        self.disk_bytes = 0
        self._files = 0

    def __contains__(self, key) -> bool:
        return key in self.fast or key in self.slow

    def __len__(self) -> int:
        return len(self.fast) + len(self.slow)

    def __iter__(self):
        yield from list(self.fast)
        yield from list(self.slow)

    def __getitem__(self, key):
        try:
            return self.fast[key]
        except KeyError:
            pass
        path, _ = self.slow[key]
        return deserialize(Serialized(_read_frames(path)))

    def __setitem__(self, key, value):
        self._drop_file(key)
        self.fast[key] = value

    def __delitem__(self, key):
        if key not in self:
            raise KeyError(key)
        self.fast.pop(key, None)
        self._drop_file(key)

    def pop(self, key, default=None):
        """Forget ``key``; its value if it was in memory (a spilled one is not
        read back just to be dropped), else ``default``."""
        value = self.fast.pop(key, default)
        self._drop_file(key)
        return value

    def serialized(self, key) -> Serialized:
        """The value as frames to send: a spilled one straight from its file."""
        if key in self.fast:
            return Serialized(dumps(self.fast[key]))
        path, _ = self.slow[key]
        return Serialized(_read_frames(path))

    def spill(self, key) -> None:
        """Write ``key`` to disk and drop it from memory.  Raises if it cannot
        be pickled or written (it stays in memory)."""
        value = self.fast[key]
        frames = dumps(value)
        if self.directory is None:
            raise OSError("this worker has no local directory to spill to")
        self._files += 1
        path = os.path.join(self.directory, f"{self._files}.spill")
        try:
            size = _write_frames(path, frames)
        except BaseException:
            _unlink(path)
            raise
        del self.fast[key]
        self.slow[key] = (path, size)
        self.disk_bytes += size

    def unspill(self, key) -> None:
        if key in self.slow:
            value = self[key]
            self._drop_file(key)
            self.fast[key] = value

    def _drop_file(self, key):
        entry = self.slow.pop(key, None)
        if entry is not None:
            self.disk_bytes -= entry[1]
            _unlink(entry[0])

    def close(self):
        """Forget everything and remove the directory."""
        self.fast.clear()
        self.slow.clear()
        self.disk_bytes = 0
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def _write_frames(path: str, frames: list) -> int:
    views = [memoryview(f).cast("B") for f in frames]
    header = _HEADER.pack(len(views)) + b"".join(_LENGTH.pack(v.nbytes) for v in views)
    with open(path, "wb") as f:
        f.write(header)
        for view in views:
            f.write(view)
    return len(header) + sum(v.nbytes for v in views)


def _read_frames(path: str) -> list:
    with open(path, "rb") as f:
        data = bytearray(os.fstat(f.fileno()).st_size)
        f.readinto(data)
    view = memoryview(data)
    (n,) = _HEADER.unpack_from(view, 0)
    offset = _HEADER.size
    lengths = [_LENGTH.unpack_from(view, offset + i * _LENGTH.size)[0] for i in range(n)]
    offset += n * _LENGTH.size
    frames = []
    for length in lengths:
        frames.append(view[offset:offset + length])
        offset += length
    return frames


def _unlink(path: str):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------- carrying out

class WorkerMemory:
    """What a worker's shell does for memory: the buffer, the instructions
    ``Spill``/``Unspill``, the monitor and the log lines."""

    def __init__(self, memory_limit: int, fractions: dict, local_directory=None):
        self.memory_limit = memory_limit
        self.fractions = fractions
        self.local_directory = local_directory
        self.data = SpillBuffer()
        #: spill to exactly this directory (a nanny's, for its worker process)
        self.fixed_directory: str | None = None
        self._last_log = 0.0
        self._unlogged = [0, 0]  # keys, bytes spilled since the last log line
        self._process = None

    @property
    def monitored(self) -> bool:
        return bool(self.memory_limit and (self.fractions["spill"] or self.fractions["pause"]))

    def core_arguments(self) -> dict:
        """The keyword arguments of ``WorkerState`` for these thresholds."""
        return {"memory_limit": self.memory_limit,
                "memory_target_fraction": self.fractions["target"],
                "memory_spill_fraction": self.fractions["spill"],
                "memory_pause_fraction": self.fractions["pause"]}

    def start(self):
        if self.fixed_directory:
            os.makedirs(self.fixed_directory, exist_ok=True)
            self.data.directory = self.fixed_directory
        else:
            self.data.directory = make_worker_directory(self.local_directory)

    def close(self):
        self.data.close()

    def spill(self, key, address: str):
        """Carry out ``Spill``; the follow-up event if it failed."""
        if key not in self.data.fast:
            return None
        try:
            self.data.spill(key)
        except Exception as exc:  # noqa: BLE001 - unpicklable, disk full...
            text = f"{type(exc).__name__}: {exc}"
            logger.warning("worker %s could not spill %r to disk, keeping it in memory: %s",
                           address, key, text)
            return ev.SpillFailed(key, text, new_stimulus_id("spill-failed"))
        self._unlogged[0] += 1
        self._unlogged[1] += self.data.slow[key][1]
        return None

    def unspill(self, key):
        self.data.unspill(key)

    def log_spilling(self, address: str, report: dict, process_memory: int):
        now = time.monotonic()
        if self._unlogged[0] and now - self._last_log >= SPILL_LOG_INTERVAL:
            logger.warning(
                "worker %s spilled %d key(s) (%s) to disk in %s; now %s managed in memory, "
                "%d key(s) (%s) on disk, process memory %s of memory_limit %s", address,
                self._unlogged[0], format_bytes(self._unlogged[1]), self.data.directory,
                format_bytes(report["managed"]), report["spilled_keys"],
                format_bytes(report["spilled_bytes"]), format_bytes(process_memory),
                format_bytes(self.memory_limit))
            self._last_log = now
            self._unlogged = [0, 0]

    def log_status(self, address: str, status: str, process_memory: int):
        fraction = self.fractions["pause"]
        if status == "paused":
            logger.warning("worker %s pauses: process memory %s is past %d%% of memory_limit "
                           "%s; it starts no new tasks until it drops", address,
                           format_bytes(process_memory), round(fraction * 100),
                           format_bytes(self.memory_limit))
        else:
            logger.warning("worker %s resumes: process memory %s is below %d%% of "
                           "memory_limit %s", address, format_bytes(process_memory),
                           round(fraction * 100), format_bytes(self.memory_limit))

    def rss(self) -> int:
        if self._process is None:
            self._process = psutil.Process()
        try:
            return self._process.memory_info().rss
        except psutil.Error:
            return 0

    async def monitor(self, handle, interval: float):
        """Measure the process every ``interval`` seconds and tell the core."""
        while True:
            await trio.sleep(interval)
            handle(ev.MemoryMeasured(self.rss(), new_stimulus_id("memory-monitor")))

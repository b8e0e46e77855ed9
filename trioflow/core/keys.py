"""Key helpers shared by the core and the client (pure functions)."""
from __future__ import annotations

import re

Key = str | tuple

_HEX_TAIL = re.compile(r"^[0-9a-f]{8,}$")


def key_prefix(key: Key) -> str:
    """The human part of a key: ``'inc-0f3a...'`` -> ``'inc'``,
    ``('x-1a2b', 0, 1)`` -> ``'x'``.  Used to group durations and progress."""
    if isinstance(key, tuple):
        key = key[0] if key else ""
    key = str(key)
    words = key.split("-")
    kept = [w for w in words if w and not _HEX_TAIL.match(w) and not w.isdigit()]
    return "-".join(kept) or key

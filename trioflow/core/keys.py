"""Key helpers shared by the core and the client (pure functions)."""
from __future__ import annotations

import re

Key = str | tuple

_HEX_TAIL = re.compile(r"^[0-9a-f]{8,}$")

#: the kept words of a key's head -> that prefix, so that a million keys
#: ``inc-<token>`` compute it once and share one string
_PREFIXES: dict[str, str] = {}


def key_prefix(key: Key) -> str:
    """The human part of a key: ``'inc-0f3a...'`` -> ``'inc'``,
    ``('x-1a2b', 0, 1)`` -> ``'x'``.  Used to group durations and progress."""
    if isinstance(key, tuple):
        key = key[0] if key else ""
    key = str(key)
    head, dash, tail = key.rpartition("-")
    if not (dash and (tail.isdigit() or _HEX_TAIL.match(tail))):
        head = key  # the last word is kept: look at every word
    return _kept_words(head) or key


def _kept_words(text: str) -> str:
    kept = _PREFIXES.get(text)
    if kept is None:
        words = text.split("-")
        kept = "-".join(w for w in words if w and not _HEX_TAIL.match(w) and not w.isdigit())
        if len(_PREFIXES) >= 10_000:
            _PREFIXES.clear()
        kept = _PREFIXES[text] = _PREFIXES.get(kept, kept)
    return kept

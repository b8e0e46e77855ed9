"""What both state machines share: the error for an illegal move and the
bounded log of the moves they made (the raw material of ``Client.story``)."""
from __future__ import annotations

from collections import deque

#: transitions each state machine remembers, oldest dropped first
TRANSITION_LOG_LENGTH = 100_000


class InvalidTransition(RuntimeError):
    """A state machine was asked for a move its table does not allow: a bug in
    trioflow, never bad input.  Carries the key's recent story."""

    def __init__(self, key, start: str, finish: str, stimulus_id: str, story: list):
        self.key, self.start, self.finish = key, start, finish
        self.stimulus_id, self.story = stimulus_id, story
        super().__init__(f"illegal transition of {key!r}: {start} -> {finish} "
                         f"(stimulus {stimulus_id!r})")


class TransitionLog:
    """The last ``maxlen`` transitions as ``(key, start, finish, stimulus_id,
    time)`` tuples, in the order they happened."""

    def __init__(self, maxlen: int = TRANSITION_LOG_LENGTH):
        self.entries: deque = deque(maxlen=maxlen)

    def record(self, key, start: str, finish: str, stimulus_id: str, now: float):
        self.entries.append((key, start, finish, stimulus_id, now))

    def story(self, *keys_or_stimuli) -> list[tuple]:
        """The entries whose key or stimulus_id is one of ``keys_or_stimuli``."""
        wanted = set()
        for k in keys_or_stimuli:
            try:
                wanted.add(k)
            except TypeError:  # an unhashable argument matches nothing
                pass
        return [e for e in self.entries if _matches(e[0], wanted) or e[3] in wanted]

    def __len__(self):
        return len(self.entries)


def _matches(key, wanted) -> bool:
    try:
        return key in wanted
    except TypeError:
        return False


def validate_moved(tasks, known: dict, validate_task) -> None:
    """Check ``validate_task`` on each task still in ``known``; the others
    must have been forgotten, not dropped."""
    for ts in tasks:
        if known.get(ts.key) is ts:
            validate_task(ts)
        else:
            assert ts.state == "forgotten", f"task dropped without being forgotten: {ts}"

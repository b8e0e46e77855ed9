"""What both state machines share: the error for an illegal move and the
bounded log of the moves they made (the raw material of ``Client.story``)."""
from __future__ import annotations

from array import array

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
    time)`` tuples, in the order they happened.

    Kept as a ring of parallel columns (key, move, stimulus id, time), where a
    move ``(start, finish)`` is one tuple shared by every entry that makes it
    and the time a float in an array: 32 bytes an entry, instead of a 5-tuple's
    88 and a float object's 24."""

    def __init__(self, maxlen: int = TRANSITION_LOG_LENGTH):
        self.maxlen = maxlen
        self._keys: list = []
        self._moves: list = []
        self._stimuli: list = []
        self._times = array("d")
        self._next = 0  # where the next entry goes once the ring is full
        self._move_of: dict = {}

    def record(self, key, start: str, finish: str, stimulus_id: str, now: float):
        if self.maxlen <= 0:
            return
        move = self._move_of.get((start, finish))
        if move is None:
            move = self._move_of[(start, finish)] = (start, finish)
        if len(self._keys) < self.maxlen:
            self._keys.append(key)
            self._moves.append(move)
            self._stimuli.append(stimulus_id)
            self._times.append(now)
            return
        i = self._next
        self._keys[i], self._moves[i], self._stimuli[i], self._times[i] = (
            key, move, stimulus_id, now)
        self._next = (i + 1) % self.maxlen

    @property
    def entries(self) -> list[tuple]:
        """Every entry kept, oldest first."""
        n, i = len(self._keys), self._next
        order = list(range(i, n)) + list(range(i))
        keys, moves, stimuli, times = self._keys, self._moves, self._stimuli, self._times
        return [(keys[j], *moves[j], stimuli[j], times[j]) for j in order]

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
        return len(self._keys)


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

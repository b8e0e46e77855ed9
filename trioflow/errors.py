"""trioflow's exception hierarchy: what a user catches."""
from __future__ import annotations

import builtins


class TrioflowError(Exception):
    """Base class of trioflow's own errors."""


class TimeoutError(TrioflowError, builtins.TimeoutError):
    """A wait ran past its ``timeout=``.  Also a builtin ``TimeoutError``."""


class CancelledError(TrioflowError):
    """The future was cancelled: its result will never come."""


class KilledWorker(TrioflowError):
    """A task was running on too many workers that died; it is suspected of killing them."""


class FutureLostError(TrioflowError):
    """The scheduler lost a key for good (scattered data whose workers died, or
    a dependency released before the task that needed it was submitted)."""


class ActorLostError(FutureLostError):
    """An actor is gone: its worker left (actors are never recomputed) or it was
    released.  Calls on its proxies raise this."""


class CommClosedError(TrioflowError, ConnectionError):
    """The connection to a peer closed."""


class ProtocolError(TrioflowError):
    """A peer sent something that is not trioflow's protocol."""


class AuthenticationError(ProtocolError):
    """A server refused this process's token (or its lack of one) in the
    handshake; the message names the server and what was wrong."""


class SerializationError(TrioflowError, TypeError):
    """An object could not be pickled or unpickled; the message names it."""


_BY_NAME = {cls.__name__: cls for cls in (
    TimeoutError, CancelledError, KilledWorker, FutureLostError, ActorLostError, CommClosedError,
    ProtocolError, AuthenticationError, SerializationError)}


def error_from_kind(kind: str, text: str) -> Exception:
    """Rebuild one of trioflow's errors sent by name across the wire."""
    return _BY_NAME.get(kind, TrioflowError)(text)

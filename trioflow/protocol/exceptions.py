"""Exceptions across the wire: pickled with their traceback (via tblib), and
rebuilt on the other side with the remote frames attached."""
from __future__ import annotations

from tblib import Traceback

from trioflow.errors import error_from_kind
from trioflow.protocol.serialize import Serialized, deserialize, dumps


def pack_exception(exc: BaseException) -> tuple[Serialized | None, Serialized | None, str]:
    """(pickled exception, pickled traceback, text).  An exception that cannot
    be pickled is replaced by a RuntimeError that keeps its type and message."""
    text = f"{type(exc).__name__}: {exc}"
    try:
        exc_frames = Serialized(dumps(exc))
        # an exception that pickles but cannot be rebuilt is no use to the caller
        deserialize(exc_frames)
    except Exception:
        exc_frames = Serialized(dumps(RuntimeError(text)))
    tb_frames = None
    if exc.__traceback__ is not None:
        try:
            tb_frames = Serialized(dumps(Traceback(exc.__traceback__).as_dict()))
        except Exception:
            tb_frames = None
    return exc_frames, tb_frames, text


def unpack_traceback(tb_value):
    if tb_value is None:
        return None
    try:
        return Traceback.from_dict(deserialize(tb_value)).as_traceback()
    except Exception:
        return None


def unpack_exception(exc_value, tb_value, text: str = "", kind: str = "") -> BaseException:
    if exc_value is None:
        return error_from_kind(kind, text)
    try:
        exc = deserialize(exc_value)
    except Exception as e:
        exc = RuntimeError(f"{text} (the exception could not be unpickled here: {e})")
    tb = unpack_traceback(tb_value)
    if tb is not None:
        exc = exc.with_traceback(tb)
    return exc


def error_payload(exc: BaseException) -> dict:
    exc_frames, tb_frames, text = pack_exception(exc)
    return {"error": text, "exception": exc_frames, "traceback": tb_frames}


def exception_from_reply(reply: dict) -> BaseException:
    return unpack_exception(reply.get("exception"), reply.get("traceback"), reply.get("error", ""))

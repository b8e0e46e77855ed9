"""Batches of messages <-> a sequence of binary frames.

A batch (a list of message dicts) becomes

    header: msgpack list of the lengths of the frames that follow
    body:   msgpack of the messages
    data:   the frames of every ``Serialized`` in the messages, in order

A data frame sent from a ``bytes`` object has its length negated in the
header: the receiver then reads it into a ``bytes`` object of its own (a raw
bytes value arrives as itself, with no copy), and every other frame into a
writable buffer (so arrays unpickled over it are writable, as they were).

``Serialized`` values inside messages are encoded as a msgpack extension
naming their frames.  Each frame is one transport message; the transport
fragments and reassembles messages larger than its frame limit.  Arrays
decode as tuples, so keys that are tuples survive the round trip.
"""
from __future__ import annotations

import msgpack

from trioflow.errors import ProtocolError
from trioflow.protocol.serialize import Serialized

_EXT_SERIALIZED = 1


class UnencodableMessage(TypeError):
    """A message holds something msgpack cannot encode (raised before any
    of the batch is written, so the connection is still usable)."""



def encode_batch(msgs: list) -> list:
    """Return the frames to send: a header of lengths, the body, the data frames."""
    data_frames: list = []

    def default(obj):
        if isinstance(obj, Serialized):
            start = len(data_frames)
            data_frames.extend(obj.frames)
            return msgpack.ExtType(_EXT_SERIALIZED, msgpack.packb((start, len(obj.frames))))
        if isinstance(obj, (set, frozenset)):
            return list(obj)
        raise UnencodableMessage(f"cannot encode {type(obj).__name__} {obj!r:.60} in a message")

    try:
        body = msgpack.packb(msgs, default=default, use_bin_type=True)
    except UnencodableMessage:
        raise
    except (TypeError, ValueError, OverflowError) as exc:  # a huge int, a deep nesting
        raise UnencodableMessage(f"cannot encode a message: {exc}") from None
    lengths = [len(body)]
    for frame in data_frames:
        n = memoryview(frame).nbytes
        lengths.append(-n if type(frame) is bytes else n)
    return [msgpack.packb(lengths), body, *data_frames]


def decode_header(frame, max_bytes: int | None = None,
                  limit_name: str = "") -> list[tuple[int, bool]]:
    """``(nbytes, as_bytes)`` of each frame that follows, body first.  With
    ``max_bytes``, frames declaring more than that together are refused
    before anything is allocated for them."""
    try:
        lengths = msgpack.unpackb(frame, use_list=True)
        if not isinstance(lengths, list) or not lengths or not all(
                type(n) is int for n in lengths) or lengths[0] < 0:
            raise ValueError("not a list of frame lengths")
    except Exception as exc:
        raise ProtocolError(f"malformed frame header: {exc}") from None
    specs = [(abs(n), n < 0) for n in lengths]
    if max_bytes is not None:
        total = sum(n for n, _ in specs)
        if total > max_bytes:
            where = f" ({limit_name})" if limit_name else ""
            raise ProtocolError(f"message too large: its frames declare {total} bytes, "
                                f"more than the {max_bytes} allowed{where}")
    return specs


def decode_body(body, data_frames: list) -> list:
    def ext_hook(code, data):
        if code != _EXT_SERIALIZED:
            raise ValueError(f"unknown extension type {code}")
        start, n = msgpack.unpackb(data)
        if start < 0 or start + n > len(data_frames):
            raise ValueError("extension names frames that were not sent")
        return Serialized(data_frames[start:start + n])

    try:
        msgs = msgpack.unpackb(body, use_list=False, raw=False, strict_map_key=False,
                               ext_hook=ext_hook)
    except Exception as exc:
        raise ProtocolError(f"malformed frame: {exc}") from None
    if not isinstance(msgs, tuple) or not all(isinstance(m, dict) for m in msgs):
        raise ProtocolError("malformed frame: a batch must be a list of messages")
    return list(msgs)

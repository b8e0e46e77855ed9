"""Batches of messages <-> a sequence of binary frames.

A batch (a list of message dicts) becomes

    header: msgpack list of the lengths of the frames that follow
    body:   msgpack of the messages
    data:   the frames of every ``Serialized`` in the messages, in order

``Serialized`` values inside messages are encoded as a msgpack extension
naming their frames.  Data frames larger than ``CHUNK`` are sent as several
transport messages and reassembled by the receiver into one writable buffer.
Arrays decode as tuples, so keys that are tuples survive the round trip.
"""
from __future__ import annotations

import msgpack

from trioflow.errors import ProtocolError
from trioflow.protocol.serialize import Serialized

_EXT_SERIALIZED = 1

#: largest transport message; data frames above it are chunked
CHUNK = 8 * 1024 * 1024
#: frames this large are copied into writable memory on receipt (numpy arrays
#: built on read-only bytes would surprise a task that writes into its input)
_WRITABLE_MIN = 1024


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
        raise TypeError(f"cannot encode {type(obj).__name__} in a message")

    body = msgpack.packb(msgs, default=default, use_bin_type=True)
    lengths = [len(body), *(memoryview(f).nbytes for f in data_frames)]
    return [msgpack.packb(lengths), body, *data_frames]


def decode_header(frame) -> list:
    """The lengths of the frames that follow, body first."""
    try:
        lengths = msgpack.unpackb(frame, use_list=True)
        if not isinstance(lengths, list) or not lengths or not all(
                isinstance(n, int) and 0 <= n for n in lengths):
            raise ValueError("not a list of frame lengths")
    except Exception as exc:
        raise ProtocolError(f"malformed frame header: {exc}") from None
    return lengths


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


def chunks(frame) -> list:
    """Split one frame into transport-sized pieces (views, no copies)."""
    view = memoryview(frame).cast("B")
    if view.nbytes <= CHUNK:
        return [view]
    return [view[i:i + CHUNK] for i in range(0, view.nbytes, CHUNK)]


class FrameAssembler:
    """Collects transport messages back into whole data frames."""

    def __init__(self, length: int):
        self.length = length
        self.buffer = bytearray(length) if length >= _WRITABLE_MIN else None
        self.pieces: list = []
        self.received = 0

    def add(self, piece) -> bool:
        """Add one piece; True when the frame is complete."""
        n = len(piece)
        if self.received + n > self.length:
            raise ProtocolError(f"frame longer than announced ({self.length} bytes)")
        if self.buffer is not None:
            self.buffer[self.received:self.received + n] = piece
        else:
            self.pieces.append(piece)
        self.received += n
        return self.received == self.length

    def result(self):
        if self.buffer is not None:
            return self.buffer
        return b"".join(self.pieces)

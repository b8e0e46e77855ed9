"""The limits a server enforces on what a peer sends (see docs/limits.md).

``MAX_MESSAGE_SIZE`` bounds one batch (its header, body and data frames
together).  Its default is half of this machine's memory, dask's default
for a TCP comm's buffer; set ``TRIOFLOW_MAX_MESSAGE_SIZE`` (bytes, or a
string like ``"2GiB"``) in the environment of every process to change it.
Until the handshake is done only ``HANDSHAKE_MESSAGE_SIZE`` bytes per batch
are accepted, so an unauthenticated peer cannot make a server hold more
than that.
"""
from __future__ import annotations

import os

import psutil

from trioflow.utils import parse_bytes

ENV_VAR = "TRIOFLOW_MAX_MESSAGE_SIZE"
#: a batch before the handshake (hello, proof, welcome) is far smaller than this
HANDSHAKE_MESSAGE_SIZE = 16 * 1024
#: RFC 6455, section 5.5: a control frame carries at most 125 bytes
MAX_CONTROL_PAYLOAD = 125


def _configured_max_message_size() -> int:
    text = os.environ.get(ENV_VAR)
    if text:
        try:
            value = parse_bytes(text)
        except ValueError as exc:
            raise ValueError(f"{ENV_VAR}={text!r}: {exc}") from None
        if value < HANDSHAKE_MESSAGE_SIZE:
            raise ValueError(f"{ENV_VAR}={text!r} is below the {HANDSHAKE_MESSAGE_SIZE} "
                             "bytes a handshake needs")
        return value
    return psutil.virtual_memory().total // 2


MAX_MESSAGE_SIZE = _configured_max_message_size()

"""WebSocket transport (RFC 6455) written directly on trio sockets.

Why not trio-websocket: its protocol engine (wsproto) masks and copies every
payload in pure Python, which capped a 200 MB transfer at ~60 MB/s here.
This module speaks the same wire format with the copies taken out:

- a message is sent as frame headers plus views of the data, gathered by
  ``writev`` (numpy buffers go to the socket without being copied);
- a payload is received straight into one buffer of the announced size,
  allocated without being zero-filled (see ``buffers``), once the handshake
  is done and the peer proved the token; before that, and from peers of a
  server without a token, a large payload grows as its bytes arrive;
- every length a peer declares is checked against the limits of
  ``limits`` before anything is allocated;
- both loop on the system call until the kernel would block, and only then
  wait through trio (see ``socket_io``);
- messages larger than ``MAX_FRAME`` are fragmented into continuation frames
  and reassembled;
- our clients mask with the all-zero key, so unmasking costs nothing; a
  foreign client's nonzero mask is still honoured.

The opening handshake is the standard HTTP Upgrade, so the port also answers
ordinary websocket clients.
"""
from __future__ import annotations

import base64
import hashlib
import os
import ssl
import struct
from functools import partial

import trio

from trioflow.comm import buffers, limits, socket_io
from trioflow.comm.interface import Comm
from trioflow.errors import CommClosedError, ProtocolError
from trioflow.protocol.framing import decode_body, decode_header, encode_batch

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: payloads larger than this are split into continuation frames
MAX_FRAME = 64 * 1024 * 1024
#: most bytes an untrusted peer's payload grows by per read
_GROW_CHUNK = 1024 * 1024
#: parts smaller than this are coalesced into one send
_COALESCE = 64 * 1024
_HANDSHAKE_LIMIT = 16 * 1024
#: most bytes one TLS read asks for
_TLS_CHUNK = 1024 * 1024

_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0, 1, 2, 8, 9, 10
_OPCODES = frozenset((_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG))
_ZERO_MASK = b"\x00\x00\x00\x00"


def _accept_token(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def _frame_header(length: int, opcode: int, fin: bool, mask: bool) -> bytes:
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if mask else 0
    if length < 126:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    return header + _ZERO_MASK if mask else header


def _unmask(view: memoryview, key: bytes, offset: int) -> None:
    """XOR ``view`` in place with the mask ``key`` starting at phase ``offset``."""
    n = len(view)
    if n == 0:
        return
    rotated = key[offset % 4:] + key[:offset % 4]
    pattern = (rotated * (n // 4 + 1))[:n]
    value = int.from_bytes(view, "little") ^ int.from_bytes(pattern, "little")
    view[:] = value.to_bytes(n, "little")


class WSComm(Comm):
    def __init__(self, stream: trio.SocketStream, is_client: bool, local: str, peer: str,
                 leftover: bytes = b""):
        self._stream = stream
        # the TCP socket, for the bulk loops; None under TLS, where every byte
        # goes through the SSLStream
        self._sock = getattr(stream, "socket", None)
        self._bulk = self._sock is not None and socket_io.AVAILABLE
        self._is_client = is_client
        self._buffer = bytearray(leftover)
        self._send_lock = trio.Lock()
        self._closed = False
        # most bytes one batch may declare: small until the handshake is done
        self._limit = limits.HANDSHAKE_MESSAGE_SIZE
        # whether large payloads may be allocated at their announced size at once
        self._trusted = False
        self.local_address = local
        self.peer_address = peer

    def handshake_done(self, trusted: bool) -> None:
        self._limit = limits.MAX_MESSAGE_SIZE
        self._trusted = trusted

    # ---------------------------------------------------------------- sending

    async def send(self, msgs: list) -> None:
        if self._closed:
            raise CommClosedError(f"connection to {self.peer_address} is closed")
        parts: list = []
        for frame in encode_batch(msgs):
            view = memoryview(frame).cast("B")
            n = view.nbytes
            if n <= MAX_FRAME:
                parts.append(_frame_header(n, _OP_BINARY, True, self._is_client))
                parts.append(view)
                continue
            for start in range(0, n, MAX_FRAME):
                piece = view[start:start + MAX_FRAME]
                opcode = _OP_BINARY if start == 0 else _OP_CONT
                parts.append(_frame_header(piece.nbytes, opcode, start + MAX_FRAME >= n,
                                           self._is_client))
                parts.append(piece)
        try:
            async with self._send_lock:
                await self._send_parts(parts)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._closed = True
            raise CommClosedError(f"connection to {self.peer_address} closed: {exc}") from None

    async def _send_parts(self, parts):
        if self._bulk:
            await socket_io.send_all(self._sock, parts)
            return
        pending = bytearray()
        for part in parts:
            size = len(part) if isinstance(part, bytes) else part.nbytes
            if size < _COALESCE:
                pending += part
                continue
            if pending:
                await self._stream.send_all(pending)
                pending = bytearray()
            await self._stream.send_all(part)
        if pending:
            await self._stream.send_all(pending)

    # ---------------------------------------------------------------- receiving

    async def _fill(self, n: int) -> None:
        while len(self._buffer) < n:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise CommClosedError(f"connection to {self.peer_address} closed by the peer")
            self._buffer += chunk

    async def _take(self, n: int) -> bytes:
        await self._fill(n)
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    async def _read_into(self, view: memoryview) -> None:
        """Fill ``view`` exactly, first from what is buffered, then from the socket."""
        have = min(len(self._buffer), view.nbytes)
        if have:
            view[:have] = self._buffer[:have]
            del self._buffer[:have]
        pos = have
        if self._bulk:
            if pos < view.nbytes and not await socket_io.recv_exactly(self._sock, view[pos:]):
                raise CommClosedError(f"connection to {self.peer_address} closed by the peer")
            return
        while pos < view.nbytes:
            if self._sock is not None:
                got = await self._sock.recv_into(view[pos:], view.nbytes - pos)
            else:  # TLS: the stream decrypts into bytes of its own
                chunk = await self._stream.receive_some(min(view.nbytes - pos, _TLS_CHUNK))
                got = len(chunk)
                view[pos:pos + got] = chunk
            if got == 0:
                raise CommClosedError(f"connection to {self.peer_address} closed by the peer")
            pos += got

    async def _frame_header(self):
        first, second = await self._take(2)
        fin, opcode = bool(first & 0x80), first & 0x0F
        if first & 0x70:
            raise ProtocolError("malformed frame: reserved websocket bits set")
        if opcode not in _OPCODES:
            raise ProtocolError(f"malformed frame: unknown websocket opcode {opcode}")
        masked, length = bool(second & 0x80), second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self._take(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self._take(8))
            if length >> 63:
                raise ProtocolError("malformed frame: a 64-bit length with its top bit set")
        if opcode >= 8 and (length > limits.MAX_CONTROL_PAYLOAD or not fin):
            raise ProtocolError(f"malformed frame: a control frame of {length} bytes"
                                f"{'' if fin else ', fragmented'} (at most "
                                f"{limits.MAX_CONTROL_PAYLOAD}, unfragmented)")
        key = await self._take(4) if masked else None
        if masked == self._is_client:
            raise ProtocolError("malformed frame: wrong websocket masking direction")
        return fin, opcode, length, key

    async def _control(self, opcode: int, length: int, key) -> None:
        payload = bytearray(await self._take(length))
        if key is not None and key != _ZERO_MASK:
            _unmask(memoryview(payload), key, 0)
        if opcode == _OP_PING:
            async with self._send_lock:
                await self._stream.send_all(
                    _frame_header(len(payload), _OP_PONG, True, self._is_client) + payload)
        elif opcode == _OP_CLOSE:
            self._closed = True
            raise CommClosedError(f"connection to {self.peer_address} closed by the peer")

    async def _append(self, out: bytearray, length: int, key, offset: int) -> None:
        """Append ``length`` bytes of payload to ``out`` as they arrive, so that
        memory follows what the peer really sent, not what it announced."""
        start = len(out)
        have = min(len(self._buffer), length)
        if have:
            out += self._buffer[:have]
            del self._buffer[:have]
        while len(out) - start < length:
            chunk = await self._stream.receive_some(min(length - (len(out) - start), _GROW_CHUNK))
            if not chunk:
                raise CommClosedError(f"connection to {self.peer_address} closed by the peer")
            out += chunk
        if key is not None and key != _ZERO_MASK:
            with memoryview(out) as whole, whole[start:] as part:
                _unmask(part, key, offset)

    async def _message(self, expected: int | None, as_bytes: bool = False, limit: int = 0):
        """Read one websocket message.  With ``expected`` the payload goes into a
        buffer of that size: a ``bytes`` object if ``as_bytes``, else a writable
        one; without, the message (at most ``limit`` bytes) is returned as bytes."""
        grow = expected is None or (not self._trusted and expected >= buffers.MMAP_MIN)
        finish = None
        if grow:
            out = bytearray()
            if expected is None or as_bytes:
                finish = partial(bytes, out)
        elif as_bytes:
            out, finish = buffers.bytes_target(expected)
        else:
            out = buffers.writable(expected)
        bound = limit if expected is None else expected
        received = 0
        started = False
        while True:
            fin, opcode, length, key = await self._frame_header()
            if opcode >= 8:
                await self._control(opcode, length, key)
                continue
            if opcode == _OP_TEXT:
                raise ProtocolError("malformed frame: a text message where binary was expected")
            if (opcode == _OP_CONT) != started:
                raise ProtocolError("malformed frame: bad websocket fragmentation")
            started = True
            if received + length > bound:
                if expected is None:
                    raise ProtocolError(f"message too large: a frame header of more than "
                                        f"{limit} bytes (the limit is {self._limit} bytes "
                                        f"{self._limit_name()})")
                raise ProtocolError(f"malformed frame: data frame longer than the "
                                    f"announced {expected} bytes")
            if grow:
                await self._append(out, length, key, received)
            else:
                with memoryview(out)[received:received + length] as target:
                    await self._read_into(target)
                    if key is not None and key != _ZERO_MASK:
                        _unmask(target, key, received)
            received += length
            if fin:
                break
        if expected is not None and received != expected:
            raise ProtocolError(f"malformed frame: {received} bytes where {expected} were announced")
        return finish() if finish is not None else out

    def _limit_name(self) -> str:
        if self._limit == limits.HANDSHAKE_MESSAGE_SIZE:
            return "before the handshake"
        return f"per message, {limits.ENV_VAR}"

    async def recv(self) -> list:
        if self._closed:
            raise CommClosedError(f"connection to {self.peer_address} is closed")
        limit = self._limit
        try:
            header = await self._message(None, limit=limit)
            specs = decode_header(header, limit - len(header), self._limit_name())
            frames = [await self._message(n, as_bytes) for n, as_bytes in specs]
            return decode_body(frames[0], frames[1:])
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._closed = True
            raise CommClosedError(f"connection to {self.peer_address} closed: {exc}") from None
        except (CommClosedError, ProtocolError):
            raise
        except Exception as exc:
            # the boundary of parsing a peer's bytes: whatever else they make
            # the parser raise (a failed allocation, say) ends this connection only
            raise ProtocolError(f"malformed message: {type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            with trio.move_on_after(1) as scope:
                scope.shield = True
                try:
                    async with self._send_lock:
                        await self._stream.send_all(
                            _frame_header(0, _OP_CLOSE, True, self._is_client))
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
        await self._stream.aclose()

    @property
    def closed(self) -> bool:
        return self._closed


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _read_http_head(stream) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise CommClosedError("connection closed during the websocket handshake "
                                  "(a wss:// server asked for ws://?)")
        data += chunk
        if len(data) > _HANDSHAKE_LIMIT:
            raise ProtocolError("websocket handshake too long")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _headers(head: bytes) -> tuple[str, dict]:
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return lines[0], fields


def _tcp_socket(stream):
    return stream.transport_stream.socket if isinstance(stream, trio.SSLStream) else stream.socket


async def _open_tls(stream, host: str, ssl_context) -> trio.SSLStream:
    """TLS over ``stream``; a failed handshake is a configuration error, not a
    server still starting, so it raises ProtocolError (not retried)."""
    tls = trio.SSLStream(stream, ssl_context, server_hostname=host, https_compatible=True)
    try:
        await tls.do_handshake()
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError):
            raise ProtocolError(f"TLS handshake with {host} failed: {cause.reason or cause} "
                                "(check the certificates and CA in security=, and that the "
                                "server serves wss://)") from None
        raise
    return tls


async def connect(nursery: trio.Nursery, host: str, port: int, secure: bool,
                  ssl_context: ssl.SSLContext | None = None) -> Comm:
    stream = await trio.open_tcp_stream(host, port)
    try:
        if secure:
            stream = await _open_tls(stream, host, ssl_context or ssl.create_default_context())
        key = base64.b64encode(os.urandom(16))
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (host.encode(), port, key))
        head, rest = await _read_http_head(stream)
        status, fields = _headers(head)
        if " 101 " not in status + " " or fields.get("sec-websocket-accept", "").encode() != \
                _accept_token(key):
            raise ProtocolError(f"{host}:{port} did not accept a websocket: {status!r}")
    except trio.BrokenResourceError as exc:
        # a server closing down resets connections it has not served yet
        await trio.aclose_forcefully(stream)
        raise CommClosedError(f"connection to {host}:{port} broke during the websocket "
                              f"handshake: {exc}") from exc
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    local = _tcp_socket(stream).getsockname()
    scheme = "wss" if secure else "ws"
    return WSComm(stream, True, f"{scheme}://{_url_host(local[0])}:{local[1]}",
                  f"{scheme}://{_url_host(host)}:{port}", rest)


async def serve(host: str, port: int, handler, secure: bool,
                ssl_context: ssl.SSLContext | None = None,
                task_status=trio.TASK_STATUS_IGNORED):
    if secure and ssl_context is None:
        raise ValueError("serving wss:// needs a certificate: pass security=Security(...) "
                         "with one for this server's role")
    scheme = "wss" if secure else "ws"

    async def on_connection(stream: trio.SocketStream):
        peer = "?"
        try:
            peer = stream.socket.getpeername()
            with trio.fail_after(10):
                if secure:
                    stream = trio.SSLStream(stream, ssl_context, server_side=True,
                                            https_compatible=True)
                    await stream.do_handshake()
                head, rest = await _read_http_head(stream)
                request, fields = _headers(head)
                key = fields.get("sec-websocket-key")
                if not request.startswith("GET ") or "websocket" not in \
                        fields.get("upgrade", "").lower() or not key:
                    await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    raise ProtocolError(f"not a websocket request: {request[:60]!r}")
                await stream.send_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                    % _accept_token(key.encode()))
        except (ProtocolError, CommClosedError, trio.TooSlowError, trio.BrokenResourceError,
                OSError) as exc:
            import logging
            cause = exc.__cause__ if isinstance(exc.__cause__, ssl.SSLError) else None
            logging.getLogger("trioflow.comm").warning(
                "closing connection from %s: %s", peer,
                f"TLS handshake failed: {cause.reason or cause}" if cause is not None
                else exc or type(exc).__name__)
            await trio.aclose_forcefully(stream)
            return
        await handler(WSComm(stream, False, f"{scheme}://{_url_host(host)}:{bound_port}",
                             f"{scheme}://{_url_host(str(peer[0]))}:{peer[1]}", rest))

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, on_connection, port,
                                                host=host or None))
        bound_port = listeners[0].socket.getsockname()[1]
        task_status.started(f"{scheme}://{_url_host(host)}:{bound_port}")

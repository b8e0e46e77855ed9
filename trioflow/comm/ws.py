"""Websocket transport over trio-websocket."""
from __future__ import annotations

import ssl

import trio
from trio_websocket import (ConnectionClosed, HandshakeError, WebSocketConnection,
                            connect_websocket, serve_websocket)

from trioflow.comm.core import Comm
from trioflow.errors import CommClosedError, ProtocolError
from trioflow.protocol.framing import CHUNK, FrameAssembler, chunks, decode_body, decode_header, encode_batch

#: transport message limit: a data chunk plus room for a large batch's header
MAX_MESSAGE = CHUNK + 1024 * 1024
RECEIVE_BUFFER = 1024 * 1024


class WSComm(Comm):
    def __init__(self, ws: WebSocketConnection, local: str, peer: str):
        self._ws = ws
        self.local_address = local
        self.peer_address = peer
        self._send_lock = trio.Lock()

    async def send(self, msgs: list) -> None:
        frames = encode_batch(msgs)
        try:
            async with self._send_lock:
                for frame in frames:
                    for piece in chunks(frame):
                        await self._ws.send_message(bytes(piece))
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise CommClosedError(f"connection to {self.peer_address} closed: {exc}") from None

    async def _get(self):
        try:
            message = await self._ws.get_message()
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise CommClosedError(f"connection to {self.peer_address} closed: {exc}") from None
        if isinstance(message, str):
            raise ProtocolError("malformed frame: a text message where binary was expected")
        return message

    async def recv(self) -> list:
        lengths = decode_header(await self._get())
        frames = []
        for length in lengths:
            if length == 0:
                frames.append(b"")
                continue
            assembler = FrameAssembler(length)
            while not assembler.add(await self._get()):
                pass
            frames.append(assembler.result())
        return decode_body(frames[0], frames[1:])

    async def aclose(self) -> None:
        with trio.move_on_after(2) as scope:
            scope.shield = True
            await self._ws.aclose()

    @property
    def closed(self) -> bool:
        return self._ws.closed is not None


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def connect(nursery: trio.Nursery, host: str, port: int, secure: bool) -> Comm:
    try:
        ws = await connect_websocket(
            nursery, host, port, "/", use_ssl=ssl.create_default_context() if secure else False,
            max_message_size=MAX_MESSAGE, receive_buffer_size=RECEIVE_BUFFER)
    except HandshakeError as exc:
        raise CommClosedError(f"websocket handshake with {host}:{port} failed: {exc}") from None
    scheme = "wss" if secure else "ws"
    local = ws.local
    return WSComm(ws, f"{scheme}://{_url_host(str(local.address))}:{local.port}",
                  f"{scheme}://{_url_host(host)}:{port}")


async def serve(host: str, port: int, handler, secure: bool, task_status=trio.TASK_STATUS_IGNORED):
    scheme = "wss" if secure else "ws"

    async def on_request(request):
        ws = await request.accept()
        remote = ws.remote
        peer = f"{scheme}://{_url_host(str(getattr(remote, 'address', '?')))}:{getattr(remote, 'port', 0)}"
        await handler(WSComm(ws, f"{scheme}://{_url_host(host)}:{port}", peer))

    if secure:
        raise ProtocolError("wss:// serving needs an SSL context; not configured")

    class _Started:
        def started(self, server):
            bound = server.port
            task_status.started(f"{scheme}://{_url_host(host)}:{bound}")

    await serve_websocket(on_request, host, port, None, max_message_size=MAX_MESSAGE,
                          receive_buffer_size=RECEIVE_BUFFER, connect_timeout=10,
                          disconnect_timeout=2, task_status=_Started())

"""The wire: batching, out-of-band buffers, fragmentation, handshake, bad
input closing one connection without hurting the server, and the bulk
socket loops (writev/readv) under the websocket transport.  (Hostile input
at scale is in test_wire_fuzz.py.)"""
from __future__ import annotations

import os
import socket

import msgpack
import numpy as np
import pytest
import trio
import trio.testing

from _util import raw_ws_connect
from trioflow.comm import buffers, connect, serve, socket_io
from trioflow.comm import ws as ws_module
from trioflow.comm.connection import Connection, reply_ok
from trioflow.errors import CommClosedError, ProtocolError
from trioflow.protocol.framing import decode_body, decode_header, encode_batch
from trioflow.protocol.serialize import Serialized, deserialize, serialize

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "trio"


def test_batch_round_trip_keeps_tuple_keys_and_buffers_out_of_band():
    array = np.arange(100_000, dtype="f8")
    value = serialize(array)
    assert len(value.frames) == 2, "the array's data should travel as its own frame"
    assert value.frames[1].obj is array or np.shares_memory(np.frombuffer(value.frames[1], "f8"), array)
    msgs = [{"op": "a", "key": ("x", 1), "data": value}, {"op": "b", "keys": {("y", 2): 3}}]
    frames = encode_batch(msgs)
    specs = decode_header(frames[0])
    assert specs == [(len(frames[1]), False),
                     *((memoryview(f).nbytes, type(f) is bytes) for f in frames[2:])]
    assert specs[-1] == (array.nbytes, False), "array data must arrive in a writable buffer"
    out = decode_body(frames[1], [bytearray(f) for f in frames[2:]])
    assert out[0]["key"] == ("x", 1)
    assert out[1]["keys"] == {("y", 2): 3}
    back = deserialize(out[0]["data"])
    assert np.array_equal(back, array) and back.flags.writeable


def test_decode_rejects_garbage_with_protocol_error():
    with pytest.raises(ProtocolError, match="malformed"):
        decode_header(b"\xc1\xc1\xc1")
    with pytest.raises(ProtocolError, match="malformed"):
        decode_body(msgpack.packb({"not": "a list"}), [])
    with pytest.raises(ProtocolError, match="malformed"):
        decode_body(msgpack.packb([msgpack.ExtType(1, msgpack.packb((0, 5)))]), [])


async def _echo_server(nursery, address="ws://127.0.0.1:0", token=None):
    async def handler(comm):
        conn = Connection(comm, lambda msg: conn.send(reply_ok(msg, msg.get("payload"))))
        await conn.run()

    return await nursery.start(lambda task_status: serve(address, handler, token=token,
                                                          task_status=task_status))


@pytest.mark.parametrize("scheme", ["ws", "inproc"])
async def test_request_reply_with_large_buffer(scheme):
    data = np.random.default_rng(0).random(500_000)
    async with trio.open_nursery() as nursery:
        address = await _echo_server(nursery, "ws://127.0.0.1:0" if scheme == "ws"
                                     else "inproc://echo-test")
        conn = Connection(await connect(address, nursery))
        nursery.start_soon(conn.run)
        back = deserialize(await conn.request({"op": "echo", "payload": serialize(data)}))
        assert np.array_equal(back, data)
        conn.close()
        nursery.cancel_scope.cancel()


async def test_large_messages_are_fragmented_and_reassembled(monkeypatch):
    monkeypatch.setattr(ws_module, "MAX_FRAME", 64 * 1024)
    data = bytes(range(256)) * 4096 * 3  # 3 MiB: 48 fragments
    async with trio.open_nursery() as nursery:
        address = await _echo_server(nursery)
        conn = Connection(await connect(address, nursery))
        nursery.start_soon(conn.run)
        back = deserialize(await conn.request({"op": "echo", "payload": serialize(data)}))
        assert back == data
        conn.close()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("direct_bytes", [True, False])
@pytest.mark.parametrize("bulk_socket_io", [True, False])
async def test_large_values_arrive_as_their_own_types(monkeypatch, direct_bytes, bulk_socket_io):
    """A large bytes value arrives as bytes, and a large array as a writable
    array, whether or not bytes can be filled in place on this interpreter,
    and whether or not the platform has the writev/readv loops."""
    if not direct_bytes:
        monkeypatch.setattr(buffers, "_new_bytes", None)
    if not bulk_socket_io:
        monkeypatch.setattr(ws_module.socket_io, "AVAILABLE", False)
    blob = np.random.default_rng(2).bytes(6 * 1024 * 1024)
    array = np.random.default_rng(3).random(1_000_000)  # 8 MB: an mmap with huge pages
    async with trio.open_nursery() as nursery:
        address = await _echo_server(nursery)
        conn = Connection(await connect(address, nursery))
        nursery.start_soon(conn.run)
        back = deserialize(await conn.request({"op": "echo", "payload": serialize(blob)}))
        assert type(back) is bytes and back == blob
        back = deserialize(await conn.request({"op": "echo", "payload": serialize(array)}))
        assert np.array_equal(back, array) and back.flags.writeable
        back[0] = -1.0  # its memory is its own
        assert array[0] != -1.0
        conn.close()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("n", [1, 1000, buffers.MMAP_MIN, buffers.HUGEPAGE_MIN + 4097])
def test_receive_buffers_hold_what_is_written(n):
    target, finish = buffers.bytes_target(n)
    target[:] = bytes([7]) * n
    target[-1] = 9
    out = finish()
    assert type(out) is bytes and len(out) == n and out[0] in (7, 9) and out[-1] == 9
    assert hash(out) == hash(bytes(out))
    buffer = buffers.writable(n)
    view = memoryview(buffer)
    view[-1] = 5
    assert len(buffer) == n and buffer[-1] == 5


class _Payload:
    """Stands for a large value in process: weakly referenceable, so a test
    can see it go."""


@pytest.mark.parametrize("scheme", ["ws", "inproc"])
async def test_idle_connections_keep_no_sent_or_received_data_alive(scheme):
    """Once a request and its reply have been handled, neither end's
    connection holds on to them: a worker must free a gathered array when its
    key is released, not when the next message happens to come by.  With a
    token: only a peer that proved it gets large frames received in place."""
    import gc
    import weakref
    kept = []  # weak references to what the server received
    async with trio.open_nursery() as nursery:
        async def handler(comm):
            def on_message(msg):
                payload = msg["payload"]
                # over ws, the buffer the data arrived in
                kept.append(weakref.ref(payload.frames[-1] if scheme == "ws" else payload))
                conn.send(reply_ok(msg, payload))
            conn = Connection(comm, on_message)
            await conn.run()

        address = await nursery.start(lambda task_status: serve(
            "ws://127.0.0.1:0" if scheme == "ws" else "inproc://idle-test", handler,
            token="idle-test", task_status=task_status))
        conn = Connection(await connect(address, nursery, token="idle-test"))
        nursery.start_soon(conn.run)
        payload = np.ones(2 * buffers.MMAP_MIN // 8) if scheme == "ws" else _Payload()
        sent = weakref.ref(payload)
        back = await conn.request({"op": "keep", "payload": serialize(payload) if scheme == "ws"
                                   else payload})
        del payload, back
        # the server's send loop finishes its send just after we have the reply
        with trio.move_on_after(2):
            while sent() is not None or kept[0]() is not None:
                gc.collect()
                await trio.sleep(0.01)
        assert sent() is None, "the sending side kept the request"
        assert kept[0]() is None, "the receiving side kept the request or the reply"
        conn.close()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("garbage", [
    b"\x82\x85\x00\x00\x00\x00hello",      # a well-formed frame holding no batch header
    b"\x81\x80\x00\x00\x00\x00",            # a text frame
    b"\x82\x7f\xff\xff\xff\xff\xff\xff",   # truncated: length announced, then nothing
    b"GET / HTTP/1.1\r\n\r\n",             # not a frame at all
])
async def test_malformed_frame_closes_only_that_connection(garbage, caplog):
    async with trio.open_nursery() as nursery:
        address = await _echo_server(nursery)
        port = int(address.rsplit(":", 1)[1])

        def send_garbage():
            sock = raw_ws_connect(port)
            try:
                sock.recv(65536)  # the server's hello
                sock.sendall(garbage)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass  # read until the server closes this connection
            finally:
                sock.close()

        with trio.fail_after(10):
            await trio.to_thread.run_sync(send_garbage)
        # the server still answers a proper client
        conn = Connection(await connect(address, nursery))
        nursery.start_soon(conn.run)
        assert await conn.request({"op": "echo", "payload": 7}) == 7
        conn.close()
        nursery.cancel_scope.cancel()
    assert any("closing connection" in r.message for r in caplog.records)


async def test_server_refuses_a_peer_of_another_protocol_version():
    async with trio.open_nursery() as nursery:
        address = await _echo_server(nursery)
        port = int(address.rsplit(":", 1)[1])
        raw = await ws_module.connect(nursery, "127.0.0.1", port, False)
        [hello] = await raw.recv()
        assert hello["op"] == "hello"
        await raw.send([{"op": "hello", "version": 999, "info": {}}])
        [answer] = await raw.recv()
        assert answer["op"] == "refused" and "version mismatch" in answer["text"]
        await raw.aclose()
        conn = Connection(await connect(address, nursery))  # others still welcome
        nursery.start_soon(conn.run)
        assert await conn.request({"op": "echo", "payload": 1}) == 1
        conn.close()
        nursery.cancel_scope.cancel()


async def test_client_refuses_a_server_of_another_protocol_version():
    async def old_server(stream_comm):
        await stream_comm.send([{"op": "hello", "version": 999, "nonce": b"x", "auth": False}])
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        address = await nursery.start(lambda task_status: ws_module.serve(
            "127.0.0.1", 0, old_server, False, task_status=task_status))
        with pytest.raises(ProtocolError, match="version mismatch"):
            await connect(address, nursery)
        nursery.cancel_scope.cancel()


async def test_wrong_token_is_refused_and_right_token_accepted():
    async with trio.open_nursery() as nursery:
        address = await _echo_server(nursery, token="s3cret")
        with pytest.raises(ProtocolError, match="token"):
            await connect(address, nursery, token="wrong")
        with pytest.raises(ProtocolError, match="requires a token"):
            await connect(address, nursery)
        conn = Connection(await connect(address, nursery, token="s3cret"))
        nursery.start_soon(conn.run)
        assert await conn.request({"op": "echo", "payload": "ok"}) == "ok"
        conn.close()
        nursery.cancel_scope.cancel()


async def test_connect_to_nothing_times_out_clearly():
    from trioflow.errors import TimeoutError
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    async with trio.open_nursery() as nursery:
        with pytest.raises(TimeoutError, match="could not connect"):
            await connect(f"ws://127.0.0.1:{port}", nursery, timeout=0.5)


async def test_closed_connection_fails_pending_requests():
    async with trio.open_nursery() as nursery:
        never = trio.Event()

        async def silent(comm):
            await never.wait()

        address = await nursery.start(lambda task_status: serve(
            "ws://127.0.0.1:0", silent, task_status=task_status))
        conn = Connection(await connect(address, nursery))
        nursery.start_soon(conn.run)

        async def close_soon():
            await trio.sleep(0)
            conn.close("test closes it")

        nursery.start_soon(close_soon)
        with pytest.raises(CommClosedError):
            await conn.request({"op": "echo"})
        never.set()
        nursery.cancel_scope.cancel()


def test_serialized_payload_is_not_unpickled_by_the_framing():
    class Boom:
        def __reduce__(self):
            return (_explode, ())

    frames = encode_batch([{"op": "x", "data": serialize(Boom())}])
    out = decode_body(frames[1], [bytearray(f) for f in frames[2:]])
    assert isinstance(out[0]["data"], Serialized)  # opaque until someone asks
    with pytest.raises(RuntimeError, match="unpickled"):
        deserialize(out[0]["data"])


def _explode():
    raise RuntimeError("unpickled")


# --- the bulk socket loops under the websocket transport ------------------------------
# Everything arrives in order through partial writes, a closed peer or
# socket is reported, and cancellation still stops a call that is waiting.

needs_socket_io = pytest.mark.skipif(not socket_io.AVAILABLE, reason="POSIX writev/readv only")


def _parts():
    # more buffers than one writev takes, of uneven sizes (some empty), and
    # far more bytes than a socket buffer holds, so writes come back partial
    sizes = [(i * 7919) % 20_000 for i in range(2_500)]
    return [os.urandom(size) for size in sizes]


@needs_socket_io
async def test_send_all_delivers_every_part_in_order_through_partial_writes():
    parts = _parts()
    expected = b"".join(parts)
    left, right = trio.socket.socketpair()
    received = bytearray(len(expected))
    with left, right:
        async with trio.open_nursery() as nursery:
            async def read():
                assert await socket_io.recv_exactly(right, memoryview(received))

            nursery.start_soon(read)
            await socket_io.send_all(left, [memoryview(p) for p in parts[:10]] + parts[10:])
    assert received == expected


@needs_socket_io
async def test_recv_exactly_reports_a_peer_that_closes_early():
    left, right = trio.socket.socketpair()
    with right:
        await socket_io.send_all(left, [b"only ten b"])
        left.close()
        buffer = bytearray(20)
        assert await socket_io.recv_exactly(right, memoryview(buffer)) is False
        assert buffer[:10] == b"only ten b"


@needs_socket_io
async def test_a_waiting_receive_can_be_cancelled_and_the_socket_still_works():
    left, right = trio.socket.socketpair()
    with left, right:
        buffer = bytearray(4)
        with trio.move_on_after(0.05) as scope:
            await socket_io.recv_exactly(right, memoryview(buffer))
        assert scope.cancelled_caught
        await socket_io.send_all(left, [b"ping"])
        assert await socket_io.recv_exactly(right, memoryview(buffer))
        assert buffer == b"ping"


@needs_socket_io
async def test_a_waiting_send_can_be_cancelled():
    left, right = trio.socket.socketpair()
    with left, right:
        with trio.move_on_after(0.05) as scope:
            # nobody reads: the kernel buffers fill and the send must wait
            await socket_io.send_all(left, [bytes(64 * 1024 * 1024)])
        assert scope.cancelled_caught


@needs_socket_io
async def test_closing_the_socket_wakes_a_waiting_receive():
    left, right = trio.socket.socketpair()
    with left:
        async with trio.open_nursery() as nursery:
            async def receive():
                with pytest.raises(trio.ClosedResourceError):
                    await socket_io.recv_exactly(right, memoryview(bytearray(4)))

            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            right.close()


@needs_socket_io
async def test_a_closed_socket_fails_with_oserror():
    left, right = trio.socket.socketpair()
    right.close()
    left.close()
    with pytest.raises(OSError):
        await socket_io.send_all(left, [b"x"])
    with pytest.raises(OSError):
        await socket_io.recv_exactly(left, memoryview(bytearray(1)))


@needs_socket_io
async def test_every_call_is_a_checkpoint():
    left, right = trio.socket.socketpair()
    with left, right:
        await socket_io.send_all(left, [b"abcd"])
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await socket_io.recv_exactly(right, memoryview(bytearray(4)))
            with pytest.raises(trio.Cancelled):
                await socket_io.send_all(left, [b"x"])
        # nothing was consumed by the cancelled receive
        buffer = bytearray(4)
        assert await socket_io.recv_exactly(right, memoryview(buffer))
        assert buffer == b"abcd"

"""The bulk socket loops under the websocket transport: everything arrives in
order through partial writes, a closed peer or socket is reported, and
cancellation still stops a call that is waiting."""
from __future__ import annotations

import os

import pytest
import trio
import trio.testing

from trioflow.comm import socket_io

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not socket_io.AVAILABLE, reason="POSIX writev/readv only"),
]


@pytest.fixture
def anyio_backend():
    return "trio"


def _parts():
    # more buffers than one writev takes, of uneven sizes (some empty), and
    # far more bytes than a socket buffer holds, so writes come back partial
    sizes = [(i * 7919) % 20_000 for i in range(2_500)]
    return [os.urandom(size) for size in sizes]


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


async def test_recv_exactly_reports_a_peer_that_closes_early():
    left, right = trio.socket.socketpair()
    with right:
        await socket_io.send_all(left, [b"only ten b"])
        left.close()
        buffer = bytearray(20)
        assert await socket_io.recv_exactly(right, memoryview(buffer)) is False
        assert buffer[:10] == b"only ten b"


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


async def test_a_waiting_send_can_be_cancelled():
    left, right = trio.socket.socketpair()
    with left, right:
        with trio.move_on_after(0.05) as scope:
            # nobody reads: the kernel buffers fill and the send must wait
            await socket_io.send_all(left, [bytes(64 * 1024 * 1024)])
        assert scope.cancelled_caught


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


async def test_a_closed_socket_fails_with_oserror():
    left, right = trio.socket.socketpair()
    right.close()
    left.close()
    with pytest.raises(OSError):
        await socket_io.send_all(left, [b"x"])
    with pytest.raises(OSError):
        await socket_io.recv_exactly(left, memoryview(bytearray(1)))


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

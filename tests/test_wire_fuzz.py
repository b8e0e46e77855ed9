"""A hostile peer against a real scheduler's and a real worker's ws port.

Each example sends one kind of abuse — random bytes, garbage websocket
frames, hostile lengths, truncated frames, oversized control frames,
well-formed messages with wrong-typed fields for every op — and then checks
that both servers are alive, answer a normal client, and stay under a
memory bound.  Two clusters: one with a token, one without.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import struct

import msgpack
import psutil
import pytest
import trio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from _util import cli_scheduler, cli_worker, log_tail, raw_ws_connect, wait_until
from trioflow.comm import connect
from trioflow.comm.connection import Connection
from trioflow.protocol import messages
from trioflow.protocol.framing import encode_batch
from trioflow.protocol.serialize import serialize

TOKEN = "fuzz-token"
#: how much a server's memory may grow over the whole module
RSS_GROWTH_BOUND = 300 * 1024 * 1024
FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


class Target:
    def __init__(self, token, scheduler_proc, worker_proc, scheduler, worker, directory):
        self.token = token
        self.procs = {"scheduler": scheduler_proc, "worker": worker_proc}
        self.addresses = {"scheduler": scheduler, "worker": worker}
        self.directory = directory
        self.baseline = {name: self.rss(name) for name in self.procs}

    def rss(self, name) -> int:
        return psutil.Process(self.procs[name].pid).memory_info().rss

    def port(self, name) -> int:
        return int(self.addresses[name].rsplit(":", 1)[1])

    def logs(self) -> str:
        return (f"--- scheduler ---\n{log_tail(self.directory / 'scheduler.log')}\n"
                f"--- worker ---\n{log_tail(self.directory / 'worker.log')}")

    def check_healthy(self):
        """Both alive, both answer a normal client, memory within the bound."""
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"the {name} died:\n{self.logs()}"
        trio.run(_normal_requests, self)
        for name in self.procs:
            growth = self.rss(name) - self.baseline[name]
            assert growth < RSS_GROWTH_BOUND, f"the {name} grew by {growth} bytes"


async def _normal_requests(target: Target):
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for name, op in (("scheduler", "worker-addresses"), ("worker", "identity")):
                comm = await connect(target.addresses[name], nursery, token=target.token,
                                     info={"role": "client", "id": "fuzz-checker"})
                conn = Connection(comm)
                nursery.start_soon(conn.run)
                result = await conn.request({"op": op})
                assert result, f"{name} answered {op!r} with {result!r}"
                conn.close()


@pytest.fixture(scope="module", params=["token", "no-token"])
def target(request, tmp_path_factory):
    token = TOKEN if request.param == "token" else None
    directory = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    extra = ("--token", token) if token else ()
    # without --no-token the CLI scheduler would make a token of its own
    with cli_scheduler(directory, *(extra or ("--no-token",))) as (sched_proc, address,
                                                                   scheduler_file):
        assert json.loads(scheduler_file.read_text()).get("token") == token
        with cli_worker(directory, address, "--no-nanny", "--nthreads", "1", *extra) as wproc:
            async def worker_address():
                async with trio.open_nursery() as nursery:
                    comm = await connect(address, nursery, token=token,
                                         info={"role": "client", "id": "fuzz-setup"})
                    conn = Connection(comm)
                    nursery.start_soon(conn.run)
                    with trio.fail_after(30):
                        while True:
                            workers = await conn.request({"op": "worker-addresses"})
                            if workers:
                                conn.close()
                                return workers[0]
                            await trio.sleep(0.05)

            worker = trio.run(worker_address)
            yield Target(token, sched_proc, wproc, address, worker, directory)


# ---------------------------------------------------------------- raw websocket


def _frame(payload: bytes, opcode: int = 2, fin: bool = True, declared: int | None = None,
           mask: bytes = b"\x00\x00\x00\x00") -> bytes:
    """A client frame (masked); ``declared`` is the length the header claims."""
    n = len(payload) if declared is None else declared
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if mask != bytes(4) else payload
    return header + mask + masked


def _recv_frame(sock) -> bytes:
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the server closed the connection"
            data += chunk
        return data
    _, second = exactly(2)
    n = second & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", exactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", exactly(8))
    return exactly(n)


def _recv_batch(sock) -> list:
    lengths = msgpack.unpackb(_recv_frame(sock))
    return msgpack.unpackb(_recv_frame(sock), raw=False) if lengths else []


def _send_batch(sock, msgs: list) -> None:
    sock.sendall(b"".join(_frame(bytes(memoryview(f).cast("B"))) for f in encode_batch(msgs)))


def _handshaken(port: int, token, info: dict) -> socket.socket:
    """A raw connection past the trioflow handshake."""
    sock = raw_ws_connect(port)
    hello = _recv_batch(sock)[0]
    reply = {"op": "hello", "version": hello["version"], "info": info}
    if token is not None:
        reply["proof"] = hmac.new(token.encode(), hello["nonce"], hashlib.sha256).digest()
    _send_batch(sock, [reply])
    assert _recv_batch(sock)[0]["op"] == "welcome"
    return sock


def _send_and_close(sock, data: bytes) -> None:
    try:
        sock.sendall(data)
        sock.settimeout(0.05)
        try:
            sock.recv(65536)
        except (socket.timeout, OSError):
            pass
    except OSError:
        pass  # the server closed first: what it should do with most of these
    finally:
        sock.close()


def _closes(sock, data: bytes, timeout: float = 10) -> bool:
    """Send ``data``; True once the server has closed the connection."""
    sock.sendall(data)
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except (socket.timeout, ConnectionResetError):
        return False
    finally:
        sock.close()


_INFO = {"scheduler": {"role": "client", "id": "fuzzer"}, "worker": {"role": "client"}}

# ---------------------------------------------------------------- the issue's crashers

HOSTILE_LENGTHS = [-1, -2**40, -2**63, 2**62, 2**63 + 1, 2**64 - 1, 2**40, 10**12]


@pytest.mark.parametrize("server", ["scheduler", "worker"])
@pytest.mark.parametrize("case", ["frame-length-2^63+1", "header-[2^63+1]", "header-[10,-2^40]",
                                  "header-[10,-2^63]",
                                  "1-GiB-before-handshake", "1-TiB-ping", "header-[2^62]"])
def test_a_crasher_of_issue_13_closes_only_its_connection(target, server, case):
    port = target.port(server)
    if case == "frame-length-2^63+1":
        sock, data = raw_ws_connect(port), struct.pack("!BBQ", 0x82, 0xFF, 2**63 + 1) + bytes(4)
    elif case == "1-GiB-before-handshake":
        sock, data = raw_ws_connect(port), _frame(b"", declared=2**30)
    elif case == "1-TiB-ping":
        sock, data = raw_ws_connect(port), _frame(b"x" * 1000, opcode=9, declared=2**40)
    else:
        lengths = {"header-[10,-2^40]": [10, -2**40], "header-[10,-2^63]": [10, -2**63],
                   "header-[2^63+1]": [2**63 + 1],
                   "header-[2^62]": [2**62]}[case]
        sock = _handshaken(port, target.token, _INFO[server])
        data = _frame(msgpack.packb(lengths)) + _frame(b"x" * 10)
    local_port = sock.getsockname()[1]
    assert _closes(sock, data), "the server kept a connection that sent garbage"
    target.check_healthy()
    log = target.directory / f"{server}.log"
    wait_until(lambda: f"{local_port}" in log_tail(log, 20000),
               message=f"a log line naming the peer (port {local_port})")


# ---------------------------------------------------------------- fuzzing

@FUZZ
@given(server=st.sampled_from(["scheduler", "worker"]), upgrade=st.booleans(),
       data=st.binary(min_size=1, max_size=4096))
def test_random_bytes(target, server, upgrade, data):
    sock = (raw_ws_connect if upgrade else
            lambda p: socket.create_connection(("127.0.0.1", p), timeout=5))(target.port(server))
    _send_and_close(sock, data)
    target.check_healthy()


_frames = st.builds(
    _frame, payload=st.binary(max_size=300), opcode=st.integers(0, 15), fin=st.booleans(),
    declared=st.one_of(st.none(), st.integers(0, 2**64 - 1), st.sampled_from(
        [126, 2**16, 2**31, 2**62, 2**63 + 1, 2**64 - 1])),
    mask=st.binary(min_size=4, max_size=4))


@FUZZ
@given(server=st.sampled_from(["scheduler", "worker"]), handshake=st.booleans(),
       frames=st.lists(_frames, min_size=1, max_size=4),
       truncate=st.integers(0, 64))
def test_garbage_and_truncated_websocket_frames(target, server, handshake, frames, truncate):
    port = target.port(server)
    sock = _handshaken(port, target.token, _INFO[server]) if handshake else raw_ws_connect(port)
    data = b"".join(frames)
    _send_and_close(sock, data[:len(data) - truncate] if truncate < len(data) else data)
    target.check_healthy()


@FUZZ
@given(server=st.sampled_from(["scheduler", "worker"]), handshake=st.booleans(),
       lengths=st.lists(st.one_of(st.sampled_from(HOSTILE_LENGTHS), st.integers(-2**63, 2**64 - 1),
                                  st.integers(-100, 100)), min_size=1, max_size=5),
       body=st.binary(max_size=64))
def test_hostile_length_headers(target, server, handshake, lengths, body):
    port = target.port(server)
    sock = _handshaken(port, target.token, _INFO[server]) if handshake else raw_ws_connect(port)
    _send_and_close(sock, _frame(msgpack.packb(lengths)) + _frame(body))
    target.check_healthy()


@FUZZ
@given(server=st.sampled_from(["scheduler", "worker"]), opcode=st.sampled_from([8, 9, 10]),
       declared=st.one_of(st.integers(126, 2**20), st.sampled_from([2**40, 2**63 - 1])))
def test_oversized_control_frames_close_the_connection(target, server, opcode, declared):
    sock = raw_ws_connect(target.port(server))
    assert _closes(sock, _frame(b"p" * 200, opcode=opcode, declared=declared))
    target.check_healthy()


# wrong-typed fields for every op

_WRONG_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=True),
    st.text(max_size=8), st.binary(max_size=8),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                         max_size=2),
    st.lists(st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2), max_size=2))

_TABLES = {
    "scheduler": messages.FROM_CLIENT,
    "worker": messages.FROM_PEER,
}
_ALL_OPS = sorted({op for accepts in _TABLES.values() for op in accepts.schemas}
                  | set(messages.WORKER_TO_SCHEDULER) | set(messages.SCHEDULER_TO_WORKER))


@st.composite
def _bad_messages(draw, server):
    op = draw(st.sampled_from(_ALL_OPS))
    accepts = _TABLES[server]
    schema = accepts.schemas.get(op) or messages.Schema({})
    fields = [name for name, _ in schema.required + schema.optional]
    msg = {"op": op, "rid": draw(st.integers(1, 1000))}
    for name, field in schema.required:
        msg[name] = draw(_WRONG_VALUES)
    how = draw(st.sampled_from(["field", "drop", "op", "rid"]))
    if how == "field" and fields:
        msg[draw(st.sampled_from(fields))] = draw(_WRONG_VALUES)
    elif how == "drop" and schema.required:
        del msg[draw(st.sampled_from([n for n, _ in schema.required]))]
    elif how == "op":
        msg["op"] = draw(st.one_of(st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                                   st.integers(), st.lists(st.text(max_size=3), max_size=2)))
    else:
        msg["rid"] = draw(st.one_of(st.dictionaries(st.text(max_size=3), st.integers(),
                                                    min_size=1, max_size=2),
                                    st.text(max_size=3), st.lists(st.integers(), max_size=2)))
    # only messages the server must refuse: a valid one (say "terminate")
    # would do what it says
    try:
        accepts.check(msg)
    except messages.BadMessage:
        return msg
    assume(False)


@FUZZ
@given(data=st.data(), server=st.sampled_from(["scheduler", "worker"]),
       role=st.sampled_from(["client", "worker", "peer"]))
def test_wrong_typed_fields_for_every_op(target, data, server, role):
    info = dict(_INFO[server])
    if role == "worker" and server == "scheduler":
        # a second "worker": its messages go through the worker-facing schema
        info = {"role": "worker", "address": "ws://127.0.0.1:9", "nthreads": 1}
    elif role == "peer" and server == "worker":
        info = {"role": "peer", "address": "ws://127.0.0.1:9"}
    msg = data.draw(_bad_messages(server))
    sock = _handshaken(target.port(server), target.token, info)
    _send_and_close(sock, b"".join(_frame(bytes(memoryview(f).cast("B")))
                                   for f in encode_batch([msg])))
    target.check_healthy()


_BAD_INFOS = [5, [1, 2], "worker", {"role": {}}, {"role": "worker"},
              {"role": "worker", "address": 5}, {"role": "worker", "address": "ws://x:1",
                                                 "nthreads": "lots"},
              {"role": "worker", "address": "ws://x:1", "nthreads": 0},
              {"role": "worker", "address": "ws://x:1", "resources": {"GPU": "many"}},
              {"role": "client", "id": {}}, {"role": "nobody"}, {1: 2}]


@pytest.mark.parametrize("server", ["scheduler", "worker"])
def test_bad_hellos_are_refused(target, server):
    for info in _BAD_INFOS:
        sock = raw_ws_connect(target.port(server))
        hello = _recv_batch(sock)[0]
        reply = {"op": "hello", "version": hello["version"], "info": info}
        if target.token is not None:
            reply["proof"] = hmac.new(target.token.encode(), hello["nonce"], hashlib.sha256).digest()
        _send_batch(sock, [reply])
        try:
            sock.settimeout(10)
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        sock.close()
    target.check_healthy()


def test_a_worker_port_refuses_run(target):
    """``run`` (and other scheduler-only ops) are not taken on a worker's
    port: the connection is closed instead of the function being called."""
    sock = _handshaken(target.port("worker"), target.token, {"role": "client"})
    marker = target.directory / "ran"
    msg = {"op": "run", "rid": 1, "function": serialize(open), "args": serialize(
        (str(marker), "w")), "kwargs": serialize({})}
    assert _closes(sock, b"".join(_frame(bytes(memoryview(f).cast("B")))
                                  for f in encode_batch([msg])))
    assert not marker.exists()
    target.check_healthy()


def test_500_idle_connections(target):
    """Half upgraded and silent, half not even that: the servers keep
    serving, and the memory they cost stays small."""
    socks = []
    try:
        for i in range(500):
            server = "scheduler" if i % 2 else "worker"
            socks.append(raw_ws_connect(target.port(server)) if i % 4 < 2 else
                         socket.create_connection(("127.0.0.1", target.port(server)), timeout=5))
        target.check_healthy()
    finally:
        for sock in socks:
            sock.close()
    target.check_healthy()


@pytest.mark.parametrize("case", ["op-as-map", "rid-as-map", "task-finished-without-key",
                                  "nthreads-lots"])
def test_a_bad_message_of_issue_13_closes_only_its_connection(target, case):
    worker_info = {"role": "worker", "address": "ws://127.0.0.1:9", "nthreads": 1}
    if case == "nthreads-lots":
        sock = raw_ws_connect(target.port("scheduler"))
        hello = _recv_batch(sock)[0]
        reply = {"op": "hello", "version": hello["version"],
                 "info": {**worker_info, "nthreads": "lots"}}
        if target.token is not None:
            reply["proof"] = hmac.new(target.token.encode(), hello["nonce"], hashlib.sha256).digest()
        data = b"".join(_frame(bytes(memoryview(f).cast("B"))) for f in encode_batch([reply]))
    else:
        msg = {"op-as-map": {"op": {"a": 1}, "rid": 1},
               "rid-as-map": {"op": "identity", "rid": {"a": 1}},
               "task-finished-without-key": {"op": "task-finished", "nbytes": 1}}[case]
        info = worker_info if case == "task-finished-without-key" else _INFO["scheduler"]
        sock = _handshaken(target.port("scheduler"), target.token, info)
        data = b"".join(_frame(bytes(memoryview(f).cast("B"))) for f in encode_batch([msg]))
    local_port = sock.getsockname()[1]
    assert _closes(sock, data)
    target.check_healthy()
    wait_until(lambda: f"{local_port}" in log_tail(target.directory / "scheduler.log", 20000),
               message=f"a log line naming the peer (port {local_port})")


def test_every_op_a_server_handles_has_a_schema():
    """A handler without a schema would see unchecked fields."""
    from trioflow.server import extensions, scheduler, worker_requests

    class _Stub:  # extensions only register their handler tables when built
        def __getattr__(self, name):
            return None

    def ops(classes):
        found = set()
        for cls in classes:
            try:
                found |= set(cls(_Stub()).handlers)
            except Exception as exc:  # pragma: no cover - says which one
                raise AssertionError(f"cannot build {cls} to read its ops: {exc!r}")
        return found

    handled = set(scheduler._CLIENT_OPS) | set(scheduler._CLIENT_REQUESTS) | ops(
        extensions.scheduler_extensions())
    assert handled - set(messages.FROM_CLIENT.schemas) == set()
    assert set(messages.WORKER_TO_SCHEDULER) <= set(messages.FROM_WORKER.schemas)
    assert set(worker_requests.PEER_REQUESTS) <= set(messages.FROM_PEER.schemas)
    assert set(worker_requests.SCHEDULER_REQUESTS) <= set(messages.FROM_SCHEDULER.schemas)
    assert ops(extensions.worker_extensions()) - set(messages.FROM_PEER.schemas) - set(
        messages.FROM_SCHEDULER.schemas) == set()
    assert "run" not in messages.FROM_PEER and messages.FROM_PEER.strict

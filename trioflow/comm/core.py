"""The Comm interface, the handshake, and scheme dispatch."""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
from typing import Awaitable, Callable

import trio

from trioflow.comm.addressing import normalize_address, parse_address
from trioflow.comm import inproc, tokens, ws
from trioflow.comm.interface import Comm
from trioflow.errors import AuthenticationError, CommClosedError, ProtocolError
from trioflow.protocol.messages import HELLO, BadMessage

logger = logging.getLogger("trioflow.comm")

PROTOCOL_VERSION = 1
#: seconds a peer has to complete the handshake
HANDSHAKE_TIMEOUT = 10


def _proof(token: str, nonce: bytes) -> bytes:
    return hmac.new(token.encode(), nonce, hashlib.sha256).digest()


async def _server_handshake(comm: Comm, token: str | None, role: str, welcome: dict) -> dict:
    nonce = os.urandom(16)
    with trio.fail_after(HANDSHAKE_TIMEOUT):
        await comm.send([{"op": "hello", "version": PROTOCOL_VERSION, "nonce": nonce,
                          "auth": token is not None, "role": role}])
        batch = await comm.recv()
    msg = batch[0] if batch else {}
    if msg.get("op") != "hello":
        raise ProtocolError("the peer did not start with a trioflow handshake")
    error = HELLO.error(msg)
    if error is not None:
        raise BadMessage(f"bad hello: {error}")
    if msg.get("version") != PROTOCOL_VERSION:
        error = (f"protocol version mismatch: this server speaks {PROTOCOL_VERSION}, "
                 f"the peer {msg.get('version')!r}; install the same trioflow version everywhere")
        await _refuse(comm, error)
        raise ProtocolError(error)
    if token is not None:
        # checked before anything else the peer sent is looked at: nothing
        # from a peer without the token is ever unpickled
        proof = msg.get("proof")
        if proof is None:
            error = f"missing token: the peer proved no token, and this {role} requires one"
        elif not isinstance(proof, bytes) or not hmac.compare_digest(proof, _proof(token, nonce)):
            error = f"wrong token: the peer's proof does not match this {role}'s token"
        else:
            error = None
        if error is not None:
            await _refuse(comm, error, auth=True)
            raise AuthenticationError(error)
    comm.handshake_done(trusted=token is not None)
    await comm.send([{"op": "welcome", "info": welcome}])
    return dict(msg.get("info") or {})


async def _refuse(comm: Comm, error: str, auth: bool = False):
    try:
        await comm.send([{"op": "refused", "text": error, "auth": auth}])
    except CommClosedError:
        pass


#: seconds a connection to loopback waits for a starting scheduler's runtime file
RUNTIME_FILE_GRACE = 0.5


async def _find_token(address: str) -> tuple[str | None, str]:
    """A token for a server that asked for one when none was given: from
    $TRIOFLOW_TOKEN, else (loopback addresses only) from the runtime file of
    a scheduler of this user on this machine.  Returns (token, where from)."""
    token = tokens.token_from_env()
    if token is not None:
        return token, f"from ${tokens.TOKEN_ENV}"
    scheme, host, port = parse_address(address)
    if scheme == "inproc" or not tokens.is_loopback(host):
        return None, ""
    # the scheduler writes the file as soon as it listens: allow for a peer
    # that reached it within that moment
    with trio.move_on_after(RUNTIME_FILE_GRACE):
        while True:
            found = tokens.find_runtime_token(host, port)
            if found is not None:
                return found[0], f"found in {found[1]}"
            await trio.sleep(0.05)
    return None, ""


async def _client_handshake(comm: Comm, info: dict, token: str | None):
    with trio.fail_after(HANDSHAKE_TIMEOUT):
        batch = await comm.recv()
        msg = batch[0] if batch else {}
        if msg.get("op") != "hello":
            raise ProtocolError(f"{comm.peer_address} is not a trioflow server")
        if msg.get("version") != PROTOCOL_VERSION:
            raise ProtocolError(
                f"protocol version mismatch: {comm.peer_address} speaks {msg.get('version')!r}, "
                f"this process {PROTOCOL_VERSION}; install the same trioflow version everywhere")
        role = msg.get("role") if isinstance(msg.get("role"), str) else "server"
        reply = {"op": "hello", "version": PROTOCOL_VERSION, "info": info}
        source = "given with token="
        if msg.get("auth"):
            if token is None:
                token, source = await _find_token(comm.peer_address)
            nonce = msg.get("nonce")
            if not isinstance(nonce, bytes):
                raise ProtocolError(f"{comm.peer_address} asked for a token without a nonce")
            if token is not None:
                reply["proof"] = _proof(token, nonce)
        else:
            token = None  # nothing proved: nothing to pass on to this server's peers
        await comm.send([reply])
        batch = await comm.recv()
    msg = batch[0] if batch else {}
    if msg.get("op") == "refused":
        text = msg.get("text")
        if msg.get("auth"):
            if token is None:
                raise AuthenticationError(
                    f"the {role} at {comm.peer_address} requires a token; pass token= or "
                    f"scheduler_file= (or set ${tokens.TOKEN_ENV})")
            raise AuthenticationError(
                f"the {role} at {comm.peer_address} refused the token {source}: it is not the "
                f"token the {role} was started with ({text})")
        raise ProtocolError(f"{comm.peer_address} refused the connection: {text}")
    if msg.get("op") != "welcome":
        raise ProtocolError(f"{comm.peer_address} broke the handshake")
    # what the server says it can do (e.g. build dask graphs)
    comm.peer_info = msg["info"] if isinstance(msg.get("info"), dict) else {}
    comm.token = token
    comm.handshake_done(trusted=True)  # the server this process chose to connect to


async def connect(address: str, nursery: trio.Nursery, *, info: dict | None = None,
                  token: str | None = None, timeout: float = 30, retry: bool = True,
                  security=None, role: str = "client") -> Comm:
    """Open a connection and complete the handshake.  Background work of the
    connection (the websocket reader) runs in ``nursery``.  ``security`` (a
    ``trioflow.Security``) gives the TLS settings of a wss:// address, with
    the certificate of ``role``."""
    scheme, host, port = parse_address(address)
    address = normalize_address(address)
    ssl_context = None
    if security is not None:
        security.check_address(address, "connecting to")
        if scheme == "wss":
            ssl_context = security.client_context(role)
    last_error = None
    with trio.move_on_after(timeout) as deadline:
        while True:
            try:
                if scheme == "inproc":
                    comm = await inproc.connect(address)
                else:
                    comm = await ws.connect(nursery, host, port, scheme == "wss", ssl_context)
                break
            except (OSError, CommClosedError) as exc:
                if not retry:
                    raise CommClosedError(f"cannot connect to {address}: {exc}") from None
                # the server may still be starting: retry until the timeout
                logger.debug("connect to %s failed: %s; retrying", address, exc)
                last_error = exc
                await trio.sleep(0.05)
    if deadline.cancelled_caught:
        from trioflow.errors import TimeoutError
        hint = f" (last error: {last_error})" if last_error is not None else ""
        raise TimeoutError(f"could not connect to {address} within {timeout} s: "
                           f"is a trioflow server running there?{hint}")
    try:
        await _client_handshake(comm, info or {}, token)
    except BaseException:
        with trio.CancelScope(shield=True):
            await comm.aclose()
        raise
    return comm


async def serve(address: str, handler: Callable[[Comm], Awaitable[None]], *,
                token: str | None | Callable[[], str | None] = None, security=None,
                role: str = "scheduler",
                check_info: Callable[[dict], None] | None = None,
                welcome: dict | None = None,
                task_status=trio.TASK_STATUS_IGNORED):
    """Accept connections at ``address`` until cancelled; run ``handler(comm)``
    for each after a successful handshake, whose welcome tells the peer
    ``welcome`` about this server.  ``task_status.started`` gets the
    bound address (the real port when 0 was asked).  ``token``: the token a
    peer must prove, or a function that says it at each handshake.
    ``check_info(info)``
    raises ProtocolError for what a peer said about itself that this server
    does not take.  A connection whose handshake fails is closed with one
    log line; the server goes on."""

    async def guarded(comm: Comm):
        try:
            required = token() if callable(token) else token
            comm.peer_info = await _server_handshake(comm, required, role, welcome or {})
            if check_info is not None:
                check_info(comm.peer_info)
        except (ProtocolError, CommClosedError, trio.TooSlowError) as exc:
            logger.warning("closing connection from %s: %s", comm.peer_address or "?", exc)
            with trio.CancelScope(shield=True):
                await comm.aclose()
            return
        try:
            await handler(comm)
        finally:
            with trio.CancelScope(shield=True):
                await comm.aclose()

    scheme, host, port = parse_address(address)
    if scheme == "inproc":
        # a peer on inproc:// is code in this very process, which can reach
        # everything anyway: a token would protect nothing
        token = None
        await inproc.serve(address, guarded, task_status=task_status)
    else:
        ssl_context = None
        if security is not None:
            security.check_address(normalize_address(address), "listening on")
            if scheme == "wss":
                ssl_context = security.server_context(role)
        await ws.serve(host, port, guarded, scheme == "wss", ssl_context,
                       task_status=task_status)

"""A small asyncio web service whose request handlers run their work on trioflow.

    python examples/asyncio_web_service.py              # workers as threads in this process
    python examples/asyncio_web_service.py --processes  # workers in their own processes

The service is plain asyncio from the standard library: `asyncio.start_server`
and a few lines of HTTP/1.0. Each handler submits work to an asynchronous
trioflow Client and awaits the result, so the event loop keeps serving other
requests while the cluster computes. Endpoints:

    GET /primes?below=N     how many primes there are below N (one task)
    GET /squares?upto=N     the sum of squares 0..N-1, as a map and a reduce
    GET /divide?x=A&y=B     A / B, to show how a task's error becomes a 400

To stay self-contained the script then acts as its own client: it starts the
server on a free port, sends a few requests to itself at the same time with
`asyncio.open_connection`, prints the answers, and shuts everything down.
"""
from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import parse_qs, urlsplit

from trioflow import Client


# --- the work, run on the cluster ---------------------------------------------


def count_primes(below: int) -> int:
    sieve = bytearray([1]) * max(below, 2)
    sieve[0:2] = b"\x00\x00"
    for i in range(2, int(below**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))
    return sum(sieve[:below])


def square(x: int) -> int:
    return x * x


def divide(x: float, y: float) -> float:
    return x / y


# --- the service --------------------------------------------------------------


class BadRequest(Exception):
    pass


def _int_param(query: dict, name: str, limit: int) -> int:
    try:
        value = int(query[name][0])
    except (KeyError, ValueError):
        raise BadRequest(f"expected an integer parameter {name!r}") from None
    if not 0 <= value <= limit:
        raise BadRequest(f"{name} must be between 0 and {limit}")
    return value


async def answer(client: Client, path: str, query: dict):
    """Compute the answer to one request on the cluster; returns a JSON-able value."""
    if path == "/primes":
        below = _int_param(query, "below", 10_000_000)
        return {"below": below, "primes": await client.submit(count_primes, below)}
    if path == "/squares":
        upto = _int_param(query, "upto", 10_000)
        squares = client.map(square, range(upto))
        total = client.submit(sum, squares)  # the reduce runs on a worker too
        return {"upto": upto, "sum_of_squares": await total}
    if path == "/divide":
        x = _int_param(query, "x", 10**9)
        y = _int_param(query, "y", 10**9)
        # a ZeroDivisionError raised by the task is raised here again
        return {"x": x, "y": y, "quotient": await client.submit(divide, x, y)}
    raise LookupError(path)


async def handle(client: Client, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    status, body = 200, {}
    try:
        request_line = (await reader.readline()).decode("latin-1").strip()
        while (await reader.readline()).strip():  # skip the headers
            pass
        method, target, _ = request_line.split(" ", 2)
        url = urlsplit(target)
        if method != "GET":
            status, body = 405, {"error": "only GET is supported"}
        else:
            body = await asyncio.wait_for(answer(client, url.path, parse_qs(url.query)), 30)
    except BadRequest as exc:
        status, body = 400, {"error": str(exc)}
    except LookupError:
        status, body = 404, {"error": "no such endpoint"}
    except ZeroDivisionError as exc:
        status, body = 400, {"error": f"the computation failed: {exc}"}
    except (ValueError, asyncio.IncompleteReadError):
        status, body = 400, {"error": "malformed request"}
    except asyncio.TimeoutError:
        status, body = 504, {"error": "the computation took too long"}
    payload = json.dumps(body).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
              504: "Gateway Timeout"}[status]
    writer.write(f"HTTP/1.0 {status} {reason}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    try:
        await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


# --- trying it out --------------------------------------------------------------


async def fetch(port: int, target: str) -> tuple[int, dict]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(body)


async def main(processes: bool) -> int:
    async with Client(asynchronous=True, processes=processes, n_workers=2,
                      threads_per_worker=2, dashboard_address=None) as client:
        server = await asyncio.start_server(
            lambda r, w: handle(client, r, w), host="127.0.0.1", port=0)
        port = server.sockets[0].getsockname()[1]
        print(f"serving on http://127.0.0.1:{port}")
        async with server:
            targets = ["/primes?below=1000000", "/squares?upto=200", "/divide?x=22&y=7",
                       "/divide?x=1&y=0", "/primes?below=many", "/nowhere"]
            # all requests at once: the handlers await the cluster concurrently
            responses = await asyncio.gather(*(fetch(port, t) for t in targets))
            for target, (status, body) in zip(targets, responses):
                print(f"GET {target:<24} -> {status} {json.dumps(body)}")
        expected = [200, 200, 200, 400, 400, 404]
        if [status for status, _ in responses] != expected:
            print("unexpected status codes", file=sys.stderr)
            return 1
        if responses[0][1]["primes"] != 78498 or responses[1][1]["sum_of_squares"] != 2646700:
            print("wrong answers", file=sys.stderr)
            return 1
    print("server and client closed")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main("--processes" in sys.argv[1:])))

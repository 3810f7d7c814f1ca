"""A lean stand-in for bitHuman's status endpoint, for measuring the poller rather than a simulator.

    python -m bench.standin --port 8766 --latency-ms 50

One asyncio process, raw HTTP/1.1 with keep-alive, answers from memory:

- `GET /v1/agent/status/{agent_id}`: `{"success": true, "data": {...}}` with status `generating`
  (bitHuman's documented shape, api/agents.md "Poll status"), after `--latency-ms`;
- `GET /v1/me`: an Enterprise account per secret (so the poller's Read budget is not what is
  measured);
- `GET /_standin/stats`: requests answered so far (total, statuses, distinct agents, the shortest
  and longest interval between two polls of one agent) and the server's own CPU seconds;
  `POST /_standin/reset` zeroes them.

It shares nothing with the portal (no Django, no client code): a few tens of microseconds of CPU
per answer, so the poller, not the upstream, is what saturates the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import resource
import time

_STATUS_PREFIX = b"/v1/agent/status/"


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.statuses = 0
        self.last_poll: dict[bytes, float] = {}
        self.min_interval = float("inf")
        self.max_interval = 0.0
        self.first = 0.0
        self.last = 0.0

    def status_polled(self, agent_id: bytes) -> None:
        now = time.monotonic()
        self.statuses += 1
        if not self.first:
            self.first = now
        self.last = now
        previous = self.last_poll.get(agent_id)
        if previous is not None:
            self.min_interval = min(self.min_interval, now - previous)
            self.max_interval = max(self.max_interval, now - previous)
        self.last_poll[agent_id] = now

    def as_json(self) -> bytes:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return json.dumps(
            {
                "requests": self.requests,
                "statuses": self.statuses,
                "agents": len(self.last_poll),
                "min_interval": None if self.min_interval == float("inf") else self.min_interval,
                "max_interval": self.max_interval or None,
                "first": self.first,
                "last": self.last,
                "cpu": usage.ru_utime + usage.ru_stime,
            }
        ).encode()


STATS = Stats()


def _response(status: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Request-Id: standin\r\n\r\n"
    ).encode() + body


def _status_body(agent_id: bytes) -> bytes:
    code = agent_id.decode("ascii", "replace")
    return (
        b'{"success": true, "data": {"agent_id": "'
        + code.encode()
        + b'", "status": "generating", "progress": 0.5, "progress_msg": "Training", '
        b'"current_step": "lip_sync", "error_message": null, "supported_models": [], '
        b'"name": "Bench ' + code.encode() + b'"}}'
    )


def _me(secret: bytes) -> bytes:
    """Each secret is an account of its own (its user_id derives from it)."""
    user_id = "standin-" + hashlib.sha256(secret).hexdigest()[:16]
    body = {
        "success": True,
        "data": {
            "user_id": user_id,
            "plan": "enterprise",
            "plan_code": "membership_enterprise",
            "credit_balance": 10**9,
            "account_status": "active",
        },
    }
    return _response("200 OK", json.dumps(body).encode())


_NOT_FOUND = _response(
    "404 Not Found", b'{"success": false, "error": "NOT_FOUND", "message": "no such path"}'
)


class Server(asyncio.Protocol):
    latency = 0.05

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, rest = self.buffer[:end], self.buffer[end + 4 :]
            length = 0
            self.secret = b""
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value.strip() or 0)
                elif name == b"api-secret":
                    self.secret = value.strip()
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            method, path = head.split(b" ", 2)[:2]
            self.answer(method, path.split(b"?", 1)[0])

    def answer(self, method: bytes, path: bytes) -> None:
        STATS.requests += 1
        if method == b"GET" and path.startswith(_STATUS_PREFIX):
            agent_id = path[len(_STATUS_PREFIX) :]
            STATS.status_polled(agent_id)
            self.later(_response("200 OK", _status_body(agent_id)))
        elif method == b"GET" and path == b"/v1/me":
            self.later(_me(self.secret))
        elif path == b"/_standin/stats":
            self.transport.write(_response("200 OK", STATS.as_json()))
        elif method == b"POST" and path == b"/_standin/reset":
            STATS.reset()
            self.transport.write(_response("200 OK", b"{}"))
        else:
            self.transport.write(_NOT_FOUND)

    def later(self, response: bytes) -> None:
        if self.latency <= 0:
            self.transport.write(response)
            return
        loop = asyncio.get_running_loop()
        loop.call_later(self.latency, self._write, response)

    def _write(self, response: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(response)


async def serve(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Server, host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    Server.latency = args.latency_ms / 1000
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()

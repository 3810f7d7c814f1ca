"""A local webhook receiver (http.server in a thread) that answers from a script."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Receiver:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        # Status codes; a float is a delay (seconds) then 200; (status, url) a redirect there.
        self.script: list[int | float | tuple[int, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                step = receiver.script.pop(0) if receiver.script else 200
                location = None
                if isinstance(step, float):
                    time.sleep(step)
                    step = 200
                elif isinstance(step, tuple):
                    step, location = step
                self.send_response(step)
                if location:
                    self.send_header("Location", location)
                self.end_headers()
                self.wfile.write(b"ok" if step < 300 else b"receiver says no")

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_LOCAL = True
    r = Receiver()
    yield r
    r.close()

"""A Slack incoming-webhook stand-in on 127.0.0.1: records every POST, answers as told."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The path part of a real webhook URL is the secret; this one must never show up anywhere.
SECRET_PATH = "/services/T0SECRET/B0SECRET/XyZsecretWebhookToken123"  # noqa: S105 - a test value


@dataclass
class Receiver:
    statuses: list[int]  # answered in order; the last one repeats
    delay: float = 0.0  # seconds before answering (a slow Slack)
    posts: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{SECRET_PATH}"


@contextmanager
def receiver(*statuses: int, delay: float = 0.0) -> Iterator[Receiver]:
    state = Receiver(list(statuses) or [200], delay)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.posts.append(json.loads(body))
            state.paths.append(self.path)
            status = state.statuses.pop(0) if len(state.statuses) > 1 else state.statuses[0]
            time.sleep(state.delay)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the client gave up (timeout): nothing to answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()

"""One app service of one release, for the stand-in runtime (stdlib only, run as a script).

Serves ``/health`` (503 when told to be unhealthy) and ``/`` (answers ``<release> <service>``)
on a free loopback port, printed as ``PORT <n>`` on stdout once listening. Requests that came
through nginx (``X-Bankflow-Proxy``/``X-Forwarded-Proto``, set by the nginx configs) are counted
into ``--count-file``, so a test can prove a release never received traffic. It stops on
SIGTERM (finishing requests in flight) and by itself after ``--max-seconds``.

Faults: ``--fail-through-nginx`` answers 502 to every request that came through nginx (its own
health check, straight to the port, still passes); ``--die-after-public S`` exits S seconds after
the first request through nginx's PUBLIC listener (``X-Bankflow-Listener: public``, set by the
test config), i.e. right after the public switch; ``--unhealthy-after-public`` answers 503 on
/health from then on (everything else still 200). ``/sleep/<ms>`` answers after that long (long
requests in flight during a switch).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--release", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--count-file", required=True, type=Path)
    parser.add_argument("--unhealthy", action="store_true")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--fail-through-nginx", action="store_true")
    parser.add_argument("--die-after-public", type=float, default=None)
    parser.add_argument("--unhealthy-after-public", action="store_true")
    args = parser.parse_args()
    dying: list[threading.Timer] = []
    public_seen = threading.Event()

    # A response is written whole or not at all: the death waits for one being written and none
    # starts after it. A crash between a response's headers and its body would fail that one
    # request whatever nginx does (nothing can be retried once the headers left); the faults
    # here test what comes after a death (nginx's backup server, the watch, the revert).
    responding = threading.Lock()

    def die() -> None:
        responding.acquire()
        # when it died, for the bench's "failures stop within N s of the death"
        args.count_file.with_suffix(".died").write_text(repr(time.time()))
        os._exit(0)

    def die_later() -> None:
        with lock:
            if dying or args.die_after_public is None:
                return
            timer = threading.Timer(args.die_after_public, die)
            timer.daemon = True
            dying.append(timer)
        timer.start()

    lock = threading.Lock()
    proxied = [0]

    def count() -> None:
        with lock:
            proxied[0] += 1
            tmp = args.count_file.with_suffix(".tmp")
            tmp.write_text(str(proxied[0]))
            os.replace(tmp, args.count_file)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keepalive from nginx's upstream pool

        def do_GET(self) -> None:
            # through nginx: the test config's marker, or the rendered proxy.conf's forwarding header
            proxied = self.headers.get("X-Bankflow-Proxy") == "nginx" or bool(
                self.headers.get("X-Forwarded-Proto")
            )
            if proxied:
                count()
            if self.headers.get("X-Bankflow-Listener") == "public":
                die_later()
                public_seen.set()
            if self.path.startswith("/sleep/"):
                time.sleep(int(self.path.rsplit("/", 1)[1]) / 1000)
            if proxied and args.fail_through_nginx:
                status, body = 502, b"broken behind the proxy\n"
            elif self.path == "/health":
                sick = args.unhealthy or (args.unhealthy_after_public and public_seen.is_set())
                status, body = (503, b"unhealthy\n") if sick else (200, b"ok\n")
            else:
                status, body = 200, f"{args.release} {args.service}\n".encode()
            with responding:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, format: str, *values: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # nginx resetting idle keepalive connections on reload is normal, not an error

    server = Server(("127.0.0.1", 0), Handler)
    args.count_file.write_text("0")

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    timer = threading.Timer(args.max_seconds, stop)  # never outlives a crashed test run
    timer.daemon = True
    timer.start()
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.05)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

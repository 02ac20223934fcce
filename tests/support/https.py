"""Real HTTPS servers on 127.0.0.1 for the health tests (and bench/health.py), and their certificates.

Certificates come from the `openssl` CLI. Like Cloudflare's Origin CA, the origin certificate
is a leaf signed by a CA that the client does not trust: the client pins the leaf itself. The
"wrong" certificates are a sibling leaf from the same CA (so pinning the issuer would wrongly
accept it) and a self-signed one.

A server answers per Host header from a :class:`Behaviour` and records what it saw: TCP
connections, TLS SNI names, requests per host, and the most requests in flight at once. Every
wait in a handler is bounded and ends early when the server stops.
"""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.outputs import health_targets

HANDLER_WAIT_LIMIT = 5.0  # seconds: no handler ever blocks longer than this


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path

    @property
    def pem(self) -> str:
        return self.cert.read_text()


@dataclass(frozen=True)
class Certs:
    ca: Pair  # stands in for the Cloudflare Origin CA (or a public CA, for edge-mode tests)
    origin: Pair  # the certificate the outputs publish and the client pins
    sibling: Pair  # same CA, same names, different key: must be rejected when pinning
    self_signed: Pair  # same names, no relation at all


def _openssl(openssl: str, *args: str | Path) -> None:
    subprocess.run([openssl, *map(str, args)], check=True, capture_output=True, timeout=60)


def _ec_key_args() -> tuple[str, ...]:
    return ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def make_certs(openssl: str, directory: Path, hostnames: list[str]) -> Certs:
    san = "subjectAltName=" + ",".join(f"DNS:{h}" for h in hostnames)
    ca = Pair(directory / "ca.pem", directory / "ca.key")
    _openssl(openssl, "req", "-x509", *_ec_key_args(), "-keyout", ca.key, "-out", ca.cert, "-days", "2",
             "-subj", "/CN=Test Origin CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    extensions = directory / "leaf.ext"
    # clientAuth too: a leaf also stands in for an origin-pull client certificate
    extensions.write_text(f"{san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                          "extendedKeyUsage=serverAuth,clientAuth\n")

    def leaf(name: str) -> Pair:
        pair = Pair(directory / f"{name}.pem", directory / f"{name}.key")
        csr = directory / f"{name}.csr"
        _openssl(openssl, "req", "-new", *_ec_key_args(), "-keyout", pair.key, "-out", csr,
                 "-subj", f"/CN={hostnames[0]}")
        _openssl(openssl, "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial",
                 "-days", "2", "-out", pair.cert, "-extfile", extensions)
        return pair

    self_signed = Pair(directory / "self.pem", directory / "self.key")
    _openssl(openssl, "req", "-x509", *_ec_key_args(), "-keyout", self_signed.key, "-out", self_signed.cert,
             "-days", "2", "-subj", f"/CN={hostnames[0]}", "-addext", san)
    return Certs(ca=ca, origin=leaf("origin"), sibling=leaf("sibling"), self_signed=self_signed)


@dataclass
class Behaviour:
    """How a server answers one hostname. ``statuses[i]`` answers request i; the last one repeats."""

    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0  # seconds before answering (bounded by HANDLER_WAIT_LIMIT)
    gate: int = 0  # hold each request until this many are in flight at once (bounded)


class LocalHttps:
    """A threaded HTTPS server on 127.0.0.1 presenting ``pair``; start with ``with``."""

    def __init__(
        self, pair: Pair, behaviours: dict[str, Behaviour], client_ca: Path | None = None
    ) -> None:
        self.behaviours = {host.lower(): b for host, b in behaviours.items()}
        self.lock = threading.Condition()
        self.stopping = threading.Event()
        self.connections = 0
        self.requests: Counter[str] = Counter()
        self.sni: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.handshake_errors: list[str] = []
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pair.cert, pair.key)
        if client_ca is not None:  # as nginx with ssl_verify_client on (Authenticated Origin Pulls)
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(client_ca)
        self.context.sni_callback = self._record_sni
        self.server = _Server(("127.0.0.1", 0), _Handler, self)
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def _record_sni(self, _sock: Any, server_name: str | None, _context: Any) -> None:
        with self.lock:
            self.sni.append(server_name)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def __enter__(self) -> LocalHttps:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        with self.lock:
            self.lock.notify_all()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[_Handler], owner: LocalHttps) -> None:
        self.owner = owner
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that rejects our certificate aborts the handshake: recorded, not printed.
        import sys

        with self.owner.lock:
            self.owner.handshake_errors.append(repr(sys.exc_info()[1]))


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        owner = self.server.owner
        with owner.lock:
            owner.connections += 1
        # The TLS handshake runs here, in the connection's own thread, not in the accept loop.
        self.request = owner.context.wrap_socket(self.request, server_side=True)
        self.request.settimeout(HANDLER_WAIT_LIMIT)
        super().setup()

    def do_GET(self) -> None:
        owner = self.server.owner
        host = (self.headers.get("Host") or "").lower()
        behaviour = owner.behaviours.get(host, Behaviour(statuses=[421]))
        with owner.lock:
            index = owner.requests[host]
            owner.requests[host] += 1
            owner.in_flight += 1
            owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
            owner.lock.notify_all()
            if behaviour.gate:
                owner.lock.wait_for(lambda: owner.in_flight >= behaviour.gate or owner.stopping.is_set(),
                                    timeout=HANDLER_WAIT_LIMIT)
        try:
            if behaviour.delay:
                owner.stopping.wait(min(behaviour.delay, HANDLER_WAIT_LIMIT))
            status = behaviour.statuses[min(index, len(behaviour.statuses) - 1)]
            body = json.dumps({"status": "ok" if status == 200 else "failing"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (timeout): nothing to answer
        finally:
            with owner.lock:
                owner.in_flight -= 1

    def log_message(self, format: str, *args: Any) -> None:
        pass


def hostnames() -> list[str]:
    """The hostnames of the staging outputs document: what the test certificates must cover."""
    return [h["host"] for h in health_targets("staging")]

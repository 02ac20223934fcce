"""Helpers of the perimeter tests (issue 12): a CA and client certificates made by openssl (what
the stack's pulumi-tls CA and Cloudflare's origin-pull certificate stand in for), TLS contexts
presenting them, and raw sockets that send a request byte by byte. Loopback only, bounded."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.render.helpers import RunningNginx


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path

    @property
    def cert_pem(self) -> str:
        return self.cert.read_text()


def _openssl(openssl: str, *args: str) -> None:
    subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)


def make_ca(openssl: str, directory: Path, name: str) -> Pem:
    """A self-signed CA (what the origin stack's pulumi-tls CA is)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}-ca.pem", directory / f"{name}-ca.key"
    _openssl(
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-sha256", "-days", "2", "-subj", f"/CN={name} origin-pull CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return Pem(cert, key)


def make_client_cert(openssl: str, ca: Pem, directory: Path, name: str) -> Pem:
    """A client certificate issued by ``ca`` (what Cloudflare presents with origin pulls on)."""
    cert, key, csr = directory / f"{name}.pem", directory / f"{name}.key", directory / f"{name}.csr"
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"
    )
    _openssl(
        openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    _openssl(
        openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(extensions), "-out", str(cert),
    )  # fmt: skip
    return Pem(cert, key)


def client_context(server_cert: Path, client: Pem | None) -> ssl.SSLContext:
    """Verifies the test origin certificate; presents ``client`` when given."""
    context = ssl.create_default_context(cafile=str(server_cert))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def open_tls(
    running: RunningNginx,
    sni: str,
    port: int | None = None,
    context: ssl.SSLContext | None = None,
    session: ssl.SSLSession | None = None,
) -> ssl.SSLSocket:
    """A TLS connection to the instance (its public port unless ``port``), by default without a
    client certificate; ``session``: resume that TLS session."""
    raw = socket.create_connection(("127.0.0.1", port or running.params.https_port), timeout=10)
    context = context or ssl.create_default_context(cafile=str(running.cert_path))
    return context.wrap_socket(raw, server_hostname=sni, session=session)


def request_head(
    host: str, path: str, headers: dict[str, str] | None = None, length: int | None = None
) -> bytes:
    lines = [f"POST {path} HTTP/1.1" if length is not None else f"GET {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_status(sock: ssl.SSLSocket | socket.socket, timeout: float = 10) -> int:
    """The status of the response on ``sock``; 0 when the connection closed without one."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return 0
            data += chunk
    except (ConnectionResetError, ssl.SSLError):
        return 0
    return int(data.split(b" ", 2)[1])


def trickle_until_closed(
    sock: ssl.SSLSocket | socket.socket, data: bytes, interval: float, limit: float
) -> float:
    """Send ``data`` one byte per ``interval`` until nginx closes the connection (or answers);
    return the seconds that took. Bounded by ``limit`` (then the connection was never cut)."""
    started = time.monotonic()
    sock.settimeout(interval)
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(4096) == b"":
                return time.monotonic() - started
            return time.monotonic() - started  # an answer (408) also ends it
        except TimeoutError:
            pass  # nothing from nginx during this interval: it is still waiting
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            return time.monotonic() - started
        if time.monotonic() - started > limit:
            break
    return float("inf")


def log_lines(running: RunningNginx) -> list[dict[str, Any]]:
    path = Path(running.params.access_log)
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []

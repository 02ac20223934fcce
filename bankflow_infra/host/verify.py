"""Check a release THROUGH nginx: the request path real traffic takes after the switch.

Stdlib only. A request goes to the local nginx (``https://127.0.0.1:443`` on the droplet) with
the public hostname as Host header and TLS SNI, so nginx routes it exactly as it routes
Cloudflare's requests.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

DEFAULT_VERIFY_URL: Final = "https://127.0.0.1:443"


@dataclass(frozen=True)
class NginxEndpoint:
    """Where the host reaches its own nginx (``--verify-url``)."""

    scheme: str
    host: str
    port: int


def parse_nginx_endpoint(url: str) -> NginxEndpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"verify URL must be http(s)://HOST[:PORT], got {url!r}")
    return NginxEndpoint(parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


class SNIConnection(http.client.HTTPSConnection):
    """Connect to the loopback address but present the public hostname as SNI."""

    def __init__(self, address: str, port: int, server_name: str, timeout: float) -> None:
        # Loopback only: this checks nginx routing, not the origin's identity (Cloudflare does
        # that with the Origin CA), so the certificate is not verified here.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        super().__init__(server_name, port, timeout=timeout, context=context)
        self._address = address
        self._server_name = server_name
        self._ssl_context = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._ssl_context.wrap_socket(raw, server_hostname=self._server_name)


def http_status(endpoint: NginxEndpoint, hostname: str, path: str, timeout: float = 5.0) -> int:
    """Status of ``GET path`` with ``Host: hostname`` through nginx; 0 when no answer at all."""
    conn: http.client.HTTPConnection
    if endpoint.scheme == "https":
        conn = SNIConnection(endpoint.host, endpoint.port, hostname, timeout)
    else:
        conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": hostname, "User-Agent": "bankflow-agent/verify"})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def wait_for_ok(
    check: Callable[[], int],
    timeout: float,
    interval: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Retry ``check`` until it returns 2xx or ``timeout`` passes; the last status."""
    deadline = clock() + timeout
    while True:
        status = check()
        if 200 <= status < 300 or clock() >= deadline:
            return status
        sleep(interval)

"""An HTTPS client that speaks like DigitalOcean's load balancer to one droplet: PROXY protocol.

In a load-balanced stack (issue 13) nginx's public 443 listener has ``proxy_protocol`` on: the
load balancer (TCP pass-through, PROXY protocol enabled) prefixes every connection with a
PROXY protocol v1 line naming the real peer, and nginx refuses a connection without it. So
``health --origin`` sends the same line (with its own, true addresses) before the TLS
handshake when it probes one droplet directly; the load balancer's own address gets a plain TLS
connection, as Cloudflare makes it.

The line is written by an httpcore network backend that wraps the default one: httpx keeps the
TLS (SNI, the pinned certificate, the client certificate) exactly as for every other probe.
Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt (section 2.1, v1 text header).
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx


def proxy_v1_header(client: tuple[Any, ...], server: tuple[Any, ...]) -> bytes:
    """``PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\\r\\n`` for one connection's two ends."""
    source, destination = ipaddress.ip_address(client[0]), ipaddress.ip_address(server[0])
    family = "TCP4" if source.version == 4 else "TCP6"
    if source.version != destination.version:  # v1 cannot describe mixed families: say UNKNOWN
        return b"PROXY UNKNOWN\r\n"
    return f"PROXY {family} {source} {destination} {int(client[1])} {int(server[1])}\r\n".encode("ascii")


class ProxyProtocolBackend(httpcore.AsyncNetworkBackend):
    """Connects like the default backend, then writes the PROXY v1 line before anything else."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        header = proxy_v1_header(stream.get_extra_info("client_addr"), stream.get_extra_info("server_addr"))
        await stream.write(header, timeout)
        return stream

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def proxy_protocol_client(context: ssl.SSLContext) -> httpx.AsyncClient:
    """Like probes._client (no keep-alive, no proxies from the environment), over PROXY protocol.

    httpx's transport takes no network backend: its connection pool is replaced by an equal one
    that has it (httpx 0.28 builds ``_pool`` from the same arguments in AsyncHTTPTransport).
    """
    transport = httpx.AsyncHTTPTransport(verify=context, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=context, max_keepalive_connections=0, network_backend=ProxyProtocolBackend()
    )
    return httpx.AsyncClient(transport=transport, trust_env=False, follow_redirects=False)

"""The rendered Valkey URL against a real redis-server with TLS (issue 13, item 3).

DigitalOcean's managed Valkey speaks TLS only, with a certificate from the account's CA for the
cluster's private hostname, and a password for the ``default`` user. The bundle gives the apps
``rediss://default:<password>@<host>:<port>/0`` and the CA's path in REDIS_CA_FILE. Here a test
CA signs the certificate of a real redis-server (Valkey's protocol is Redis's) listening on
127.0.0.1 with TLS only; a client does what the app's client must: parse the rendered URL,
dial loopback, verify the certificate against the CA and the URL's hostname, AUTH, PING.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from bankflow_infra.render import BundleSecrets, ManagedServices, render_bundle
from tests.render.helpers import CLOUDFLARE, SECRETS_NO_KEY, OriginCert
from tests.render.managed_helpers import (
    CACHE_HOST,
    CACHE_PASSWORD,
    managed_cache,
    managed_services,
    scaled_settings,
)
from tests.render.perimeter import Pem, make_ca
from tests.render.test_managed_tls_live import _server_cert
from tests.support.ports import free_port
from tests.support.tools import require_tool


@dataclass(frozen=True)
class TlsRedis:
    port: int
    ca: Pem
    other_ca: Pem


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    server_bin, openssl = require_tool("redis-server"), require_tool("openssl")
    directory = tmp_path_factory.mktemp("valkey-tls")
    ca, other_ca = make_ca(openssl, directory, "do-account"), make_ca(openssl, directory, "other")
    cert = _server_cert(openssl, ca, directory, CACHE_HOST)
    port = free_port()
    config = directory / "redis.conf"  # the password in a file, not in the process arguments
    config.write_text(
        f"port 0\ntls-port {port}\nbind 127.0.0.1\ntls-cert-file {cert.cert}\ntls-key-file {cert.key}\n"
        f"tls-ca-cert-file {ca.cert}\ntls-auth-clients no\nrequirepass {CACHE_PASSWORD}\n"
        f'save ""\nappendonly no\ndir {directory}\n'
    )
    server = subprocess.Popen([server_bin, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("redis-server with TLS did not start") from None
                time.sleep(0.1)
        yield TlsRedis(port, ca, other_ca)
    finally:
        server.terminate()
        server.wait(timeout=20)


def _rendered(origin_cert: OriginCert, port: int, ca: Pem) -> str:
    others = managed_services()
    cache = managed_cache(ca_pem=ca.cert.read_text())
    cache = type(cache)(cache.host, port, cache.user, cache.password, cache.ca_pem)
    secrets = BundleSecrets(origin_private_key_pem=origin_cert.key_pem, **SECRETS_NO_KEY)
    services = ManagedServices(others.database, cache, others.uploads)
    bundle = render_bundle(scaled_settings(), secrets, CLOUDFLARE, origin_cert.cert_pem, managed=services)
    return bundle.file("secrets/saas.redis_url").text


def _command(stream: ssl.SSLSocket, *words: str) -> bytes:
    """One RESP command, its one-line answer."""
    stream.sendall(
        b"".join([f"*{len(words)}\r\n".encode(), *(f"${len(w)}\r\n{w}\r\n".encode() for w in words)])
    )
    answer = b""
    while not answer.endswith(b"\r\n"):
        chunk = stream.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer


def _talk(url: str, port: int, ca_file: Path) -> tuple[bytes, bytes]:
    """What an app's client does with the URL and REDIS_CA_FILE: TLS to the URL's host (dialled on
    loopback here), verified against the CA and that hostname; AUTH user password; PING."""
    parts = urlsplit(url)
    assert parts.scheme == "rediss"
    context = ssl.create_default_context(cafile=str(ca_file))  # check_hostname, CERT_REQUIRED
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with raw, context.wrap_socket(raw, server_hostname=parts.hostname) as stream:
        auth = _command(stream, "AUTH", unquote(parts.username or ""), unquote(parts.password or ""))
        return auth, _command(stream, "PING")


def test_the_rendered_url_authenticates_over_verified_tls(
    tls_redis: TlsRedis, origin_cert: OriginCert
) -> None:
    url = _rendered(origin_cert, tls_redis.port, tls_redis.ca)
    assert urlsplit(url).hostname == CACHE_HOST
    assert _talk(url, tls_redis.port, tls_redis.ca.cert) == (b"+OK\r\n", b"+PONG\r\n")


def test_a_wrong_password_is_refused(tls_redis: TlsRedis, origin_cert: OriginCert) -> None:
    url = _rendered(origin_cert, tls_redis.port, tls_redis.ca).replace("AVNS_", "AVNX_", 1)
    auth, ping = _talk(url, tls_redis.port, tls_redis.ca.cert)
    assert auth.startswith(b"-WRONGPASS")
    assert ping.startswith(b"-NOAUTH")


def test_a_ca_that_did_not_sign_the_cache_is_refused(tls_redis: TlsRedis, origin_cert: OriginCert) -> None:
    url = _rendered(origin_cert, tls_redis.port, tls_redis.ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        _talk(url, tls_redis.port, tls_redis.other_ca.cert)

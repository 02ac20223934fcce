"""Shared helpers for the renderer tests: stack settings, test secrets, certificates, a real nginx.

Everything here runs real tools (openssl, nginx) on loopback only, in bounded loops.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from bankflow_infra.render import Bundle, BundleSecrets, CloudflareRanges, NginxParams
from bankflow_infra.settings import Settings
from bankflow_infra.stackfile import settings_from_stack_file
from tests.support.ports import free_port
from tests.support.tools import REPO

STACKS = ("staging", "production")

# Distinctive values, so a leak check can search every rendered file for them.
SECRETS_NO_KEY = {
    "postgres_password": "PgTestPassw0rd-4d1f9c2b7e",
    "redis_password": "RedisTestPassw0rd-8a3e5f7c21",
    "jwt_secret": "JwtTestSecret+abcdefghijklmnopqrstuvwxyz0123/=",
    "registry_password": "ghp_RegistryTestToken0123456789",
}

CLOUDFLARE = CloudflareRanges(
    ipv4=("173.245.48.0/20", "103.21.244.0/22", "104.16.0.0/13"),
    ipv6=("2400:cb00::/32", "2606:4700::/32"),
)


def load_settings(stack: str) -> Settings:
    path = REPO / f"Pulumi.{stack}.yaml"
    return settings_from_stack_file("bankflow", stack, yaml.safe_load(path.read_text()), str(path))


def all_hostnames() -> tuple[str, ...]:
    return tuple(h for stack in STACKS for h in load_settings(stack).all_hostnames)


@dataclass(frozen=True)
class OriginCert:
    cert_pem: str
    key_pem: str
    cert_path: Path


def make_cert(openssl: str, directory: Path, hostnames: tuple[str, ...]) -> OriginCert:
    """A self-signed RSA-2048 certificate for ``hostnames`` (Cloudflare's Origin CA issues RSA-2048
    by default, and an RSA key lets the tests show that static-RSA and DHE suites are refused)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "origin.pem", directory / "origin.key"
    san = ",".join(f"DNS:{h}" for h in hostnames)
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "2",
            "-subj",
            "/CN=bankflow-test-origin",
            "-addext",
            f"subjectAltName={san}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return OriginCert(cert.read_text(), key.read_text(), cert)


def make_secrets(cert: OriginCert) -> BundleSecrets:
    return BundleSecrets(origin_private_key_pem=cert.key_pem, **SECRETS_NO_KEY)


def secret_values(secrets: BundleSecrets) -> list[str]:
    """Every secret value, and the key's base64 body lines (a PEM leak would show those)."""
    values = [v for v in secrets.values() if "PRIVATE KEY" not in v]
    values += [line for line in secrets.origin_private_key_pem.splitlines() if line and "-----" not in line]
    return values


# --------------------------------------------------------------------------- local nginx


def nginx_version(nginx: str) -> tuple[int, int, int]:
    out = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10, check=True)
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out.stderr + out.stdout)
    assert match, f"cannot read the nginx version from {out.stderr!r}"
    major, minor, patch = (int(g) for g in match.groups())
    return (major, minor, patch)


HTTP2_DIRECTIVE_VERSION = (1, 25, 1)


def adapt_for_local_nginx(conf_text: str, version: tuple[int, int, int]) -> str:
    """THE ONLY REWRITE of shipped nginx text in the tests.

    The droplet runs catalog.NGINX_IMAGE (nginx >= 1.25.1), where ``http2 on;`` is the way to
    enable HTTP/2 and ``listen ... http2`` is deprecated. The test machines have Debian/Ubuntu's
    nginx 1.22/1.24, which does not know ``http2 on;``: only there is it turned into the older
    listen parameter, so the same servers still speak HTTP/2 in the live tests.
    """
    if version >= HTTP2_DIRECTIVE_VERSION or "http2 on;" not in conf_text:
        return conf_text
    text = re.sub(r"^[ \t]*http2 on;\n", "", conf_text, flags=re.MULTILINE)
    return re.sub(r"^([ \t]*listen [^;]*? ssl)\b", r"\1 http2", text, flags=re.MULTILINE)


def local_params(root: Path) -> NginxParams:
    """NginxParams for a real nginx run by the current user with everything under ``root``."""
    user = None
    if os.geteuid() == 0:
        # As root, nginx would drop its workers to `nobody`, who cannot enter pytest's 0700 tmp dir.
        import pwd

        user = pwd.getpwuid(os.geteuid()).pw_name
    health_port = free_port()
    verify_port = free_port()
    if verify_port == health_port + 1:  # the maintenance listener's, which free_port knows nothing of
        verify_port = free_port()
    return NginxParams(
        http_port=free_port(),
        https_port=free_port(),
        health_port=health_port,
        verify_port=verify_port,
        listen_addresses=("127.0.0.1",),
        config_dir=str(root / "nginx"),
        cert_path=str(root / "tls" / "origin.pem"),
        key_path=str(root / "secrets" / "origin.key"),
        client_ca_path=str(root / "tls" / "origin-pull-ca.pem"),
        access_log=str(root / "logs" / "access.log"),
        error_log=str(root / "logs" / "error.log"),
        pid_path=str(root / "nginx.pid"),
        user=user,
        temp_dir=str(root / "temp"),
    )


def install_for_local_nginx(bundle: Bundle, params: NginxParams, version: tuple[int, int, int]) -> Path:
    """Lay the bundle's nginx files, cert and key where ``params`` says; return nginx.conf's path."""
    config_dir = Path(params.config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    for item in bundle.files:
        if item.path.startswith("nginx/"):
            (config_dir / item.path.removeprefix("nginx/")).write_text(
                adapt_for_local_nginx(item.text, version)
            )
    files = [
        (params.cert_path, bundle.file("tls/origin.pem").text),
        (params.key_path, bundle.file("secrets/origin.key").text),
    ]
    files += [(params.client_ca_path, f.text) for f in bundle.files if f.path == "tls/origin-pull-ca.pem"]
    for target, text in files:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(text)
    os.chmod(params.key_path, 0o600)
    for directory in (Path(params.access_log).parent, Path(params.temp_dir or config_dir)):
        directory.mkdir(parents=True, exist_ok=True)
    return config_dir / "nginx.conf"


def nginx_argv(nginx: str, params: NginxParams, conf: Path, *extra: str) -> list[str]:
    prefix = str(Path(params.config_dir).parent)
    return [nginx, "-p", prefix, "-c", str(conf), "-e", params.error_log, *extra]


# --------------------------------------------------------------------------- backends


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers with JSON naming its service and echoing what nginx sent.

    ``/missing`` -> 404; ``/close`` -> closes without answering (nginx turns that into 502).
    """

    protocol_version = "HTTP/1.1"  # nginx keeps upstream connections alive (proxy.conf)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body_in = self.rfile.read(length) if length else b""
        if self.path.startswith("/close"):
            self.close_connection = True
            return
        status = 404 if self.path.startswith("/missing") else 200
        payload = json.dumps(
            {
                "service": self.server.service_name,  # type: ignore[attr-defined]
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body_length": len(body_in),
            }
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Powered-By", "test-backend")  # nginx must hide it
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


@dataclass
class Backend:
    name: str
    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_backend(name: str) -> Backend:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    server.service_name = name  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return Backend(name, server, thread)


# --------------------------------------------------------------------------- clients


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    header_list: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


class _SNIConnection(http.client.HTTPConnection):
    """HTTPS to 127.0.0.1 with an explicit SNI name (HTTPSConnection would send the IP, i.e. no SNI)."""

    def __init__(self, port: int, sni: str, context: ssl.SSLContext) -> None:
        super().__init__("127.0.0.1", port, timeout=10)
        self._sni = sni
        self._context = context

    def connect(self) -> None:
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._sni)


def tls_context(cert_path: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert_path))  # verifies our own test certificate
    return context


def _read(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    host: str,
    headers: Mapping[str, str] | None,
    body: bytes | None,
) -> Response:
    try:
        conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        answer = conn.getresponse()
        data = answer.read()
        header_list = [(k.lower(), v) for k, v in answer.getheaders()]
        return Response(answer.status, dict(header_list), data, header_list)
    finally:
        conn.close()


def https(
    port: int,
    cert_path: Path,
    sni: str,
    path: str = "/",
    *,
    host: str | None = None,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    context: ssl.SSLContext | None = None,
) -> Response:
    conn = _SNIConnection(port, sni, context or tls_context(cert_path))
    return _read(conn, method, path, host or sni, headers, body)


def plain_http(port: int, host: str, path: str = "/") -> Response:
    return _read(http.client.HTTPConnection("127.0.0.1", port, timeout=10), "GET", path, host, None, None)


# --------------------------------------------------------------------------- a running nginx


@dataclass
class RunningNginx:
    nginx: str
    params: NginxParams
    conf: Path
    process: subprocess.Popen[bytes]
    cert_path: Path
    backends: dict[str, Backend]

    def error_log(self) -> str:
        path = Path(self.params.error_log)
        return path.read_text() if path.exists() else ""

    def reload(self) -> None:
        subprocess.run(
            nginx_argv(self.nginx, self.params, self.conf, "-s", "reload"),
            check=True,
            capture_output=True,
            timeout=30,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # fast shutdown
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_nginx(
    nginx: str, params: NginxParams, conf: Path, cert_path: Path, backends: dict[str, Backend]
) -> RunningNginx:
    process = subprocess.Popen(
        nginx_argv(nginx, params, conf, "-g", "daemon off;"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    running = RunningNginx(nginx, params, conf, process, cert_path, backends)
    for _ in range(100):  # up to ~10 s for nginx to answer its own health check
        if process.poll() is not None:
            err = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"nginx exited {process.returncode}: {err}\n{running.error_log()}")
        try:
            if plain_http(params.health_port, "localhost", "/health").status == 200:
                return running
        except OSError:
            time.sleep(0.1)
    running.stop()
    raise AssertionError(f"nginx did not answer on its health port: {running.error_log()}")


def wait_for(predicate: Any, attempts: int = 50, delay: float = 0.1) -> bool:
    """Poll ``predicate`` a bounded number of times."""
    for _ in range(attempts):
        if predicate():
            return True
        time.sleep(delay)
    return False

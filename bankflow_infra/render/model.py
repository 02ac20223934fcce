"""The renderer's inputs and output: plain frozen values, no behaviour beyond validation.

Secrets arrive here as plain strings (the Pulumi components unwrap them inside an ``apply``)
and leave only inside :attr:`Bundle.secret_files`; every error message names the field, never
the value.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from bankflow_infra import catalog
from bankflow_infra.contract.release import digest_files, release_id

SECRET_FILE_MODE: Final = 0o600
FILE_MODE: Final = 0o644

# Passwords end up inside URLs (DATABASE_URL, REDIS_URL) and compose env files, where '@', ':',
# '/', '#', '$', quotes and whitespace would change the meaning: only RFC 3986 unreserved
# characters are accepted. The minimum length keeps a published digest over them unguessable.
_PASSWORD_RE: Final = re.compile(r"^[A-Za-z0-9._~-]{20,256}$")
_JWT_RE: Final = re.compile(r"^[A-Za-z0-9._~+/=-]{32,1024}$")  # base64/base64url alphabet
_TOKEN_RE: Final = re.compile(r"^[\x21-\x7e]{1,1024}$")  # printable, no whitespace (docker login stdin)
# Spaces keys (backups): access key ids are alphanumerics, secrets base64. Anything else is refused:
# a newline, ';' or '#' would change the meaning of the INI file rclone reads (render/backup.py).
_SPACES_KEY_RE: Final = re.compile(r"^[A-Za-z0-9+/=._~-]{16,256}$")


class BundleInputError(ValueError):
    """An input the renderer refuses; the message names the field, never a secret value."""


@dataclass(frozen=True)
class CloudflareRanges:
    """Cloudflare's edge ranges (``get_ip_ranges``): the same list the firewall uses."""

    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]

    def validated(self) -> tuple[str, ...]:
        """Every range, IPv4 first, each checked to be a network of its family."""
        if not self.ipv4:
            raise BundleInputError("cloudflare.ipv4: empty; nginx would trust no proxy for the client IP")
        for family, version, ranges in (("ipv4", 4, self.ipv4), ("ipv6", 6, self.ipv6)):
            for index, value in enumerate(ranges):
                try:
                    network = ipaddress.ip_network(value, strict=True)
                except ValueError as exc:
                    raise BundleInputError(
                        f"cloudflare.{family}[{index}]: {value!r} is not a network"
                    ) from exc
                if network.version != version:
                    raise BundleInputError(f"cloudflare.{family}[{index}]: {value!r} is not IPv{version}")
        return (*self.ipv4, *self.ipv6)


@dataclass(frozen=True)
class BundleSecrets:
    postgres_password: str
    redis_password: str
    jwt_secret: str
    origin_private_key_pem: str
    registry_password: str | None = None
    # The droplet's Spaces key for database dumps (both or neither): secrets/rclone.conf.
    spaces_access_key: str | None = None
    spaces_secret_key: str | None = None

    @property
    def has_spaces_key(self) -> bool:
        return self.spaces_access_key is not None and self.spaces_secret_key is not None

    def validate(self) -> None:
        checks = (
            (
                "postgres_password",
                self.postgres_password,
                _PASSWORD_RE,
                "20-256 characters of A-Z a-z 0-9 . _ ~ -",
            ),
            ("redis_password", self.redis_password, _PASSWORD_RE, "20-256 characters of A-Z a-z 0-9 . _ ~ -"),
            ("jwt_secret", self.jwt_secret, _JWT_RE, "32-1024 characters of the base64/base64url alphabet"),
        )
        for name, value, pattern, what in checks:
            if not pattern.fullmatch(value):
                raise BundleInputError(f"secrets.{name}: must be {what} (value not shown)")
        pem = self.origin_private_key_pem.strip()
        if not (pem.startswith("-----BEGIN ") and pem.endswith("PRIVATE KEY-----")):
            raise BundleInputError("secrets.origin_private_key_pem: not a PEM private key (value not shown)")
        if self.registry_password is not None and not _TOKEN_RE.fullmatch(self.registry_password):
            raise BundleInputError(
                "secrets.registry_password: must be printable with no whitespace (value not shown)"
            )
        if (self.spaces_access_key is None) != (self.spaces_secret_key is None):
            raise BundleInputError("secrets.spaces_access_key/spaces_secret_key: give both or neither")
        spaces = {"spaces_access_key": self.spaces_access_key, "spaces_secret_key": self.spaces_secret_key}
        for key_name, key_value in spaces.items():
            if key_value is not None and not _SPACES_KEY_RE.fullmatch(key_value):
                raise BundleInputError(
                    f"secrets.{key_name}: must be 16-256 characters of A-Z a-z 0-9 + / = . _ ~ - "
                    "(value not shown)"
                )

    def values(self) -> tuple[str, ...]:
        """Every secret value, for tests and leak checks."""
        values = (self.postgres_password, self.redis_password, self.jwt_secret, self.origin_private_key_pem)
        optional = (self.registry_password, self.spaces_access_key, self.spaces_secret_key)
        return (*values, *(v for v in optional if v is not None))


@dataclass(frozen=True)
class NginxParams:
    """Where nginx listens and finds its files. The defaults are the droplet's (inside the
    nginx container); the tests override ports and paths to run a real nginx on loopback."""

    http_port: int = catalog.HTTP_PORT
    https_port: int = catalog.HTTPS_PORT
    listen_addresses: tuple[str, ...] = ("",)  # "" = all addresses; e.g. "127.0.0.1", "[::1]"
    health_port: int = catalog.NGINX_HEALTH_PORT  # always bound to 127.0.0.1 only
    config_dir: str = catalog.NGINX_CONFIG_DIR  # holds the bundle's nginx/ files
    cert_path: str = f"{catalog.NGINX_TLS_DIR}/origin.pem"
    key_path: str = catalog.NGINX_KEY_PATH
    access_log: str = "/dev/stdout"  # Docker's logging driver collects and rotates it
    error_log: str = "/dev/stderr"
    pid_path: str = "/run/nginx.pid"
    user: str | None = "nginx"  # the worker user of the nginx image; None: no `user` directive
    temp_dir: str | None = None  # None: the image's compiled-in temp paths

    def validate(self) -> None:
        ports = (self.http_port, self.https_port, self.health_port)
        if not all(1 <= p <= 65535 for p in ports) or len(set(ports)) != len(ports):
            raise BundleInputError(f"nginx ports must be distinct and in 1-65535, got {ports}")
        if not self.listen_addresses:
            raise BundleInputError("nginx.listen_addresses: empty")
        for path in (self.config_dir, self.cert_path, self.key_path, self.pid_path):
            if not posixpath.isabs(path):
                raise BundleInputError(f"nginx paths must be absolute, got {path!r}")


@dataclass(frozen=True)
class BundleFile:
    path: str  # relative to the release dir, POSIX
    text: str
    mode: int


def _redacted_text(path: str) -> str:
    return f"# secret file {path}: content redacted; delivered to the host over SSH stdin only\n"


@dataclass(frozen=True)
class Bundle:
    files: tuple[BundleFile, ...]  # non-secret, sorted by path
    secret_files: tuple[BundleFile, ...]  # mode 0o600, sorted by path
    digest: str  # sha256 over every file, secret ones included
    service_digests: Mapping[str, str] = field(hash=False)

    @property
    def release(self) -> str:
        return release_id(self.digest)

    def redacted(self) -> tuple[BundleFile, ...]:
        """Every file, sorted by path; secret files keep path and mode, their text names the file only."""
        hidden = (BundleFile(f.path, _redacted_text(f.path), f.mode) for f in self.secret_files)
        return tuple(sorted((*self.files, *hidden), key=lambda f: f.path))

    def file(self, path: str) -> BundleFile:
        for item in (*self.files, *self.secret_files):
            if item.path == path:
                return item
        raise KeyError(path)


def bundle_digest(files: tuple[BundleFile, ...]) -> str:
    """The contract's bundle digest of rendered files (the agent computes the same on the host)."""
    return digest_files((f.path, f.mode, f.text.encode()) for f in files)

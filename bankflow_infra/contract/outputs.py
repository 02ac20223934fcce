"""The stack outputs: what the Pulumi program exports and every day-2 command and workflow reads.

:data:`OUTPUTS` names each output with its JSON type, whether it is secret, and its meaning (the
README's table is checked against it); the program exports exactly these names, and
:func:`parse_outputs` validates a ``pulumi stack output --json`` document into one frozen
:class:`StackOutputs`, collecting every problem into one :class:`OutputsError` that names the
stack and the output. Outputs this module does not know are ignored: the program may add
outputs before the CLI reads them, and the CLI reads nothing outside the contract.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast
from urllib.parse import urlsplit

from .output_specs import OUTPUT_NAMES as OUTPUT_NAMES
from .output_specs import OUTPUTS as OUTPUTS
from .output_specs import SECRET_OUTPUTS as SECRET_OUTPUTS
from .output_specs import OutputSpec as OutputSpec
from .output_specs import readme_table as readme_table
from .outputs_fleet import FLEET_OUTPUTS, parse_database, parse_load_balancer_ip, parse_origin_ips
from .outputs_fleet import ManagedDatabaseEndpoint as ManagedDatabaseEndpoint
from .outputs_fleet import OriginDroplet as OriginDroplet
from .services import APP_SERVICES, ENVIRONMENTS, Environment

# What `pulumi stack output --json` prints for a secret output without --show-secrets.
REDACTED: Final = "[secret]"
# What _Reader.get returns for an absent output: reported once as missing, never as mistyped too.
_MISSING: Final = object()
# Outputs added after stacks were deployed (issue 11): absent means "not deployed yet", not an error.
_ADDED_LATER: Final = frozenset(
    {"backup_replica", "backup_replica_key", "backup_drill_key", "backup_repository"}
    | {"origin_pull_client"}  # issue 12
    | FLEET_OUTPUTS  # issue 13
)


class OutputsError(Exception):
    """Stack outputs that cannot be used; the message names the stack and what is wrong."""


@dataclass(frozen=True)
class SshEndpoint:
    host: str
    port: int
    user: str
    host_public_key: str  # the pinned host key (OpenSSH format)


@dataclass(frozen=True)
class HealthTarget:
    service: str  # one of APP_SERVICES
    url: str  # https://<host><path>, through Cloudflare
    host: str  # Host header and TLS SNI
    path: str


@dataclass(frozen=True)
class BackupBucket:
    name: str
    region: str
    endpoint: str


@dataclass(frozen=True)
class SpacesKeyPair:
    access_key: str
    secret_key: str = field(repr=False)


@dataclass(frozen=True)
class RepositorySecrets:
    """The keys of the bucket's pgBackRest and restic repositories: never in a repr or message."""

    cipher_pass: str = field(repr=False)
    uploads_password: str = field(repr=False)


@dataclass(frozen=True)
class OriginPullClient:
    """The client certificate Cloudflare presents to this stack's nginx (Authenticated Origin
    Pulls); ``health --origin`` presents it too. The key never reaches a repr or a message."""

    certificate: str = field(repr=False)
    private_key: str = field(repr=False)


@dataclass(frozen=True)
class StackOutputs:
    stack: str
    environment: Environment
    origin_ip: str | None  # null when the stack has no server of its own
    origin_ipv6: str | None
    ssh: SshEndpoint | None
    # None when absent or read without --show-secrets; kept out of repr so it is never logged.
    deploy_private_key: str | None = field(repr=False)
    urls: Mapping[str, str]
    health: tuple[HealthTarget, ...]
    release: str | None
    origin_stack: str
    backup_bucket: BackupBucket | None
    origin_certificate: str | None = field(repr=False)  # PEM, long: not useful in a repr
    origin_cert_expires_on: str | None
    backup_replica: BackupBucket | None = None
    # None when absent or read without --show-secrets; never in a repr.
    backup_replica_key: SpacesKeyPair | None = field(default=None, repr=False)
    backup_drill_key: SpacesKeyPair | None = field(default=None, repr=False)
    backup_repository: RepositorySecrets | None = field(default=None, repr=False)
    # None when absent (a stack without a server) or read without --show-secrets.
    origin_pull_client: OriginPullClient | None = field(default=None, repr=False)
    # Issue 13. Every app droplet in roll order (one for a single-droplet stack; () when the
    # stack has no server, or was deployed before issue 13: then `ssh`/`origin_ip` name the one).
    origin_ips: tuple[OriginDroplet, ...] = ()
    load_balancer_ip: str | None = None  # null: no load balancer (one droplet)
    load_balancer_ipv6: str | None = None
    database: ManagedDatabaseEndpoint | None = None  # null: PostgreSQL runs on the droplet


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages (the operator sees JSON, not Python)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class _Reader:
    """Validates one outputs document, collecting every problem before raising one error."""

    def __init__(self, stack: str, document: Mapping[str, Any]) -> None:
        self.stack = stack
        self.document = document
        self.problems: list[str] = []

    def fail(self, name: str, expected: str, value: Any, got: str | None = None) -> None:
        if value is _MISSING:
            return
        shown = got if got is not None else _json_type(value)
        self.problems.append(
            f"stack output {name!r} of stack {self.stack!r}: expected {expected}, got {shown}"
        )

    def get(self, name: str) -> Any:
        if name not in self.document and name in _ADDED_LATER:
            return None
        if name not in self.document:
            self.problems.append(f"stack output {name!r} of stack {self.stack!r} is missing "
                                 "(was the stack deployed with this version of the program?)")
        return self.document.get(name, _MISSING)

    def string(self, name: str, value: Any, expected: str = "a string", nullable: bool = False) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value:
            self.fail(name, f"{expected} or null" if nullable else expected, value)
            return None
        return value

    def ip(self, name: str, value: Any, version: int) -> str | None:
        expected = f"an IPv{version} address"
        text = self.string(name, value, expected, nullable=True)
        if text is None:
            return None
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            address = None
        if address is None or address.version != version:
            self.fail(name, f"{expected} or null", text, repr(text))
            return None
        return text

    def https_url(self, name: str, value: Any) -> str | None:
        url = self.string(name, value, "an https:// URL")
        if url is not None and (urlsplit(url).scheme != "https" or not urlsplit(url).hostname):
            self.fail(name, "an https:// URL", url, repr(url))
            return None
        return url

    def obj(self, name: str, value: Any, keys: Sequence[str], nullable: bool) -> Mapping[str, Any] | None:
        shape = "{" + ", ".join(keys) + "}"
        if value is None and nullable:
            return None
        if not isinstance(value, dict):
            self.fail(name, f"an object {shape}" + (" or null" if nullable else ""), value)
            return None
        missing = [k for k in keys if k not in value]
        if missing:
            self.fail(name, f"an object {shape}", value, f"one without {', '.join(missing)}")
            return None
        return cast(Mapping[str, Any], value)


def _environment(r: _Reader) -> Environment:
    value = r.get("environment")
    if value not in ENVIRONMENTS:
        r.fail("environment", " or ".join(repr(e) for e in ENVIRONMENTS), value,
               repr(value) if isinstance(value, str) else None)
        return ENVIRONMENTS[0]
    return cast(Environment, value)


def _ssh(r: _Reader) -> SshEndpoint | None:
    raw = r.obj("ssh", r.get("ssh"), ("host", "port", "user", "host_public_key"), nullable=True)
    if raw is None:
        return None
    port = raw["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        r.fail("ssh.port", "a port number", port, repr(port) if isinstance(port, int) else None)
        port = 0
    host = r.string("ssh.host", raw["host"])
    user = r.string("ssh.user", raw["user"])
    key = r.string("ssh.host_public_key", raw["host_public_key"], "an OpenSSH public key")
    return SshEndpoint(host or "", port, user or "", key or "")


def _urls(r: _Reader) -> Mapping[str, str]:
    value = r.get("urls")
    if not isinstance(value, dict):
        r.fail("urls", "an object of service to https:// URL", value)
        return {}
    urls: dict[str, str] = {}
    for service, url in value.items():
        if service not in APP_SERVICES:
            r.problems.append(f"stack output 'urls' of stack {r.stack!r}: unknown service {service!r}; "
                              f"the catalog's services are {', '.join(APP_SERVICES)}")
            continue
        checked = r.https_url(f"urls.{service}", url)
        if checked is not None:
            urls[service] = checked
    return urls


def _health(r: _Reader) -> tuple[HealthTarget, ...]:
    value = r.get("health")
    keys = ("service", "url", "host", "path")
    if not isinstance(value, list):
        r.fail("health", "a list of {" + ", ".join(keys) + "}", value)
        return ()
    if not value:
        r.fail("health", "a list of {" + ", ".join(keys) + "} with at least one service", value,
               "an empty list")
        return ()
    targets: list[HealthTarget] = []
    for index, item in enumerate(value):
        name = f"health[{index}]"
        raw = r.obj(name, item, keys, nullable=False)
        if raw is None:
            continue
        service = raw["service"]
        if service not in APP_SERVICES:
            r.problems.append(f"stack output {name!r} of stack {r.stack!r}: unknown service {service!r}; "
                              f"the catalog's services are {', '.join(APP_SERVICES)}")
            continue
        url = r.https_url(f"{name}.url", raw["url"])
        host = r.string(f"{name}.host", raw["host"], "a hostname")
        path = r.string(f"{name}.path", raw["path"], "an absolute path")
        if path is not None and not path.startswith("/"):
            r.fail(f"{name}.path", "an absolute path", path, repr(path))
            continue
        if url is not None and host is not None and urlsplit(url).hostname != host.lower():
            # The probe sends Host/SNI = host to the URL's address: they must name the same site.
            r.fail(f"{name}.host", f"the hostname of {url!r}", host, repr(host))
            continue
        if url is not None and path is not None and urlsplit(url).path != path:
            # --origin requests `path`, the edge probe requests `url`: both must check the same thing.
            r.fail(f"{name}.path", f"the path of {url!r}", path, repr(path))
            continue
        if url is not None and host is not None and path is not None:
            targets.append(HealthTarget(service, url, host, path))
    services = [t.service for t in targets]
    duplicates = sorted({s for s in services if services.count(s) > 1})
    if duplicates:
        r.problems.append(f"stack output 'health' of stack {r.stack!r}: service(s) listed twice: "
                          f"{', '.join(duplicates)}")
    return tuple(targets)


def _backup_bucket(r: _Reader, name: str = "backup_bucket") -> BackupBucket | None:
    raw = r.obj(name, r.get(name), ("name", "region", "endpoint"), nullable=True)
    if raw is None:
        return None
    return BackupBucket(
        name=r.string(f"{name}.name", raw["name"]) or "",
        region=r.string(f"{name}.region", raw["region"]) or "",
        endpoint=r.string(f"{name}.endpoint", raw["endpoint"]) or "",
    )


def _key_pair(r: _Reader, name: str) -> SpacesKeyPair | None:
    """A secret key pair; its values never reach a message (only their JSON types do)."""
    value = r.get(name)
    if value == REDACTED:
        return None  # hidden (saved without --show-secrets): the command that needs it says so
    raw = r.obj(name, value, ("access_key", "secret_key"), nullable=True)
    if raw is None:
        return None
    access = r.string(f"{name}.access_key", raw["access_key"])
    secret = raw["secret_key"]
    if not isinstance(secret, str) or not secret:
        r.fail(f"{name}.secret_key", "a string", secret)
        return None
    return SpacesKeyPair(access, secret) if access else None


def _repository(r: _Reader) -> RepositorySecrets | None:
    """The repositories' keys; like a key pair, only JSON types ever reach a message."""
    value, keys = r.get("backup_repository"), ("cipher_pass", "uploads_password")
    raw = None if value == REDACTED else r.obj("backup_repository", value, keys, nullable=True)
    bad = [key for key in keys if raw is not None and not (isinstance(raw[key], str) and raw[key])]
    for key in bad:
        r.fail(f"backup_repository.{key}", "a string", raw[key] if raw else None)
    return RepositorySecrets(raw["cipher_pass"], raw["uploads_password"]) if raw and not bad else None


def _origin_pull_client(r: _Reader) -> OriginPullClient | None:
    """Like the repositories' keys: PEM checks only, and only JSON types ever reach a message."""
    value, keys = r.get("origin_pull_client"), ("certificate", "private_key")
    raw = None if value == REDACTED else r.obj("origin_pull_client", value, keys, nullable=True)
    markers = {"certificate": "-----BEGIN CERTIFICATE-----", "private_key": "PRIVATE KEY-----"}
    bad = [k for k in keys if raw is not None and not (isinstance(raw[k], str) and markers[k] in raw[k])]
    for key in bad:
        r.fail(f"origin_pull_client.{key}", "a PEM string", raw[key] if raw else None)
    return OriginPullClient(raw["certificate"], raw["private_key"]) if raw and not bad else None


def _deploy_key(r: _Reader, show_secrets: bool) -> str | None:
    value = r.get("deploy_private_key")
    if value == REDACTED and not show_secrets:
        return None  # pulumi hides it unless asked; the commands that need it ask
    return r.string("deploy_private_key", value, "an OpenSSH private key", nullable=True)


def _certificate(r: _Reader) -> str | None:
    value = r.string("origin_certificate", r.get("origin_certificate"), "a PEM certificate", nullable=True)
    if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
        r.fail("origin_certificate", "a PEM certificate or null", value, "a string that is not PEM")
        return None
    return value


def parse_outputs(stack: str, document: Any, show_secrets: bool = False) -> StackOutputs:
    """Validate a ``pulumi stack output --json`` document into StackOutputs, or raise OutputsError."""
    if not isinstance(document, dict):
        raise OutputsError(f"outputs of stack {stack!r}: expected a JSON object of outputs, "
                           f"got {_json_type(document)}")
    r = _Reader(stack, document)
    outputs = StackOutputs(
        stack=stack,
        environment=_environment(r),
        origin_ip=r.ip("origin_ip", r.get("origin_ip"), 4),
        origin_ipv6=r.ip("origin_ipv6", r.get("origin_ipv6"), 6),
        ssh=_ssh(r),
        deploy_private_key=_deploy_key(r, show_secrets),
        urls=_urls(r),
        health=_health(r),
        release=r.string("release", r.get("release"), "a bundle digest", nullable=True),
        origin_stack=r.string("origin_stack", r.get("origin_stack"), "a stack name") or "",
        backup_bucket=_backup_bucket(r),
        origin_certificate=_certificate(r),
        origin_cert_expires_on=r.string("origin_cert_expires_on", r.get("origin_cert_expires_on"),
                                        "a timestamp", nullable=True),
        backup_replica=_backup_bucket(r, "backup_replica"),
        backup_replica_key=_key_pair(r, "backup_replica_key"),
        backup_drill_key=_key_pair(r, "backup_drill_key"),
        backup_repository=_repository(r),
        origin_pull_client=_origin_pull_client(r),
        origin_ips=parse_origin_ips(r),
        load_balancer_ip=parse_load_balancer_ip(r),
        load_balancer_ipv6=parse_load_balancer_ip(r, 6),
        database=parse_database(r),
    )
    if r.problems:
        raise OutputsError("\n".join(r.problems))
    return outputs

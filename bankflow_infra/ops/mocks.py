"""Pulumi's mock engine, set up to run the real program offline (``plan`` and the tests).

No provider plugin, credential or network is used: the engine records every resource the
program registers (type, name, parent, inputs with their secret markers, options) and answers
with deterministic stand-in values for what the cloud would compute (IDs, IP addresses from the
documentation ranges, keys). Values the cloud computes are therefore placeholders in a plan.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

# Cloudflare's published edge ranges (cloudflare.com/ips), used only when no network is there:
# a real `pulumi up` reads the live list through cloudflare.get_ip_ranges().
CLOUDFLARE_IPV4_SNAPSHOT: Final = (
    "173.245.48.0/20",
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "141.101.64.0/18",
    "108.162.192.0/18",
    "190.93.240.0/20",
    "188.114.96.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "162.158.0.0/15",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "172.64.0.0/13",
    "131.0.72.0/22",
)
CLOUDFLARE_IPV6_SNAPSHOT: Final = (
    "2400:cb00::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2405:b500::/32",
    "2405:8100::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
)
# Documentation ranges (RFC 5737 / RFC 3849): a plan never shows an address someone owns.
MOCK_IPV4: Final = "203.0.113.10"
MOCK_IPV6: Final = "2001:db8::10"
MOCK_REFERENCED_IPV4: Final = "203.0.113.20"
MOCK_REFERENCED_IPV6: Final = "2001:db8::20"
# Issue 13: droplets 2..N (server.count <= 10) get .11 .. .19 (droplet 1 keeps MOCK_IPV4), the
# load balancer .30; managed services answer on VPC addresses (10.x) and DigitalOcean's ports.
MOCK_LOAD_BALANCER_IPV4: Final = "203.0.113.30"
MOCK_LOAD_BALANCER_IPV6: Final = "2001:db8::30"
MOCK_DATABASE_PORT: Final = 25060  # DigitalOcean's direct PostgreSQL port
MOCK_POOL_PORT: Final = 25061  # its PgBouncer (connection pool) port
MOCK_VALKEY_PORT: Final = 25061
MOCK_NFS_HOST: Final = "10.130.0.50"
SCALE_OUT_TYPES: Final = (
    "digitalocean:index/loadBalancer",
    "digitalocean:index/database",
    "digitalocean:index/nfs",
)


def _droplet_number(name: str) -> int:
    """1 for ``server-droplet``, N for ``server-droplet-N``."""
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 1


def _token(*parts: str, length: int = 40) -> str:
    """Deterministic stand-in text: the same program gives the same plan."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    protect: bool
    delete_before_replace: bool
    deleted_with: str
    replace_with: tuple[str, ...]
    additional_secret_outputs: tuple[str, ...]
    state: dict[str, Any]  # what the mock "cloud" answered: inputs plus computed values
    dependencies: tuple[str, ...] = ()  # URNs this resource waits for (depends_on and inputs)
    retain_on_delete: bool = False


@dataclass
class Recorder:
    resources: list[Registration] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_]


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, additionally keeping each registration's parent and options."""

    def __init__(self, mocks: pulumi.runtime.Mocks, recorder: Recorder) -> None:
        super().__init__(mocks)
        self.recorder = recorder

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self.recorder.resources.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=request.custom,
                    inputs=rpc.deserialize_properties(request.object),
                    protect=request.protect,
                    delete_before_replace=request.deleteBeforeReplace,
                    deleted_with=request.deletedWith,
                    replace_with=tuple(request.replace_with),
                    additional_secret_outputs=tuple(request.additionalSecretOutputs),
                    state=dict(self.resources[response.urn].state) if response.urn in self.resources else {},
                    dependencies=tuple(request.dependencies),
                    retain_on_delete=request.retainOnDelete,
                )
            )
        return response

    def ReadResource(self, request: Any) -> Any:
        # StackReferences (and `get` lookups) arrive here rather than as registrations.
        response = super().ReadResource(request)  # type: ignore[no-untyped-call]
        self.recorder.resources.append(
            Registration(
                urn=response.urn,
                type=request.type,
                name=request.name,
                parent=request.parent,
                custom=True,
                inputs=rpc.deserialize_properties(request.properties),
                protect=False,
                delete_before_replace=False,
                deleted_with="",
                replace_with=(),
                additional_secret_outputs=tuple(request.additionalSecretOutputs),
                state=dict(self.resources[response.urn].state),
            )
        )
        return response


def _fake_openssh_public_key(name: str) -> str:
    return "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + _token(name, "pub", length=43)


def _pem(kind: str, name: str) -> str:
    body = _token(name, kind, length=64)
    return f"-----BEGIN {kind}-----\nMOCK{body}\n-----END {kind}-----\n"


class PlanMocks(pulumi.runtime.Mocks):
    """Answers for what the clouds would compute; everything else echoes the inputs."""

    def __init__(
        self, recorder: Recorder, seed: str, referenced_outputs: dict[str, Any] | None = None
    ) -> None:
        self.recorder = recorder
        self.seed = seed  # the stack: two stacks get different stand-in keys and passwords
        self.referenced_outputs = referenced_outputs or {
            "origin_ip": MOCK_REFERENCED_IPV4,
            "origin_ipv6": MOCK_REFERENCED_IPV6,
            # What an edge with edge.originStack uploads to Cloudflare (stand-in PEMs).
            "origin_pull_client": {
                "certificate": _pem("CERTIFICATE", f"{seed}/referenced-origin-pull"),
                "private_key": _pem("PRIVATE KEY", f"{seed}/referenced-origin-pull"),
            },
            # What a rebuild stack reads from its environment's bucket stack (stand-in values).
            "backup_repository": {
                "cipher_pass": "mockcipher" + _token(seed, "referenced-cipher", length=54),
                "uploads_password": "mockuploads" + _token(seed, "referenced-uploads", length=53),
            },
        }

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        name, typ = f"{self.seed}/{args.name}", args.typ
        resource_id = f"{args.name}-id"
        computed: dict[str, Any] = {}
        if typ == "random:index/randomPassword:RandomPassword":
            computed = {"result": "mockpw" + _token(name, length=int(args.inputs.get("length", 32)) - 6)}
        elif typ == "tls:index/privateKey:PrivateKey":
            computed = {
                "privateKeyPem": _pem("PRIVATE KEY", name),
                "privateKeyOpenssh": _pem("OPENSSH PRIVATE KEY", name),
                "publicKeyOpenssh": _fake_openssh_public_key(name) + "\n",
                "publicKeyPem": _pem("PUBLIC KEY", name),
            }
        elif typ in (
            "tls:index/selfSignedCert:SelfSignedCert",
            "tls:index/locallySignedCert:LocallySignedCert",
        ):
            computed = {"certPem": _pem("CERTIFICATE", name)}
        elif typ == "tls:index/certRequest:CertRequest":
            computed = {"certRequestPem": _pem("CERTIFICATE REQUEST", name)}
        elif typ == "cloudflare:index/originCaCertificate:OriginCaCertificate":
            days = int(args.inputs.get("requestedValidity", 365))
            expires = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=days)
            computed = {"certificate": _pem("CERTIFICATE", name), "expiresOn": expires.isoformat()}
        elif typ == "digitalocean:index/droplet:Droplet":
            number = _droplet_number(args.name)
            resource_id = str(100000000 + number)
            computed = {
                "ipv4Address": MOCK_IPV4 if number == 1 else f"203.0.113.{10 + number - 1}",
                "ipv6Address": MOCK_IPV6 if number == 1 else f"2001:db8::1{number - 1}",
                "dropletUrn": f"do:droplet:{resource_id}",
            }
        elif typ.startswith(SCALE_OUT_TYPES):
            computed = _managed_state(typ, name, resource_id, args.inputs)
        elif typ == "digitalocean:index/volume:Volume":
            computed = {"volumeUrn": f"do:volume:{resource_id}"}
        elif typ == "digitalocean:index/spacesBucket:SpacesBucket":
            computed = {"bucketUrn": f"do:space:{args.inputs.get('name')}"}
        elif typ == "digitalocean:index/sshKey:SshKey":
            resource_id = str(int(_token(name, length=8), 16))
            computed = {
                "fingerprint": ":".join(_token(name, "fp", length=32)[i : i + 2] for i in range(0, 32, 2))
            }
        elif typ == "digitalocean:index/spacesKey:SpacesKey":
            computed = {
                "accessKey": "DO00" + _token(name, "ak", length=16).upper(),
                "secretKey": _token(name, "sk"),
            }
        elif typ == "pulumi:pulumi:StackReference":
            computed = {"outputs": self.referenced_outputs}
        return resource_id, {**state, **computed}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        no_failures: list[tuple[str, str]] = []
        if args.token == "cloudflare:index/getZone:getZone":
            zone_name = (args.args.get("filter") or {}).get("name", "")
            zone_id = f"zone-{_token(zone_name, length=16)}"
            return {"id": zone_id, "zoneId": zone_id, "name": zone_name}, no_failures
        if args.token == "cloudflare:index/getIpRanges:getIpRanges":
            ranges = {
                "ipv4Cidrs": list(CLOUDFLARE_IPV4_SNAPSHOT),
                "ipv6Cidrs": list(CLOUDFLARE_IPV6_SNAPSHOT),
            }
            return ranges, no_failures
        if args.token == "digitalocean:index/getDatabaseCa:getDatabaseCa":
            cluster = str(args.args.get("clusterId", ""))
            ca = {"certificate": _pem("CERTIFICATE", f"{cluster}/ca"), "clusterId": cluster, "id": cluster}
            return ca, no_failures
        return {}, no_failures


def _managed_state(typ: str, name: str, resource_id: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """What DigitalOcean computes for the scale-out resources (issue 13)."""
    if typ == "digitalocean:index/loadBalancer:LoadBalancer":
        return {
            "ip": MOCK_LOAD_BALANCER_IPV4,
            "ipv6": MOCK_LOAD_BALANCER_IPV6,
            "loadBalancerUrn": f"do:loadbalancer:{resource_id}",
        }
    if typ == "digitalocean:index/databaseCluster:DatabaseCluster":
        engine = str(inputs.get("engine", "pg"))
        host = f"{inputs.get('name', 'cluster')}-do-user-0.db.ondigitalocean.com"
        return {
            "host": host,
            "privateHost": f"private-{host}",
            "port": MOCK_DATABASE_PORT if engine == "pg" else MOCK_VALKEY_PORT,
            "user": "doadmin" if engine == "pg" else "default",
            "password": "mockdb" + _token(name, "admin", length=26),
            "database": "defaultdb",
            "clusterUrn": f"do:dbaas:{resource_id}",
        }
    if typ == "digitalocean:index/databaseUser:DatabaseUser":
        return {"password": "mockuser" + _token(name, "user", length=24), "role": "normal"}
    if typ == "digitalocean:index/databaseConnectionPool:DatabaseConnectionPool":
        return {"port": MOCK_POOL_PORT, "host": "pool-host", "privateHost": "private-pool-host"}
    if typ == "digitalocean:index/nfs:Nfs":
        return {"host": MOCK_NFS_HOST, "mountPath": f"/{_token(name, 'nfs', length=8)}/{resource_id}"}
    return {}


def map_secrets(value: Any, on_secret: Callable[[Any], Any]) -> Any:
    """``value`` (a recorded input: dicts, lists, scalars) with each secret-marked part replaced
    by ``on_secret(its plain value)``."""
    if rpc.is_rpc_secret(value):
        return on_secret(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: map_secrets(v, on_secret) for k, v in value.items()}
    if isinstance(value, list):
        return [map_secrets(v, on_secret) for v in value]
    return value


def unwrap(value: Any) -> Any:
    """A recorded input with every secret marker removed (for tests that inspect values)."""
    return map_secrets(value, unwrap)


def without_secrets(value: Any) -> Any:
    """A recorded input with every secret-marked part dropped: what Pulumi stores in plain text."""
    return map_secrets(value, lambda _: None)


def redact(value: Any) -> Any:
    """A recorded input with every secret replaced by ``[secret]`` (for display)."""
    return map_secrets(value, lambda _: "[secret]")

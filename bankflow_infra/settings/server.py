"""``bankflow:server``: the droplet(s), its VPC, who may reach SSH, the data volume and swap."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final

from bankflow_infra.settings.checks import (
    Problems,
    check,
    flag,
    int_range,
    merged,
    network,
    string_list,
    typed,
)
from bankflow_infra.settings.defaults import DROPLET_IMAGE, MAX_APP_DROPLETS, defaults
from bankflow_infra.settings.model import OperatorAccount, ServerSettings
from bankflow_infra.settings.slugs import DROPLET_REGIONS, DROPLET_SIZES, HOW_TO_ADD_A_SLUG

# DigitalOcean reserves these ranges (DOKS, internal services): a VPC may not overlap them.
DO_RESERVED_RANGES: Final = ("10.244.0.0/16", "10.245.0.0/16", "10.246.0.0/24", "10.229.0.0/16")
# RFC 1918, and nothing else: Python's `is_private` also admits loopback (127/8), link-local
# (169.254/16) and the documentation ranges, none of which DigitalOcean can route in a VPC.
RFC1918_RANGES: Final = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
# The widest public source SSH may admit, per address family: wider is "the internet in pieces"
# (two /1 halves, a public /8). The policy pack (policy/bankflow_policy/network.py) holds the
# same rule, deliberately restated there.
WIDEST_PUBLIC_SSH_PREFIX: Final = {4: 16, 6: 32}
_SSH_KEY_RE: Final = re.compile(
    # The hardened sshd (files/ssh) accepts exactly these client key types; ECDSA would lock out.
    r"^(ssh-ed25519|sk-ssh-ed25519@openssh\.com|ssh-rsa)"
    r" [A-Za-z0-9+/=]{60,}( .*)?$"
)

# Linux account names host-setup.sh may create (useradd's portable subset, lower case); system
# accounts an operator must never become (they exist on every Ubuntu droplet, or are ours).
OPERATOR_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
RESERVED_ACCOUNT_NAMES: Final = frozenset(
    {"root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
     "www-data", "backup", "list", "irc", "nobody", "ubuntu", "sshd", "syslog", "messagebus",
     "polkitd", "postgres", "redis", "nginx", "docker", "bankflow", "bankflow-ops", "admin", "sudo"}
)  # fmt: skip


def _machine(v: dict[str, Any], default: dict[str, Any], problems: Problems) -> tuple[str, str, str]:
    """Region, size and image slugs."""
    region = typed(problems, "server.region", v["region"], str, default["region"])
    check(
        problems,
        "server.region",
        region in DROPLET_REGIONS,
        f"{region!r} is not a known DigitalOcean region; valid: {', '.join(DROPLET_REGIONS)}. "
        f"{HOW_TO_ADD_A_SLUG}",
    )
    size = typed(problems, "server.size", v["size"], str, default["size"])
    check(
        problems,
        "server.size",
        size in DROPLET_SIZES,
        f"{size!r} is not a known DigitalOcean droplet size (e.g. s-2vcpu-4gb, s-4vcpu-8gb, g-2vcpu-8gb). "
        f"{HOW_TO_ADD_A_SLUG}",
    )
    image = typed(problems, "server.image", v["image"], str, default["image"])
    check(
        problems,
        "server.image",
        image.startswith("ubuntu-24-04-"),
        f"{image!r}: the host setup supports Ubuntu 24.04 LTS only (e.g. {DROPLET_IMAGE})",
    )
    return region, size, image


def _parse_vpc(value: Any, problems: Problems) -> None:
    key = "server.vpcCidr"
    if not isinstance(value, str):
        problems.add(
            key, "required: a private IPv4 range of /16 to /24 unique to this stack (e.g. 10.110.0.0/20)"
        )
        return
    net = network(value)
    if not isinstance(net, ipaddress.IPv4Network):
        problems.add(key, f"{value!r} is not an IPv4 CIDR with its host bits zero (e.g. 10.110.0.0/20)")
        return
    if not any(net.subnet_of(ipaddress.IPv4Network(r)) for r in RFC1918_RANGES):
        problems.add(
            key,
            f"{value!r} is not inside an RFC 1918 range ({', '.join(RFC1918_RANGES)}), e.g. 10.110.0.0/20",
        )
    if not 16 <= net.prefixlen <= 24:
        problems.add(key, f"{value!r}: DigitalOcean VPC ranges are /16 to /24")
    for reserved in DO_RESERVED_RANGES:
        if net.overlaps(ipaddress.ip_network(reserved)):
            problems.add(key, f"{value!r} overlaps {reserved}, which DigitalOcean reserves")


def _ssh_cidrs(value: Any, enabled: bool, problems: Problems) -> tuple[str, ...]:
    ssh_cidrs = string_list(problems, "server.sshAllowedCidrs", value)
    for index, cidr in enumerate(ssh_cidrs):
        net = network(cidr)
        key = f"server.sshAllowedCidrs[{index}]"
        if net is None:
            problems.add(key, f"{cidr!r} is not a CIDR with its host bits zero (e.g. 203.0.113.0/24)")
        elif net.prefixlen == 0:
            problems.add(key, f"{cidr!r} opens SSH to the whole internet; list the operators' ranges")
        elif not net.is_private and net.prefixlen < WIDEST_PUBLIC_SSH_PREFIX[net.version]:
            widest = WIDEST_PUBLIC_SSH_PREFIX[net.version]
            problems.add(
                key,
                f"{cidr!r} is a public range wider than /{widest}: that is the internet in pieces, not an "
                f"operator's range; list ranges of /{widest} or narrower (private ranges may be wider)",
            )
    if enabled and not ssh_cidrs:
        problems.add(
            "server.sshAllowedCidrs",
            "required when the server is enabled: the ranges allowed to reach port 22",
        )
    return ssh_cidrs


def _operator(index: int, entry: Any, problems: Problems) -> OperatorAccount | None:
    key = f"server.operators[{index}]"
    if not isinstance(entry, dict) or set(entry) != {"name", "publicKey"}:
        problems.add(key, "must be a mapping with exactly the keys name and publicKey")
        return None
    name, public_key = entry["name"], entry["publicKey"]
    if not isinstance(name, str) or not OPERATOR_NAME_RE.fullmatch(name):
        problems.add(
            f"{key}.name",
            f"{name!r} is not an account name: 1-32 of a-z 0-9 _ -, starting with a letter (e.g. ana)",
        )
        return None
    if name in RESERVED_ACCOUNT_NAMES or name.startswith("systemd-"):
        problems.add(f"{key}.name", f"{name!r} is a system account name; use the person's own name")
        return None
    if not isinstance(public_key, str) or not _SSH_KEY_RE.fullmatch(public_key):
        problems.add(
            f"{key}.publicKey",
            "not an ed25519, sk-ed25519 or RSA OpenSSH public key line (ssh-ed25519 AAAA... comment); "
            "the hardened sshd refuses other types",
        )
        return None
    return OperatorAccount(name=name, public_key=public_key)


def _operators(value: Any, problems: Problems) -> tuple[OperatorAccount, ...]:
    """server.operators: each person's own account (sudo, audited); see files/bootstrap/host-setup.sh."""
    if not isinstance(value, list):
        problems.add("server.operators", "must be a list of {name, publicKey} mappings")
        return ()
    found = [_operator(index, entry, problems) for index, entry in enumerate(value)]
    operators = tuple(operator for operator in found if operator is not None)
    names = [operator.name for operator in operators]
    keys = [operator.public_key.split()[1] for operator in operators]
    if len(set(names)) != len(names):
        problems.add("server.operators", "lists the same name twice: one account per person")
    if len(set(keys)) != len(keys):
        problems.add("server.operators", "lists the same key twice: a key identifies one person")
    return operators


def _admin_keys(value: Any, problems: Problems) -> tuple[str, ...]:
    keys = string_list(problems, "server.adminSshKeys", value)
    for index, key_text in enumerate(keys):
        check(
            problems,
            f"server.adminSshKeys[{index}]",
            bool(_SSH_KEY_RE.fullmatch(key_text)),
            "not an ed25519, sk-ed25519 or RSA OpenSSH public key line (ssh-ed25519 AAAA... comment); "
            "the hardened sshd refuses other types",
        )
    if len(set(keys)) != len(keys):
        problems.add("server.adminSshKeys", "lists the same key twice (DigitalOcean rejects duplicates)")
    if keys:
        # Since issue 12 root logs in only with the deploy key's forced command (sshd
        # PermitRootLogin forced-commands-only): an admin key for root would be a silent no-op.
        problems.add(
            "server.adminSshKeys",
            "root no longer logs in with personal keys (only the deploy key, restricted to the deploy's "
            "commands); move each key to server.operators as {name: <your account>, publicKey: <key>} "
            "and log in as that account (sudo for root)",
        )
    return keys


def parse_server(raw: Any, env: str, problems: Problems) -> ServerSettings:
    default = defaults(env)["server"]
    v = merged("server", raw, default, problems)
    region, size, image = _machine(v, default, problems)
    enabled = flag(problems, "server.enabled", v["enabled"], default["enabled"])
    vpc_cidr = v.get("vpcCidr")
    if enabled or vpc_cidr is not None:
        _parse_vpc(vpc_cidr, problems)
    ssh_cidrs = _ssh_cidrs(v["sshAllowedCidrs"], enabled, problems)
    keys = _admin_keys(v["adminSshKeys"], problems)
    operators = _operators(v["operators"], problems)
    backups = flag(problems, "server.backups", v["backups"], False)
    resize_disk = flag(problems, "server.resizeDisk", v["resizeDisk"], False)
    # Production's "volume required" rule depends on database/uploads: settings/scale.py check_scale.
    volume = int_range(problems, "server.volumeSizeGb", v["volumeSizeGb"], 0, 16384)
    swap = int_range(problems, "server.swapGb", v["swapGb"], 0, 16)
    return ServerSettings(
        enabled=enabled,
        region=region,
        size=size,
        image=image,
        vpc_cidr=str(vpc_cidr) if isinstance(vpc_cidr, str) else "",
        ssh_allowed_cidrs=ssh_cidrs,
        admin_ssh_keys=keys,
        backups=backups,
        volume_size_gb=volume,
        swap_gb=swap,
        resize_disk=resize_disk,
        operators=operators,
        count=int_range(problems, "server.count", v["count"], 1, MAX_APP_DROPLETS),
    )

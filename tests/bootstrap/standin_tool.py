"""Recording stand-ins for the system managers host-setup.sh drives.

apt, systemd, ufw, iptables, swap, the clock and the Docker engine cannot be driven from a test
sandbox (no init system, no Docker engine, and they would change the machine running the tests).
This one program plays all of them: the test installs it first on PATH under each command's name
(``tests/bootstrap/standins.py``). Each call appends its argv to ``$STANDIN_LOG`` (JSON lines) and
emulates just enough state, in ``$STANDIN_STATE`` (JSON), for the script's checks to see the effect
of its own actions: ``iptables -C`` fails until ``-I`` ran, ``ufw status`` is inactive until
``ufw --force enable``, ``dpkg-query`` reflects ``apt-get install``, and so on.

``sshd`` is not emulated: when ``$STANDIN_REAL_SSHD`` is set, ``sshd -t``/``-T`` run the real
OpenSSH server against the test root filesystem's configuration (with a test host key).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

DOCKER_KEY_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
GENUINE_KEY_MARKER = "stand-in docker release key"
TAMPERED_KEY_MARKER = "tampered key"


def _state_path() -> Path:
    return Path(os.environ["STANDIN_STATE"])


def load_state() -> dict[str, Any]:
    return dict(json.loads(_state_path().read_text()))


def save_state(state: dict[str, Any]) -> None:
    _state_path().write_text(json.dumps(state, indent=1, sort_keys=True))


def _unit(name: str) -> str:
    return name if "." in name else f"{name}.service"


def _add(state: dict[str, Any], key: str, value: str) -> None:
    if value not in state[key]:
        state[key].append(value)


def _host_path(path: str) -> str:
    rootfs = os.environ.get("BANKFLOW_ROOTFS", "").rstrip("/")
    return path[len(rootfs) :] if rootfs and path.startswith(rootfs + "/") else path


def apt_get(state: dict[str, Any], args: list[str]) -> int:
    words = [a for a in args if not a.startswith("-") and not a.startswith("DPkg::") and "=" not in a]
    if "install" in words:
        packages = words[words.index("install") + 1 :]
        for package in packages:
            _add(state, "installed", package)
        if "docker-ce" in packages:  # the package's postinst enables and starts the engine
            _add(state, "enabled", "docker.service")
            _add(state, "active", "docker.service")
            _add(state, "chains", "DOCKER-USER")
    return 0


def dpkg_query(state: dict[str, Any], args: list[str]) -> int:
    package = args[-1]
    if package in state["installed"]:
        print("installed", end="")
        return 0
    print(f"dpkg-query: no packages found matching {package}", file=sys.stderr)
    return 1


def curl(state: dict[str, Any], args: list[str]) -> int:
    target = Path(args[args.index("-o") + 1])
    marker = TAMPERED_KEY_MARKER if state.get("tampered_key") else GENUINE_KEY_MARKER
    target.write_text(f"-----BEGIN PGP PUBLIC KEY BLOCK-----\n{marker}\n-----END PGP PUBLIC KEY BLOCK-----\n")
    return 0


def gpg(state: dict[str, Any], args: list[str]) -> int:
    text = Path(args[-1]).read_text()
    if GENUINE_KEY_MARKER in text:
        fingerprint = DOCKER_KEY_FINGERPRINT
    elif TAMPERED_KEY_MARKER in text:
        fingerprint = "0123456789ABCDEF0123456789ABCDEF01234567"
    else:
        print("gpg: no valid OpenPGP data found.", file=sys.stderr)
        return 2
    print(f"pub:-:4096:1:{fingerprint[-16:]}:1487788586:::-:::scESA::::::23::0:")
    print(f"fpr:::::::::{fingerprint}:")
    print("sub:-:4096:1:7EA0A9C3F273FCD8:1487792064::::::s::::::23:")
    print("fpr:::::::::D3306A018370199E527AE7317EA0A9C3F273FCD8:")
    return 0


def systemctl(state: dict[str, Any], args: list[str]) -> int:
    flags = [a for a in args if a.startswith("--")]
    words = [a for a in args if not a.startswith("--")]
    verb, units = words[0], [_unit(u) for u in words[1:]]
    if verb == "is-active":
        return 0 if all(u in state["active"] for u in units) else 3
    if verb == "is-enabled":
        return 0 if all(u in state["enabled"] for u in units) else 1
    for unit in units:
        if verb == "enable":
            _add(state, "enabled", unit)
            if "--now" in flags:
                _add(state, "active", unit)
        elif verb in ("start", "restart"):
            _add(state, "active", unit)
    return 0


def _ufw_rule(args: list[str]) -> str:
    """A rule as `ufw show added` prints it after "ufw allow ": the words without a comment."""
    words = args[: args.index("comment")] if "comment" in args else args
    return " ".join(words)


def ufw(state: dict[str, Any], args: list[str]) -> int:
    firewall = state["ufw"]
    if args[:1] == ["status"]:
        print("Status: active" if firewall["active"] else "Status: inactive")
    elif args[:2] == ["show", "added"]:
        print("Added user rules (see 'ufw status' for running firewall):")
        print("\n".join(f"ufw allow {rule}" for rule in firewall["rules"]) or "(None)")
    elif args[:1] == ["allow"]:
        rule = _ufw_rule(args[1:])
        if rule not in firewall["rules"]:
            firewall["rules"].append(rule)
    elif args[:2] == ["delete", "allow"]:
        rule = _ufw_rule(args[2:])
        if rule not in firewall["rules"]:
            print("Could not delete non-existent rule")
        else:
            firewall["rules"].remove(rule)
    elif args[:3] == ["default", "deny", "incoming"]:
        defaults = Path(os.environ["BANKFLOW_ROOTFS"], "etc/default/ufw")
        text = defaults.read_text() if defaults.exists() else ""
        text = re.sub(r"(?m)^DEFAULT_INPUT_POLICY=.*\n?", "", text) + 'DEFAULT_INPUT_POLICY="DROP"\n'
        defaults.write_text(text)
    elif args == ["--force", "enable"]:
        firewall["active"] = True
    else:
        print(f"ufw stand-in: unsupported {args}", file=sys.stderr)
        return 2
    return 0


def iptables(state: dict[str, Any], args: list[str]) -> int:
    args = [a for a in args if a not in ("-w", "--wait")]
    operation, chain, rest = args[0], args[1], args[2:]
    chain_missing = chain not in state["chains"]
    if operation == "-N":
        if not chain_missing:
            print("iptables: Chain already exists.", file=sys.stderr)
            return 1
        state["chains"].append(chain)
        return 0
    if chain_missing:
        print("iptables: No chain/target/match by that name.", file=sys.stderr)
        return 1
    rules = [r for r in state["rules"] if r[0] == chain]
    if operation == "-S":
        print(f"-N {chain}")
        for rule in rules:
            print(f"-A {chain} {rule[1]}")
        return 0
    if rest and rest[0].isdigit():
        rest = rest[1:]
    rule = " ".join(rest)
    if operation == "-C":
        return 0 if [chain, rule] in rules else 1
    if operation in ("-I", "-A"):
        state["rules"].append([chain, rule])
        return 0
    print(f"iptables stand-in: unsupported {args}", file=sys.stderr)
    return 2


def iptables_restore(state: dict[str, Any], args: list[str]) -> int:
    """``iptables-restore --noflush FILE``: a declared chain is created or emptied, then appended to."""
    assert "--noflush" in args, "host-setup.sh must never flush the tables Docker and ufw own"
    for line in Path(os.environ.get("BANKFLOW_ROOTFS", "") + _host_path(args[-1])).read_text().splitlines():
        if line.startswith(":"):
            chain = line[1:].split()[0]
            _add(state, "chains", chain)
            state["rules"] = [rule for rule in state["rules"] if rule[0] != chain]
        elif line.startswith("-A "):
            chain, rule = line[3:].split(" ", 1)
            state["rules"].append([chain, rule])
    return 0


def _accounts(state: dict[str, Any]) -> dict[str, Any]:
    return state.setdefault("accounts", {})


def _groups(state: dict[str, Any]) -> dict[str, list[str]]:
    return state.setdefault("groups", {})


def getent(state: dict[str, Any], args: list[str]) -> int:
    database, name = args
    if database == "group":
        if name not in _groups(state):
            return 2
        print(f"{name}:x:999:{','.join(_groups(state)[name])}")
        return 0
    account = _accounts(state).get(name)
    if account is None:
        return 2
    if database == "passwd":
        uid = account["uid"]
        print(f"{name}:x:{uid}:{uid}:{account.get('comment', '')}:{account['home']}:/bin/bash")
    else:  # shadow: field 8 is the expiry day ("" = never)
        print(f"{name}:!:20000:0:99999:7::{account.get('expire', '')}:")
    return 0


def groupadd(state: dict[str, Any], args: list[str]) -> int:
    _groups(state).setdefault(args[-1], [])
    return 0


def useradd(state: dict[str, Any], args: list[str]) -> int:
    name = args[-1]
    uid = 1000 + len([a for a in _accounts(state).values() if a["uid"] >= 1000])
    _accounts(state)[name] = {"uid": uid, "home": f"/home/{name}", "expire": ""}
    Path(os.environ["BANKFLOW_ROOTFS"], "home", name).mkdir(parents=True, exist_ok=True)
    for group in args[args.index("--groups") + 1].split(",") if "--groups" in args else []:
        _groups(state)[group].append(name)
    return 0


def usermod(state: dict[str, Any], args: list[str]) -> int:
    name = args[-1]
    if "--expiredate" in args:
        _accounts(state)[name]["expire"] = args[args.index("--expiredate") + 1]
    if "--groups" in args:
        for group in args[args.index("--groups") + 1].split(","):
            if name not in _groups(state)[group]:
                _groups(state)[group].append(name)
    return 0


def gpasswd(state: dict[str, Any], args: list[str]) -> int:
    name, group = args[-2], args[-1]
    _groups(state)[group].remove(name)
    return 0


def visudo(state: dict[str, Any], args: list[str]) -> int:
    """``visudo -c -q -f FILE``: the real one when installed, else a check of the lines' shape."""
    real = os.environ.get("STANDIN_REAL_VISUDO")
    if real:
        os.execv(real, [real, *args])  # noqa: S606
    text = Path(args[-1]).read_text()
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    shaped = bool(rules) and all(r.startswith(("Defaults", "%")) for r in rules)
    if state.get("visudo_rejects") or not shaped:
        print(f"{args[-1]}: syntax error", file=sys.stderr)
        return 1
    return 0


def sshd(state: dict[str, Any], args: list[str]) -> int:
    real = os.environ.get("STANDIN_REAL_SSHD")
    if real:  # the real OpenSSH server validates/prints the test root filesystem's configuration
        os.execv(real, [real, *args, "-h", os.environ["STANDIN_SSHD_HOSTKEY"]])  # noqa: S606
    if "-T" in args:
        print(
            "passwordauthentication no\nkbdinteractiveauthentication no\n"
            "permitrootlogin forced-commands-only\nauthenticationmethods publickey\n"
            "hostkeyalgorithms ssh-ed25519"
            # an OpenSSH >= 9.8 lists this keyword (tests set the state to emulate one)
            + ("\npersourcepenalties crash:90s" if state.get("sshd_knows_penalties") else "")
        )
    return 0


def dockerd(state: dict[str, Any], args: list[str]) -> int:
    path = Path(args[args.index("--config-file") + 1])
    try:
        json.loads(path.read_text())
    except ValueError as error:
        print(f"unable to configure the Docker daemon with file {path}: {error}", file=sys.stderr)
        return 1
    print("configuration OK")
    return 0


def docker(state: dict[str, Any], args: list[str]) -> int:
    if "docker.service" not in state["active"]:
        print("Cannot connect to the Docker daemon", file=sys.stderr)
        return 1
    if args[:1] == ["info"]:
        print("27.3.1")
    elif args[:2] == ["compose", "version"]:
        print("2.29.7")
    return 0


def free(state: dict[str, Any], args: list[str]) -> int:
    total = int(state["mem_bytes"])
    print("               total        used        free      shared  buff/cache   available")
    print(f"Mem:    {total:>12} {total // 4:>11} {total // 2:>11} {0:>11} {total // 4:>11} {total // 2:>11}")
    print(f"Swap:   {0:>12} {0:>11} {0:>11}")
    return 0


def fallocate(state: dict[str, Any], args: list[str]) -> int:
    size = args[args.index("-l") + 1]
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    number = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
    with open(args[-1], "wb") as handle:
        handle.truncate(number)  # sparse: no disk is used
    return 0


def swapon(state: dict[str, Any], args: list[str]) -> int:
    if any(a.startswith("--show") for a in args):
        for name in state["swaps"]:
            print(name)
        return 0
    _add(state, "swaps", _host_path(args[-1]))
    return 0


def timedatectl(state: dict[str, Any], args: list[str]) -> int:
    if args[:1] == ["show"]:
        prop = next(a.split("=", 1)[1] for a in args if a.startswith("--property="))
        print("yes" if state["ntp"] and prop in ("NTP", "NTPSynchronized") else "no")
    elif args[:2] == ["set-ntp", "true"]:
        state["ntp"] = True
        _add(state, "enabled", "systemd-timesyncd.service")
        _add(state, "active", "systemd-timesyncd.service")
    return 0


def cloud_init(state: dict[str, Any], args: list[str]) -> int:
    print("status: done")
    return int(state.get("cloud_init_rc", 0))


def dpkg(state: dict[str, Any], args: list[str]) -> int:
    print("amd64")
    return 0


def findmnt(state: dict[str, Any], args: list[str]) -> int:
    mountpoint = _host_path(args[args.index("--mountpoint") + 1])
    if mountpoint in state.get("mounts", []):
        source = state.get("mount_sources", {}).get(mountpoint, "/dev/sda")
        if args[-2:] == ["-o", "SOURCE"]:  # `findmnt --mountpoint DIR -n -o SOURCE`
            print(source)
        else:
            print(f"TARGET SOURCE FSTYPE\n{mountpoint} {source} ext4")
        return 0
    return 1


def mount(state: dict[str, Any], args: list[str]) -> int:
    """``mount DIR``: mounts what the (test root filesystem's) fstab says for DIR, if attached."""
    mountpoint = _host_path(args[-1])
    fstab = Path(os.environ["BANKFLOW_ROOTFS"], "etc/fstab")
    for line in fstab.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1] == mountpoint and not fields[0].startswith("LABEL="):
            # an NFS share ("<host>:/<path>"): mountable when the state lists it as reachable
            if fields[0] not in state.get("nfs_shares", []):
                print(f"mount.nfs: access denied by server while mounting {fields[0]}", file=sys.stderr)
                return 32
            _add(state, "mounts", mountpoint)
            state.setdefault("mount_sources", {})[mountpoint] = fields[0]
            return 0
        if len(fields) >= 2 and fields[1] == mountpoint:
            label = fields[0].removeprefix("LABEL=")
            if label not in state.get("volume_labels", []):
                print(f"mount: {mountpoint}: can't find LABEL={label}.", file=sys.stderr)
                return 32
            _add(state, "mounts", mountpoint)
            return 0
    print(f"mount: {mountpoint}: can't find in /etc/fstab.", file=sys.stderr)
    return 1


def passive(state: dict[str, Any], args: list[str]) -> int:
    return 0


COMMANDS = {
    "apt-get": apt_get,
    "dpkg-query": dpkg_query,
    "dpkg": dpkg,
    "curl": curl,
    "gpg": gpg,
    "systemctl": systemctl,
    "ufw": ufw,
    "iptables": iptables,
    "sshd": sshd,
    "dockerd": dockerd,
    "docker": docker,
    "free": free,
    "fallocate": fallocate,
    "mkswap": passive,
    "swapon": swapon,
    "sysctl": passive,
    "timedatectl": timedatectl,
    "cloud-init": cloud_init,
    "findmnt": findmnt,
    "mount": mount,
    "iptables-restore": iptables_restore,
    "getent": getent,
    "groupadd": groupadd,
    "useradd": useradd,
    "usermod": usermod,
    "gpasswd": gpasswd,
    "visudo": visudo,
}


def main(argv: list[str]) -> int:
    name, args = argv[1], argv[2:]
    with open(os.environ["STANDIN_LOG"], "a") as log:
        log.write(json.dumps([name, *args]) + "\n")
    state = load_state()
    try:
        return COMMANDS[name](state, args)
    finally:
        save_state(state)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

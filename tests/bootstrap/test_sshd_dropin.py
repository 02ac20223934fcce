"""files/ssh/50-bankflow-hardening.conf against the real OpenSSH server (Debian's sshd here).

``sshd -t`` validates a configuration that Includes the drop-in verbatim; ``sshd -T`` prints the
effective values, which must be exactly the intended algorithm lists and authentication settings.
A deliberately broken copy must fail ``sshd -t``: the check host-setup.sh relies on can fail.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.sshd import DROPLET_HOST_KEY, HARDENING_DROPIN, ensure_privsep_dir, generate_ed25519_key
from tests.support.tools import require_tool

# ssh-audit's "Hardened Ubuntu Server 24.04 LTS (version 2)" lists, in its order
# (tests/bootstrap/test_ssh_audit_policy.py runs the policy itself).
KEX = (
    "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,"
    "diffie-hellman-group18-sha512,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512"
)
GSSAPI_KEX = "gss-curve25519-sha256-,gss-group16-sha512-"
CIPHERS = (
    "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-gcm@openssh.com,aes128-ctr"
)
MACS = "hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com"
PUBKEY_ALGORITHMS = "ssh-ed25519,sk-ssh-ed25519@openssh.com,rsa-sha2-512,rsa-sha2-256"


@pytest.fixture
def sshd_bin() -> str:
    path = require_tool("sshd")
    ensure_privsep_dir()
    return path


@pytest.fixture
def host_key(tmp_path: Path) -> Path:
    key = tmp_path / "ssh_host_ed25519_key"
    generate_ed25519_key(key, "dropin-test")
    return key


def _config_including(tmp_path: Path, dropin: Path) -> Path:
    # The shape of Ubuntu's sshd_config: the drop-ins first, then the distribution's own lines,
    # which the drop-in must win against (sshd keeps the first value of a keyword).
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Include {dropin}\n"
        "PasswordAuthentication yes\nX11Forwarding yes\nPermitRootLogin yes\nUsePAM yes\n"
        "Subsystem sftp /usr/lib/openssh/sftp-server\n"
    )
    return config


def _sshd(sshd_bin: str, flag: str, config: Path, host_key: Path) -> subprocess.CompletedProcess[str]:
    # -h adds a readable test host key: the drop-in's own HostKey (the droplet's path) may be
    # missing or unreadable on a test machine, which sshd tolerates while another key loads.
    return subprocess.run(
        [sshd_bin, flag, "-f", str(config), "-h", str(host_key)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def _effective(sshd_bin: str, tmp_path: Path, host_key: Path) -> dict[str, list[str]]:
    result = _sshd(sshd_bin, "-T", _config_including(tmp_path, HARDENING_DROPIN), host_key)
    assert result.returncode == 0, result.stderr
    values: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key, []).append(value)
    return values


def test_dropin_passes_sshd_t(sshd_bin: str, tmp_path: Path, host_key: Path) -> None:
    result = _sshd(sshd_bin, "-t", _config_including(tmp_path, HARDENING_DROPIN), host_key)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda t: t.replace("MACs hmac-sha2-512-etm", "MACs hmac-sha2-1024-etm"), "Bad SSH2 mac spec"),
        (lambda t: t + "\nKexAlgorithms not-a-kex\n", "KexAlgorithms"),
        (lambda t: t + "\nPasswordAuthentication maybe\n", 'unsupported option "maybe"'),
        (lambda t: t + "\nNoSuchDirective yes\n", "NoSuchDirective"),
    ],
    ids=["unknown-mac", "unknown-kex", "bad-value", "unknown-keyword"],
)
def test_broken_copy_fails_sshd_t(
    sshd_bin: str, tmp_path: Path, host_key: Path, mutation: Callable[[str], str], message: str
) -> None:
    broken = tmp_path / "broken.conf"
    broken.write_text(mutation(HARDENING_DROPIN.read_text()))
    result = _sshd(sshd_bin, "-t", _config_including(tmp_path, broken), host_key)
    assert result.returncode != 0
    assert message in result.stderr


def test_effective_algorithms_are_exactly_the_intended_lists(
    sshd_bin: str, tmp_path: Path, host_key: Path
) -> None:
    values = _effective(sshd_bin, tmp_path, host_key)
    # sshd -T lists the gss-* names separately (they only apply with GSSAPIKeyExchange yes).
    assert values["kexalgorithms"] == [KEX]
    assert values["gssapikexalgorithms"] == [GSSAPI_KEX]
    assert values["gssapikeyexchange"] == ["no"]
    assert values["ciphers"] == [CIPHERS]
    assert values["macs"] == [MACS]
    assert values["hostkeyalgorithms"] == ["ssh-ed25519"]
    assert values["pubkeyacceptedalgorithms"] == [PUBKEY_ALGORITHMS]
    assert values["requiredrsasize"] == ["3072"]


def test_effective_authentication_is_keys_only(sshd_bin: str, tmp_path: Path, host_key: Path) -> None:
    values = _effective(sshd_bin, tmp_path, host_key)
    expected = {
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
        "permitemptypasswords": "no",
        "pubkeyauthentication": "yes",
        "authenticationmethods": "publickey",
        # root only with a key whose authorized_keys line forces a command (the deploy key's dispatcher)
        "permitrootlogin": "forced-commands-only",
        "maxauthtries": "3",
        "logingracetime": "30",
        "x11forwarding": "no",
        "allowagentforwarding": "no",
        "allowtcpforwarding": "no",
        "allowstreamlocalforwarding": "no",
        "permituserenvironment": "no",
        "clientaliveinterval": "300",
        "clientalivecountmax": "2",
        "loglevel": "VERBOSE",
        # DHEat: unauthenticated connections limited overall and per source address
        "maxstartups": "10:30:60",
        "persourcemaxstartups": "5",
        "persourcenetblocksize": "32:128",
    }
    assert {key: values[key] for key in expected} == {key: [value] for key, value in expected.items()}


def test_only_the_pinned_ed25519_host_key(sshd_bin: str, tmp_path: Path, host_key: Path) -> None:
    host_keys = re.findall(r"^\s*HostKey\s+(\S+)", HARDENING_DROPIN.read_text(), re.IGNORECASE | re.MULTILINE)
    assert host_keys == [DROPLET_HOST_KEY]
    values = _effective(sshd_bin, tmp_path, host_key)
    assert sorted(values["hostkey"]) == sorted([str(host_key), DROPLET_HOST_KEY])


def test_every_algorithm_is_known_to_this_openssh() -> None:
    ssh = require_tool("ssh")

    def query(kind: str) -> set[str]:
        out = subprocess.run([ssh, "-Q", kind], capture_output=True, text=True, check=True, timeout=30).stdout
        return set(out.split())

    text = HARDENING_DROPIN.read_text()

    def listed(keyword: str) -> list[str]:
        match = re.search(rf"^{keyword}\s+(\S+)", text, re.MULTILINE)
        assert match, keyword
        return match.group(1).split(",")

    kex_names = set(listed("KexAlgorithms"))
    assert kex_names - {n for n in kex_names if n.startswith("gss-")} <= query("kex")
    assert set(listed("GSSAPIKexAlgorithms")) <= query("kex-gss")
    assert set(listed("Ciphers")) <= query("cipher")
    assert set(listed("MACs")) <= query("mac")
    assert set(listed("HostKeyAlgorithms")) <= query("key-sig")
    assert set(listed("PubkeyAcceptedAlgorithms")) <= query("key-sig")


PENALTIES_DROPIN = HARDENING_DROPIN.with_name("49-bankflow-penalties.conf")


def test_penalties_dropin_is_valid_exactly_where_sshd_knows_the_keyword(
    sshd_bin: str, tmp_path: Path, host_key: Path
) -> None:
    # OpenSSH >= 9.8 knows PerSourcePenalties; older ones (Ubuntu 24.04's 9.6, Debian 12's 9.2)
    # reject the whole configuration -- which is why host-setup.sh installs it only after asking
    # `sshd -T` (tests/bootstrap/test_host_access.py).
    knows = "persourcepenalties" in _effective(sshd_bin, tmp_path, host_key)
    config = tmp_path / "with-penalties"
    config.write_text(f"Include {PENALTIES_DROPIN}\nInclude {HARDENING_DROPIN}\n")
    result = _sshd(sshd_bin, "-t", config, host_key)
    if knows:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert "PerSourcePenalties" in result.stderr

"""The sshd drop-in against ssh-audit's built-in policy "Hardened Ubuntu Server 24.04 LTS (version 2)".

ssh-audit (a dev tool, locked in requirements-dev.txt) scans the real sshd of tests/support/sshd.py
on loopback: the droplet's drop-in verbatim (its HostKey path aside) and /etc/ssh/moduli pruned as
host-setup.sh prunes it.

The policy compares the offered algorithm lists exactly. Two entries depend on the OpenSSH version,
not on the configuration: sshd appends ``ext-info-s`` and ``kex-strict-s-v00@openssh.com``
(Terrapin's countermeasure) by itself from OpenSSH 9.6 -- the droplet's Ubuntu 24.04 ships 9.6p1.
Debian 12's 9.2p1 has strict kex backported but not ext-info-s. On an sshd older than 9.6 the test
proves that the missing names are only those and that the policy without them passes; on 9.6 or
newer the built-in policy itself must pass.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.sshd import HARDENING_DROPIN, SshServer
from tests.support.tools import require_tool

POLICY = "Hardened Ubuntu Server 24.04 LTS (version 2)"
# Names sshd (not the configuration) adds to its key exchange list from OpenSSH 9.6 (release notes
# 9.6: "strict KEX", CVE-2023-48795; the server's ext-info-s).
SSHD_ADDED_KEX = ("ext-info-s", "kex-strict-s-v00@openssh.com")
SSHD_ADDS_THEM_SINCE = (9, 6)


def _ssh_audit() -> str:
    beside_python = Path(sys.executable).with_name("ssh-audit")
    return str(beside_python) if beside_python.is_file() else require_tool("ssh-audit")


def _openssh_version() -> tuple[int, int]:
    sshd = require_tool("sshd")
    banner = subprocess.run([sshd, "-V"], capture_output=True, text=True, timeout=30).stderr
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", banner)
    assert match, banner
    return int(match.group(1)), int(match.group(2))


def _audit(server: SshServer, policy: str) -> dict[str, Any]:
    result = subprocess.run(
        [_ssh_audit(), "-j", "-P", policy, "-p", str(server.port), "-t", "10", server.host],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.stdout.strip(), result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _relaxed_policy(tmp_path: Path, missing: tuple[str, ...] = SSHD_ADDED_KEX) -> Path:
    """The built-in policy as a custom policy file, minus only (some of) the names sshd adds."""
    from ssh_audit.builtin_policies import BUILTIN_POLICIES  # type: ignore[import-untyped]

    assert set(missing) <= set(SSHD_ADDED_KEX)
    builtin: dict[str, Any] = BUILTIN_POLICIES[POLICY]
    kex = [name for name in builtin["kex"] if name not in missing]
    lines = [
        f'name = "{POLICY} without {", ".join(missing)} (sshd older than 9.6)"',
        "version = 1",
        f"host keys = {', '.join(builtin['host_keys'])}",
        f"optional host keys = {', '.join(builtin['optional_host_keys'])}",
        f"key exchanges = {', '.join(kex)}",
        f"ciphers = {', '.join(builtin['ciphers'])}",
        f"macs = {', '.join(builtin['macs'])}",
        f"host_key_sizes = {json.dumps(builtin['hostkey_sizes'])}",
        f"dh_modulus_sizes = {json.dumps(builtin['dh_modulus_sizes'])}",
        "allow_hostkey_subset_and_reordering = true",
    ]
    path = tmp_path / "policy.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def server(tmp_path: Path) -> Any:
    with SshServer(tmp_path / "sshd") as started:
        yield started


def test_dropin_passes_the_hardened_ubuntu_24_04_policy(server: SshServer, tmp_path: Path) -> None:
    report = _audit(server, POLICY)
    if _openssh_version() >= SSHD_ADDS_THEM_SINCE:
        assert report["passed"], report["errors"]
        return
    # Older sshd: the one complaint is the key exchange list, the names missing from it are only
    # ones sshd < 9.6 may not add, and it offers nothing the policy does not list.
    assert [error["mismatched_field"] for error in report["errors"]] == ["Key exchanges"], report["errors"]
    (error,) = report["errors"]
    missing = tuple(name for name in error["expected_required"] if name not in error["actual"])
    assert missing
    assert set(missing) <= set(SSHD_ADDED_KEX), missing
    assert [name for name in error["actual"] if name not in error["expected_required"]] == []
    relaxed = _audit(server, str(_relaxed_policy(tmp_path, missing)))
    assert relaxed["passed"], relaxed["errors"]


def test_a_dropin_off_the_policy_fails_it(tmp_path: Path) -> None:
    # The pre-issue-12 cipher list (no chacha20-poly1305): the policy must notice.
    text = HARDENING_DROPIN.read_text()
    weaker = tmp_path / "weaker.conf"
    weaker.write_text(text.replace("Ciphers chacha20-poly1305@openssh.com,", "Ciphers "))
    assert weaker.read_text() != text
    with SshServer(tmp_path / "sshd", dropin_source=weaker) as server:
        report = _audit(server, POLICY)
    assert not report["passed"]
    assert "Ciphers" in [error["mismatched_field"] for error in report["errors"]]

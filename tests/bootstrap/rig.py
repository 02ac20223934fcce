"""A sandbox to run files/bootstrap/host-setup.sh for real, against a temporary root filesystem.

- ``BANKFLOW_ROOTFS`` points every file the script writes into ``tmp/rootfs``.
- PATH holds only two directories: the recording stand-ins of ``standin_tool.py`` (apt, systemd,
  ufw, iptables, swap, clock, Docker -- system managers that cannot run in a test sandbox), then an
  allow-list of real, harmless tools (coreutils, grep, awk, flock, ...). A system command the
  script calls that is neither fails with "command not found" -- so the machine running the tests
  is never touched, and a new command in the script has to be added here on purpose.
- ``sshd -t``/``-T`` run the real OpenSSH server when it is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bankflow_infra.contract.layout import DATA_VOLUME_MOUNT, bootstrap_environment
from tests.support.sshd import ensure_privsep_dir, generate_ed25519_key
from tests.support.tools import REPO, find_tool

SCRIPT = REPO / "files" / "bootstrap" / "host-setup.sh"
DROPIN = REPO / "files" / "ssh" / "50-bankflow-hardening.conf"
SSH_FILES = DROPIN.parent
STANDIN_TOOL = Path(__file__).with_name("standin_tool.py")
STANDIN_COMMANDS = (
    "apt-get", "dpkg-query", "dpkg", "curl", "gpg", "systemctl", "ufw", "iptables", "sshd", "dockerd",
    "docker", "free", "fallocate", "mkswap", "swapon", "sysctl", "timedatectl", "cloud-init",
    "findmnt", "mount", "iptables-restore", "getent", "groupadd", "useradd", "usermod", "gpasswd", "visudo",
)  # fmt: skip
REAL_TOOLS = (
    "bash", "cat", "cmp", "stat", "mkdir", "mktemp", "chmod", "chown", "mv", "rm", "cp", "dirname", "id",
    "grep", "awk", "sed", "flock", "find", "sort", "sha256sum", "cut", "tr", "basename", "readlink",
)  # fmt: skip

DAEMON_JSON = {"log-driver": "local", "log-opts": {"max-size": "10m", "max-file": "5"}}
HOST_FILES = {
    "daemon.json": json.dumps(DAEMON_JSON, indent=2) + "\n",
    "logrotate-bankflow": "/opt/bankflow/logs/*.log {\n  daily\n  rotate 14\n  compress\n  missingok\n}\n",
    "bankflow-backup.service": "[Unit]\nDescription=BankFlow backup\n\n[Service]\nType=oneshot\n"
    "ExecStart=/opt/bankflow/bin/bankflow-agent backup\n",
    "bankflow-backup.timer": "[Unit]\nDescription=BankFlow nightly backup\n\n[Timer]\n"
    "OnCalendar=*-*-* 03:15:00 UTC\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n",
    "bankflow-backup-watch.service": "[Unit]\nDescription=BankFlow backup watch\n\n[Service]\n"
    "Type=oneshot\nExecStart=/opt/bankflow/bin/bankflow-agent backup-watch\n",
    "bankflow-backup-watch.timer": "[Unit]\nDescription=BankFlow backup watch\n\n[Timer]\n"
    "OnCalendar=*:*:00\n\n[Install]\nWantedBy=timers.target\n",
}
# Ubuntu 24.04's sshd_config, abridged; DigitalOcean images add a 50-cloud-init.conf drop-in.
UBUNTU_SSHD_CONFIG = """Include {rootfs}/etc/ssh/sshd_config.d/*.conf
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""
CLOUD_INIT_SSHD_DROPIN = "PasswordAuthentication yes\n"
INITIAL_STATE: dict[str, Any] = {
    # A fresh droplet: the base packages but unattended-upgrades (to see it installed), no Docker.
    "installed": ["ca-certificates", "curl", "gnupg", "ufw", "systemd-timesyncd"],
    "enabled": [],
    "active": [],
    "chains": [],
    "rules": [],
    "swaps": [],
    "ufw": {"active": False, "rules": []},
    "ntp": False,
    "mem_bytes": 2 * 1024**3 - 180 * 1024**2,  # an "s-1vcpu-2gb" as the kernel reports it
    "cloud_init_rc": 0,
    "mounts": [],  # host paths mounted (findmnt/mount stand-ins)
    "volume_labels": ["bankflow-data"],  # filesystem labels of the attached volumes
}

# Commands that change a host; a run with nothing to do must call none of them.
_MUTATING_SYSTEMCTL = {"enable", "disable", "start", "stop", "restart", "reload", "daemon-reload",
                       "try-reload-or-restart", "reload-or-restart", "mask", "unmask"}  # fmt: skip


def is_mutating(argv: list[str]) -> bool:
    name, args = argv[0], argv[1:]
    if name in ("apt-get", "curl", "fallocate", "mkswap", "mount"):
        return True
    if name == "systemctl":
        return any(a in _MUTATING_SYSTEMCTL for a in args)
    if name == "iptables":
        return any(a in ("-I", "-A", "-N", "-D", "-F", "-X", "-R") for a in args)
    if name == "ufw":
        return args[:1] != ["status"] and args[:2] != ["show", "added"]
    if name == "swapon":
        return not any(a.startswith("--show") for a in args)
    if name == "sysctl":
        return "-p" in args or "-w" in args
    if name == "timedatectl":
        return args[:1] == ["set-ntp"]
    return False


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    commands: list[list[str]]

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def changed(self) -> list[str]:
        return [line for line in self.lines if line.startswith("changed: ")]

    def mutating(self) -> list[list[str]]:
        return [argv for argv in self.commands if is_mutating(argv)]

    def called(self, *argv: str) -> int:
        return sum(1 for c in self.commands if c == list(argv))


class HostSetupRig:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.rootfs = tmp / "rootfs"
        self.payload = tmp / "payload"
        self.standins = tmp / "standin-bin"
        self.real_bin = tmp / "real-bin"
        self.state_path = tmp / "standin-state.json"
        self.log_path = tmp / "standin-log.jsonl"
        self.real_sshd = find_tool("sshd")
        self._build_rootfs()
        self._build_payload()
        self._build_path()
        self.set_state(INITIAL_STATE)

    # ---------------------------------------------------------------- setup
    def _build_rootfs(self) -> None:
        etc = self.rootfs / "etc"
        (etc / "ssh" / "sshd_config.d").mkdir(parents=True)
        (etc / "default").mkdir()
        (etc / "os-release").write_text(
            'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\n'
        )
        (etc / "default" / "ufw").write_text(
            'IPV6=yes\nDEFAULT_INPUT_POLICY="ACCEPT"\nDEFAULT_OUTPUT_POLICY="ACCEPT"\n'
        )
        (etc / "fstab").write_text(
            "LABEL=cloudimg-rootfs\t/\text4\tdiscard,commit=30,errors=remount-ro\t0 1\n"
        )
        (etc / "ssh" / "sshd_config").write_text(UBUNTU_SSHD_CONFIG.format(rootfs=self.rootfs))
        (etc / "ssh" / "sshd_config.d" / "50-cloud-init.conf").write_text(CLOUD_INIT_SSHD_DROPIN)

    def _build_payload(self) -> None:
        (self.payload / "ssh").mkdir(parents=True)
        shutil.copy(DROPIN, self.payload / "ssh" / DROPIN.name)
        for name in ("bankflow-ssh-dispatch", "49-bankflow-penalties.conf"):
            shutil.copy2(SSH_FILES / name, self.payload / "ssh" / name)
        (self.payload / "volume").mkdir()
        for script in sorted((SSH_FILES.parent / "volume").glob("*.sh")):
            shutil.copy(script, self.payload / "volume" / script.name)
        (self.payload / "ssh" / "authorized_keys").write_text(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJhbmtmbG93LXRlc3QtZGVwbG95LWtleS0wMDAwMDAwMA deploy\n"
        )
        (self.payload / "host").mkdir()
        for name, text in HOST_FILES.items():
            (self.payload / "host" / name).write_text(text)
        agent = self.payload / "agent" / "bankflow_infra" / "host"
        agent.mkdir(parents=True)
        (agent.parent / "__init__.py").write_text("")
        (agent / "__init__.py").write_text("")
        (agent / "agent.py").write_text("print('agent')\n")

    def _build_path(self) -> None:
        self.standins.mkdir()
        for name in STANDIN_COMMANDS:
            wrapper = self.standins / name
            wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S -I "{STANDIN_TOOL}" "{name}" "$@"\n')
            wrapper.chmod(0o755)
        self.real_bin.mkdir()
        for name in REAL_TOOLS:
            found = shutil.which(name)
            assert found, f"{name} is needed to run host-setup.sh"
            (self.real_bin / name).symlink_to(found)
        self.sshd_host_key = self.tmp / "ssh_host_ed25519_key"
        if self.real_sshd:
            ensure_privsep_dir()
            generate_ed25519_key(self.sshd_host_key, "host-setup-test")

    # ---------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.state_path.read_text()))

    def set_state(self, state: dict[str, Any]) -> None:
        self.state_path.write_text(json.dumps(state))

    def update_state(self, **changes: Any) -> None:
        self.set_state({**self.state(), **changes})

    # ---------------------------------------------------------------- running
    def run(self, *args: str, **env: str) -> Run:
        """Run the script with the environment the bootstrap command gives it (the host layout;
        with a data volume label, its mount point too), then ``env``."""
        self.log_path.write_text("")
        with_volume = "BANKFLOW_DATA_VOLUME_LABEL" in env
        volume = {"BANKFLOW_DATA_VOLUME_MOUNT": DATA_VOLUME_MOUNT} if with_volume else {}
        environment = {
            "PATH": f"{self.standins}:{self.real_bin}",
            "LC_ALL": "C.UTF-8",
            "TMPDIR": str(self.tmp),
            "BANKFLOW_ROOTFS": str(self.rootfs),
            **bootstrap_environment(),
            "BANKFLOW_SWAP_GB": "2",
            **volume,
            "STANDIN_STATE": str(self.state_path),
            "STANDIN_LOG": str(self.log_path),
            **env,
        }
        visudo = find_tool("visudo")
        if visudo and "STANDIN_REAL_VISUDO" not in env:  # the real sudo checks the sudoers file
            environment["STANDIN_REAL_VISUDO"] = visudo
        if self.real_sshd:
            environment["STANDIN_REAL_SSHD"] = self.real_sshd
            environment["STANDIN_SSHD_HOSTKEY"] = str(self.sshd_host_key)
        argv = [str(self.real_bin / "bash"), str(SCRIPT), *(args or (str(self.payload),))]
        result = subprocess.run(
            argv, env=environment, capture_output=True, text=True, timeout=120, check=False
        )
        commands = [json.loads(line) for line in self.log_path.read_text().splitlines() if line]
        return Run(result.returncode, result.stdout, result.stderr, commands)

    def path(self, host_path: str) -> Path:
        return self.rootfs / host_path.lstrip("/")

    def snapshot(self) -> dict[str, tuple[int, int, bytes]]:
        """Every file of the root filesystem: mode, mtime and content (the sparse swap file: size)."""
        files = {}
        for path in sorted(self.rootfs.rglob("*")):
            if path.is_file():
                info = path.stat()
                content = str(info.st_size).encode() if path.name == "swapfile" else path.read_bytes()
                files[str(path.relative_to(self.rootfs))] = (info.st_mode, info.st_mtime_ns, content)
        return files


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def owner_of(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid


def running_as_root() -> bool:
    return os.geteuid() == 0

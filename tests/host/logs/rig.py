"""The host's log tree under a temporary root, and the real logrotate run against it as root.

logrotate resolves `su UID GID` through the user database and refuses an id it cannot find, so
the run sees a passwd/group with every service uid (what host-setup.sh creates on the droplet)
through nss_wrapper (Debian package libnss-wrapper: LD_PRELOAD with NSS_WRAPPER_PASSWD/GROUP,
made for tests; no privilege needed, so it works in CI's unprivileged container too). The
machine's own /etc/passwd and /etc/group are never touched.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bankflow_infra import catalog
from bankflow_infra.contract import layout
from tests.support.tools import require_tool, unavailable

NSS_WRAPPER_LIBS = (
    "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so",
    "/usr/lib/aarch64-linux-gnu/libnss_wrapper.so",
)


def require_root() -> None:
    """logrotate's `su` and the chown to service uids need root: skip locally, fail in CI."""
    if os.geteuid() != 0:
        message = "needs root (logrotate su, chown to the service uids)"
        unavailable(message)


@dataclass(frozen=True)
class HostTree:
    root: Path

    def path(self, host_path: str) -> Path:
        return self.root / host_path.lstrip("/")

    def relocate(self, text: str) -> str:
        """A rendered file with every host path moved under the temporary root."""
        return text.replace(f"{layout.HOST_ROOT}/", f"{self.root}{layout.HOST_ROOT}/")

    @property
    def logs(self) -> Path:
        return self.path(layout.LOGS_DIR)

    @property
    def state(self) -> Path:
        return self.path(layout.STATE_DIR)

    def service_dir(self, service: str) -> Path:
        return self.path(catalog.service_log_dir(service))


def host_tree(root: Path) -> HostTree:
    """The layout host-setup.sh makes: logs/ root 0755, one directory per service owned by its
    uid, state/ root 0750 with the audit log 0640."""
    tree = HostTree(root)
    tree.logs.mkdir(parents=True)
    tree.logs.chmod(0o755)
    for service, uid in catalog.SERVICE_UIDS.items():
        directory = tree.service_dir(service)
        directory.mkdir(mode=0o755)
        os.chown(directory, uid, uid)
    tree.state.mkdir(parents=True, mode=0o750)
    audit = tree.state / "audit.log"
    audit.write_text('{"action": "deploy", "result": "ok"}\n' * 50)
    audit.chmod(0o640)
    return tree


def _with_service_accounts(source: str, target: Path, kind: str) -> None:
    text = Path(source).read_text()
    known = {line.split(":")[2] for line in text.splitlines() if line.count(":") >= 3}
    def entry(name: str, uid: int) -> str:
        if kind == "passwd":
            return f"bankflow-{name}:x:{uid}:{uid}::/nonexistent:/usr/sbin/nologin"
        return f"bankflow-{name}:x:{uid}:"

    extra = [
        entry(name, uid)
        for name, uid in catalog.SERVICE_UIDS.items()
        if str(uid) not in known
    ]
    target.write_text(text + "".join(f"{line}\n" for line in extra))


def nss_wrapper() -> str:
    """The nss_wrapper library; like a missing tool: skipped locally, a failure in CI."""
    for path in NSS_WRAPPER_LIBS:
        if Path(path).is_file():
            return path
    message = "libnss-wrapper is not installed: run scripts/install-test-tools"
    unavailable(message)


def run_logrotate(
    config: Path, state: Path, *, force: bool = True, debug: bool = False
) -> subprocess.CompletedProcess[str]:
    """The real logrotate, as root, seeing the service accounts host-setup.sh creates; ``debug``:
    parse and plan only (logrotate --debug changes nothing)."""
    logrotate, library = require_tool("logrotate"), nss_wrapper()
    accounts = config.parent / "accounts"
    accounts.mkdir(exist_ok=True)
    _with_service_accounts("/etc/passwd", accounts / "passwd", "passwd")
    _with_service_accounts("/etc/group", accounts / "group", "group")
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "LD_PRELOAD": library,
        "NSS_WRAPPER_PASSWD": str(accounts / "passwd"),
        "NSS_WRAPPER_GROUP": str(accounts / "group"),
    }
    mode = [*(["-f"] if force else []), "--debug" if debug else "-v"]
    argv = [logrotate, *mode, "--state", str(state), str(config)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)

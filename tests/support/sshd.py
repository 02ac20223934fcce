"""A real OpenSSH server on loopback for tests: the SSH paths of deploy and ops, run for real.

``SshServer`` starts the system ``/usr/sbin/sshd`` in the foreground (``-D -e``) on 127.0.0.1 and a
free high port, with everything it needs generated in a temporary directory:

- a fresh ed25519 host key, which clients pin (``known_hosts_line()``; no trust on first use);
- a fresh ed25519 client key, the only entry of the ``AuthorizedKeysFile``;
- ``files/ssh/50-bankflow-hardening.conf`` -- the drop-in the droplet runs -- pulled in with
  ``Include``, verbatim except for its ``HostKey`` path, so every connection exercises the hardened
  algorithms and authentication settings (``dropin_source`` serves another copy, for tests that
  show a weaker one failing);
- ``/etc/ssh/moduli`` pruned to >= 3072-bit groups, as host-setup.sh prunes the droplet's;
- ``authorized_keys_options`` prefixes the client key's line (e.g. the deploy key's
  ``restrict,command="..."``). The drop-in admits root only with a forced command; a server
  without one, run as root, admits root's plain key (``_root_login_override``).

It runs as the current user. As root, sshd needs its privilege-separation directory
(``/run/sshd``), which is created when missing; as another user sshd runs without privilege
separation, uses PAM for the account check and can only log that user in (whose login shell must
run commands: not a nologin account) -- both work.

Use it as a context manager, or through the ``sshd_server`` fixture::

    from tests.support.sshd import sshd_server_fixture  # noqa: F401  (registers the fixture)

    def test_x(sshd_server: SshServer) -> None:
        subprocess.run(sshd_server.ssh_argv("echo ok"), check=True)
"""

from __future__ import annotations

import getpass
import os
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
HARDENING_DROPIN = REPO / "files" / "ssh" / "50-bankflow-hardening.conf"
DROPLET_HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
PRIVSEP_DIR = Path("/run/sshd")
SYSTEM_MODULI = Path("/etc/ssh/moduli")
# host-setup.sh keeps only the Diffie-Hellman groups of at least this many bits in the droplet's
# /etc/ssh/moduli (ssh-audit's hardening guide: `awk '$5 >= 3071'`); the test server does the same.
MIN_MODULI_BITS_FIELD = 3071
READY_TIMEOUT_SECONDS = 10.0
_HOSTKEY_LINE = re.compile(r"^\s*HostKey\s+(\S+)\s*$", re.IGNORECASE | re.MULTILINE)


class SshHarnessError(RuntimeError):
    """The test server could not be set up or did not become ready."""


def _tool(name: str) -> str:
    # Imported lazily so this module stays importable on its own (e.g. from a conftest).
    from tests.conftest import require_tool

    return require_tool(name)


def ensure_privsep_dir() -> None:
    """sshd running as root refuses to start without /run/sshd (its privsep chroot)."""
    if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)


def generate_ed25519_key(path: Path, comment: str, ssh_keygen: str | None = None) -> str:
    """Create an ed25519 key pair (no passphrase) at ``path``; return the public key line."""
    keygen = ssh_keygen or _tool("ssh-keygen")
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


def prune_moduli(source: Path, target: Path) -> int:
    """Copy ``source`` to ``target`` without the groups smaller than 3072 bits; return how many are kept.

    The same filter as host-setup.sh (field 5 is the size minus one). A comment line stays.
    """
    kept: list[str] = []
    for line in source.read_text().splitlines():
        fields = line.split()
        if line.startswith("#") or (len(fields) >= 7 and int(fields[4]) >= MIN_MODULI_BITS_FIELD):
            kept.append(line)
    target.write_text("\n".join(kept) + "\n")
    return sum(1 for line in kept if not line.startswith("#"))


def hardening_dropin_for(host_key: Path, source: Path = HARDENING_DROPIN) -> str:
    """The drop-in's text with its one ``HostKey`` line pointed at ``host_key``.

    Everything else is kept verbatim. The droplet's path is asserted, so a drop-in that starts
    loading other host keys fails here instead of being silently rewritten.
    """
    text = source.read_text()
    paths = _HOSTKEY_LINE.findall(text)
    if paths != [DROPLET_HOST_KEY]:
        raise SshHarnessError(f"{source}: expected exactly one 'HostKey {DROPLET_HOST_KEY}', found {paths}")
    return _HOSTKEY_LINE.sub(f"HostKey {host_key}", text)


class SshServer:
    """The real sshd on 127.0.0.1:<free port> with the hardening drop-in; see the module docstring."""

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path | None = None,
        extra_config: Sequence[str] = (),
        dropin_source: Path = HARDENING_DROPIN,
        authorized_keys_options: str = "",
    ) -> None:
        self.sshd = _tool("sshd")
        self.ssh = _tool("ssh")
        self.ssh_keygen = _tool("ssh-keygen")
        self._own_tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._own_tmp = tempfile.TemporaryDirectory(prefix="bankflow-sshd-")
            workdir = Path(self._own_tmp.name)
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.extra_config = tuple(extra_config)
        self.dropin_source = dropin_source
        # Prefixed to the client key's authorized_keys line, e.g. 'restrict,command="..."'.
        self.authorized_keys_options = authorized_keys_options
        self.user = getpass.getuser()
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "sshd.log"
        self.host_key_path = self.dir / "ssh_host_ed25519_key"
        self.client_private_key_path = self.dir / "client_ed25519"
        self.authorized_keys_path = self.dir / "authorized_keys"
        self.known_hosts_path = self.dir / "known_hosts"
        self.config_path = self.dir / "sshd_config"
        self.dropin_path = self.dir / "50-bankflow-hardening.conf"
        self.moduli_path = self.dir / "moduli"
        self.host_public_key = ""
        self.client_public_key = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SshServer:
        ensure_privsep_dir()
        self.host_public_key = generate_ed25519_key(self.host_key_path, "bankflow-test-host", self.ssh_keygen)
        self.client_public_key = generate_ed25519_key(
            self.client_private_key_path, "bankflow-test-client", self.ssh_keygen
        )
        prefix = f"{self.authorized_keys_options} " if self.authorized_keys_options else ""
        self.authorized_keys_path.write_text(prefix + self.client_public_key + "\n")
        self.dropin_path.write_text(hardening_dropin_for(self.host_key_path, self.dropin_source))
        if SYSTEM_MODULI.is_file():
            prune_moduli(SYSTEM_MODULI, self.moduli_path)
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind: retry
            self.port = free_port()
            self.known_hosts_path.write_text(self.known_hosts_line() + "\n")
            self._write_config()
            self._validate_config()
            try:
                self._spawn_and_wait()
                return self
            except SshHarnessError as error:
                last_error = str(error)
                self.stop()
                if "Address already in use" not in last_error:
                    break
        raise SshHarnessError(last_error)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def close(self) -> None:
        self.stop()
        if self._own_tmp is not None:
            self._own_tmp.cleanup()
            self._own_tmp = None

    def __enter__(self) -> SshServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ client side
    def known_hosts_line(self, public_key: str | None = None) -> str:
        """known_hosts entry pinning ``public_key`` (default: this server's host key) for host:port."""
        key_type, key_data = (public_key or self.host_public_key).split()[:2]
        return f"[{self.host}]:{self.port} {key_type} {key_data}"

    def ssh_argv(
        self,
        command: str,
        *,
        known_hosts: Path | None = None,
        identity: Path | None = None,
        extra_options: Sequence[str] = (),
    ) -> list[str]:
        """argv of the system ssh client running ``command`` here, host key pinned, never prompting.

        ``-F /dev/null`` and ``IdentitiesOnly`` keep the caller's ~/.ssh/config and agent out of it.
        """
        options = {
            "StrictHostKeyChecking": "yes",
            "UserKnownHostsFile": str(known_hosts or self.known_hosts_path),
            "GlobalKnownHostsFile": "/dev/null",
            "BatchMode": "yes",
            "IdentitiesOnly": "yes",
            "IdentityAgent": "none",
            "ConnectTimeout": "10",
            "LogLevel": "ERROR",
        }
        argv = [self.ssh, "-F", "/dev/null"]
        # ssh keeps the first value given for an option: the caller's extra options come first so
        # they can override these defaults.
        for option in extra_options:
            argv += ["-o", option]
        for key, value in options.items():
            argv += ["-o", f"{key}={value}"]
        argv += ["-i", str(identity or self.client_private_key_path), "-p", str(self.port)]
        return [*argv, f"{self.user}@{self.host}", command]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # ------------------------------------------------------------------ internals
    def _write_config(self) -> None:
        lines = [
            "# bankflow test sshd: loopback only, generated keys, the droplet's hardening drop-in",
            # sshd keeps the first value of a keyword: the caller's lines win over everything below.
            *self.extra_config,
            *self._root_login_override(),
            f"Include {self.dropin_path}",
            f"ListenAddress {self.host}",
            f"Port {self.port}",
            f"PidFile {self.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys_path}",
            "StrictModes no",  # the tmp directory's permissions are not sshd's business here
            # As root, PAM's session modules (pam_loginuid) fail in containers: no PAM. Not as root,
            # sshd cannot read /etc/shadow and takes the account for locked unless PAM (with its
            # setgid helper) does the account check.
            "UsePAM no" if os.geteuid() == 0 else "UsePAM yes",
            f"AllowUsers {self.user}",
            "Subsystem sftp internal-sftp",  # pulumi-command's CopyToRemote talks SFTP
        ]
        if self.moduli_path.is_file():  # the droplet's pruned /etc/ssh/moduli (host-setup.sh)
            lines.append(f"ModuliFile {self.moduli_path}")
        self.config_path.write_text("\n".join(lines) + "\n")

    def _root_login_override(self) -> list[str]:
        # The drop-in admits root only with a forced command (the deploy key's dispatcher). Running
        # as root, a test server whose key has no command= would refuse every login: such servers
        # (the general harness: arbitrary test commands) admit root's key as a plain key instead.
        # Servers given a command= keep the droplet's rule (tests/bootstrap/test_ssh_dispatch.py).
        if self.user != "root" or "command=" in self.authorized_keys_options:
            return []
        return [
            "# test harness: root with a plain key (see _root_login_override)",
            "PermitRootLogin prohibit-password",
        ]

    def _validate_config(self) -> None:
        result = subprocess.run(
            [self.sshd, "-t", "-f", str(self.config_path)], capture_output=True, text=True, timeout=30
        )
        if result.returncode != 0:
            raise SshHarnessError(f"sshd -t rejected the test config: {result.stderr.strip()}")

    def _spawn_and_wait(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.sshd, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SshHarnessError(
                    f"sshd exited with {self.process.returncode}: {self.log_text().strip()}"
                )
            if self._banner_ready():
                return
            time.sleep(0.05)
        raise SshHarnessError(
            f"sshd not ready within {READY_TIMEOUT_SECONDS:.0f}s: {self.log_text().strip()}"
        )

    def _banner_ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                return sock.recv(64).startswith(b"SSH-2.0-")
        except OSError:
            return False


@pytest.fixture(name="sshd_server")
def sshd_server_fixture(tmp_path: Path) -> Iterator[SshServer]:
    """Fixture ``sshd_server``: a started :class:`SshServer` in ``tmp_path``, stopped after the test.

    Make it available with ``from tests.support.sshd import sshd_server_fixture  # noqa: F401`` (in a
    conftest or a test module); the fixture's name stays ``sshd_server``.
    """
    server = SshServer(tmp_path / "sshd")
    try:
        yield server.start()
    finally:
        server.close()

"""The SSH properties deploy and the day-2 CLI rely on, over a real OpenSSH connection.

tests/support/sshd.py starts the system sshd on loopback with the droplet's hardening drop-in; the
client is the system ssh with the server's host key pinned (StrictHostKeyChecking=yes).
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from tests.support.sshd import SshServer, generate_ed25519_key, hardening_dropin_for, sshd_server_fixture  # noqa: F401


def _run(argv: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=30, check=False)


def test_command_runs_with_the_pinned_host_key(sshd_server: SshServer) -> None:
    result = _run(sshd_server.ssh_argv("echo ok"))
    assert result.returncode == 0, result.stderr.decode() + sshd_server.log_text()
    assert result.stdout == b"ok\n"


def test_stdin_reaches_the_command_into_a_0600_file(sshd_server: SshServer, tmp_path: Path) -> None:
    # How secrets travel: on stdin, never in the command text.
    target = tmp_path / "secret.env"
    content = b"JWT_SECRET=not-in-argv\nDATABASE_URL=postgres://x\n"
    result = _run(sshd_server.ssh_argv(f"install -m 600 /dev/stdin {target}"), stdin=content)
    assert result.returncode == 0, result.stderr.decode()
    assert target.read_bytes() == content
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_different_host_key_is_refused(sshd_server: SshServer, tmp_path: Path) -> None:
    # Same host:port and key type, another key: what a man in the middle (or a rebuilt droplet
    # with a key nobody pinned) looks like.
    other_public = generate_ed25519_key(tmp_path / "impostor", "impostor")
    known_hosts = tmp_path / "known_hosts_wrong"
    known_hosts.write_text(sshd_server.known_hosts_line(other_public) + "\n")
    marker = tmp_path / "must-not-exist"

    result = _run(sshd_server.ssh_argv(f"touch {marker}", known_hosts=known_hosts))

    assert result.returncode == 255
    assert b"Host key verification failed." in result.stderr
    assert not marker.exists(), "the command must not run on an unverified host"


def test_an_unknown_host_is_refused_not_trusted_on_first_use(sshd_server: SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    result = _run(sshd_server.ssh_argv("true", known_hosts=empty))
    assert result.returncode == 255
    assert b"Host key verification failed." in result.stderr
    assert empty.read_text() == "", "StrictHostKeyChecking=yes never records a new key"


def test_only_public_key_authentication_is_offered(sshd_server: SshServer) -> None:
    # Without a key the server refuses and names the methods it would accept: publickey alone
    # (with passwords enabled it would say "publickey,password").
    result = _run(sshd_server.ssh_argv("true", extra_options=["PubkeyAuthentication=no"]))
    assert result.returncode == 255
    assert b"Permission denied (publickey)." in result.stderr


def test_a_key_that_is_not_authorized_is_refused(sshd_server: SshServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    generate_ed25519_key(stranger, "stranger")
    result = _run(sshd_server.ssh_argv("true", identity=stranger))
    assert result.returncode == 255
    assert b"Permission denied (publickey)." in result.stderr


def test_hardened_algorithms_are_negotiated(sshd_server: SshServer) -> None:
    # A client that only offers what the drop-in removed cannot connect.
    result = _run(
        sshd_server.ssh_argv("true", extra_options=["Ciphers=aes128-cbc", "LogLevel=INFO"])
    )
    assert result.returncode == 255
    assert b"no matching cipher found" in result.stderr
    result = _run(
        sshd_server.ssh_argv("true", extra_options=["KexAlgorithms=ecdh-sha2-nistp256", "LogLevel=INFO"])
    )
    assert result.returncode == 255
    assert b"no matching key exchange method found" in result.stderr


def test_harness_uses_the_real_dropin_with_only_its_host_key_replaced(sshd_server: SshServer) -> None:
    served = sshd_server.dropin_path.read_text()
    assert served == hardening_dropin_for(sshd_server.host_key_path)
    assert f"HostKey {sshd_server.host_key_path}" in served
    directives = [line for line in served.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert not any("/etc/ssh/" in line for line in directives)


def test_server_as_context_manager_stops_its_process(tmp_path: Path) -> None:
    with SshServer(tmp_path / "cm") as server:
        assert server.process is not None
        process = server.process
        assert _run(server.ssh_argv("echo ok")).stdout == b"ok\n"
    assert process.poll() is not None
    assert server.process is None


def test_known_hosts_line_pins_host_and_port(sshd_server: SshServer) -> None:
    entry = sshd_server.known_hosts_line()
    assert entry.startswith(f"[127.0.0.1]:{sshd_server.port} ssh-ed25519 AAAA")
    assert entry.split()[1:] == sshd_server.host_public_key.split()[:2]


def test_one_source_gets_at_most_five_unauthenticated_connections(sshd_server: SshServer) -> None:
    # DHEat: a single address may hold only PerSourceMaxStartups (5) connections before
    # authentication; beyond that sshd closes new ones without a banner. Eight sockets, opened one
    # after the other and all kept open, bounded waits. (The harness's readiness probe may still
    # count for a moment: at most five, and at least one.)
    import contextlib
    import socket
    import time

    time.sleep(0.5)  # let the readiness probe's connection end
    sockets = []
    greeted = 0
    try:
        for _ in range(8):
            sock = socket.create_connection((sshd_server.host, sshd_server.port), timeout=5)
            sockets.append(sock)
            with contextlib.suppress(OSError):
                greeted += sock.recv(64).startswith(b"SSH-2.0-")
        assert 1 <= greeted <= 5, sshd_server.log_text()
    finally:
        for sock in sockets:
            sock.close()

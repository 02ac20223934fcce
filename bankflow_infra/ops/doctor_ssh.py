"""Can this runner reach the droplet's SSH port? Answered within a timeout, never a hang.

``pulumi up``'s remote commands dial port 22 with a high retry limit, so a runner outside
``server.sshAllowedCidrs`` (the cloud firewall drops its packets) waits 10-30 minutes before
``up`` fails. Here the same question takes at most ``timeout`` seconds: connect, then read the
server's identification line (RFC 4253 section 4.2: the server sends ``SSH-2.0-...`` first), so a
port that accepts but never speaks SSH fails too.
"""

from __future__ import annotations

import socket
import time
from typing import Final

from bankflow_infra.ops.doctor import Check

CHECK_NAME: Final = "ssh.reachable"
BANNER_PREFIX: Final = b"SSH-"
DEFAULT_TIMEOUT_SECONDS: Final = 5.0
_FIREWALL_FIX: Final = (
    "this runner is probably outside bankflow:server.sshAllowedCidrs: run the deploy from an allowed "
    'address (README "SSH from CI": a self-hosted runner with a fixed egress IP) or add this runner\'s range'
)


def ssh_check(host: str, port: int, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Check:
    """Connect to ``host:port`` and wait for the SSH banner; the whole check ends by ``timeout``."""
    where = f"{host}:{port}"
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.settimeout(max(deadline - time.monotonic(), 0.001))
            banner = connection.recv(256)
    except ConnectionRefusedError:
        return Check(
            CHECK_NAME,
            "fail",
            f"{where}: connection refused (sshd not running, or the wrong address)",
            "check that the droplet is up (`pulumi refresh`, the DigitalOcean console) and sshd listens",
        )
    except TimeoutError:
        return Check(CHECK_NAME, "fail", f"{where}: no SSH answer within {timeout:g} s", _FIREWALL_FIX)
    except OSError as error:
        return Check(CHECK_NAME, "fail", f"{where}: {error.strerror or error}", _FIREWALL_FIX)
    if not banner.startswith(BANNER_PREFIX):
        return Check(
            CHECK_NAME,
            "fail",
            f"{where}: connected, but the answer is not an SSH server's",
            "something else listens on the port: check the droplet's ssh.port output and the host",
        )
    version = banner.split(b"\r\n")[0].decode("ascii", "replace")
    return Check(CHECK_NAME, "ok", f"{where} answers ({version}) from this runner")

"""Loopback ports for the real servers the tests start (nginx, sshd, HTTPS stand-ins, S3)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port nothing listens on now (bound, then released): for a server, or for
    "connection refused"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

"""Loopback ports for the real servers the tests start (nginx, sshd, HTTPS stand-ins, S3).

A port is handed out by number and bound later by a server in another process, so two things
could take it in between: the other pytest worker, or the kernel giving it to an outgoing
connection as its local port (the load generators open thousands). Both made nginx exit on
"address in use" in CI. So each worker hands out ports from its own slice of the range *below*
the kernel's ephemeral range, never the same one twice while one is free, and checks each one
binds before handing it out.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator
from pathlib import Path

LOWEST_PORT = 10000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_low() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def worker_slice(worker: str | None, workers: int, ephemeral_low: int) -> range:
    """This pytest worker's ports: the range [LOWEST_PORT, ephemeral_low) cut into `workers`
    equal slices; `worker` is xdist's "gw<N>" (None when xdist is off: the whole range)."""
    index = int(worker[2:]) if worker and worker.startswith("gw") else 0
    count = max(workers, index + 1, 1)
    size = (ephemeral_low - LOWEST_PORT) // count
    start = LOWEST_PORT + index * size
    return range(start, start + size)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _candidates() -> Iterator[int]:
    ports = worker_slice(
        os.environ.get("PYTEST_XDIST_WORKER"),
        int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")),
        _ephemeral_low(),
    )
    return itertools.cycle(ports)


_NEXT = _candidates()


def free_port() -> int:
    """A loopback port nothing listens on now, that no other worker or outgoing connection
    will be given: for a server, or for "connection refused"."""
    for _ in range(10000):
        port = next(_NEXT)
        if _bindable(port):
            return port
    raise RuntimeError("no free loopback port in this worker's slice below the ephemeral range")

"""The test port allocator keeps workers apart and out of the kernel's ephemeral range."""

from __future__ import annotations

import socket

from tests.support.ports import LOWEST_PORT, _bindable, free_port, worker_slice


def test_two_workers_get_disjoint_slices_below_the_ephemeral_range() -> None:
    first, second = worker_slice("gw0", 2, 32768), worker_slice("gw1", 2, 32768)
    assert first.start == LOWEST_PORT
    assert second.stop <= 32768
    assert not set(first) & set(second)


def test_without_xdist_the_whole_range_is_one_slice() -> None:
    assert worker_slice(None, 1, 32768) == range(LOWEST_PORT, 32768)


def test_a_port_in_use_is_never_handed_out() -> None:
    taken = []
    try:
        for _ in range(5):
            port = free_port()
            server = socket.socket()
            server.bind(("127.0.0.1", port))  # raises if free_port handed out a busy one
            server.listen()
            taken.append(server)
        assert len({s.getsockname()[1] for s in taken}) == 5
    finally:
        for server in taken:
            server.close()


def test_a_listening_port_is_not_bindable() -> None:
    port = free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert not _bindable(port)
    assert _bindable(port)

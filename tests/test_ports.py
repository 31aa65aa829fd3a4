"""The test servers' ports: never in the range the kernel gives outgoing connections."""

from __future__ import annotations

import socket

from tests import ports


def test_ports_are_below_the_ephemeral_range_bindable_and_never_repeated() -> None:
    top = ports._ephemeral_start()
    given = [ports.free_port() for _ in range(50)]
    assert len(set(given)) == len(given)
    assert all(ports._LOWEST <= port < top for port in given)
    for port in given[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_skipped() -> None:
    taken = ports.free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", taken + 1))
        listener.listen()
        # the next candidate is taken + 1 unless the scan wrapped: either way it is not returned
        following = [ports.free_port() for _ in range(3)]
    assert taken + 1 not in following


def test_outgoing_connections_do_not_draw_from_the_ports_given() -> None:
    """The failure this module prevents: a client's local port equal to a server's future port."""
    given = {ports.free_port() for _ in range(20)}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        clients = [socket.create_connection(listener.getsockname()) for _ in range(64)]
        try:
            local = {client.getsockname()[1] for client in clients}
        finally:
            for client in clients:
                client.close()
    assert not local & given

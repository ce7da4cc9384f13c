"""Loopback ports for the sandbox's servers and the tests (development only)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS just reported free on `host` (there is a small race; fine on loopback)."""
    return free_port_on([host])


_FREE_PORT_ATTEMPTS = 50


def free_port_on(hosts: list[str]) -> int:
    """A TCP port free right now on every host, so nodes on their own IPs can share one port.

    The candidate comes from binding port 0 on the first host (held while the others are
    checked); the rest must bind it too. A small race remains after return, as with any
    free-port helper; on loopback that is fine.
    """
    if not hosts:
        raise ValueError("free_port_on needs at least one host")
    for _ in range(_FREE_PORT_ATTEMPTS):
        with _bound(hosts[0], 0) as first:
            port = int(first.getsockname()[1])
            if all(_can_bind(host, port) for host in hosts[1:]):
                return port
    raise OSError(
        f"no TCP port free on all of {', '.join(hosts)} after {_FREE_PORT_ATTEMPTS} attempts"
    )


def _bound(host: str, port: int) -> socket.socket:
    """A TCP socket bound (not listening) to host:port; no SO_REUSEADDR, so the check is strict."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _can_bind(host: str, port: int) -> bool:
    try:
        _bound(host, port).close()
    except OSError:
        return False
    return True

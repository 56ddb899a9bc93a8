from __future__ import annotations

import errno
import socket
from contextlib import ExitStack


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now.

    The port is only reserved while this function runs: another process may take it before the
    caller binds it, so callers start their server soon after.

    Args:
        host: The address the port will be bound on.

    Returns:
        A port number chosen by the kernel.

    """
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct TCP ports that are free on ``host`` right now.

    All sockets are held open together, so the ports differ from each other (calling
    :func:`free_port` repeatedly may return the same port twice).

    Args:
        count: How many ports.
        host: The address the ports will be bound on.

    Returns:
        ``count`` distinct port numbers.

    """
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_is_free(host: str, port: int) -> bool:
    """Return whether a server could bind ``host:port`` right now.

    Binds the way servers do (``SO_REUSEADDR``), so connections lingering in TIME_WAIT from a
    previous run on the port do not count as a user.

    Raises:
        OSError: ``host`` cannot be bound at all (not a local address, for instance).

    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
    return True

from __future__ import annotations

import socket

_MAX_ANSWER = 65536


def exchange(host: str, port: int, request: bytes, timeout: float) -> bytes:
    """Send ``request`` over a fresh TCP connection and return the first chunk of the answer.

    The answers probed for (PONG, a ZooKeeper four-letter word, a PostgreSQL authentication
    message) are small and come in one chunk on loopback. Returns b"" when nothing could be
    exchanged within ``timeout`` seconds per socket operation.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.sendall(request)
            return connection.recv(_MAX_ANSWER)
    except OSError:
        return b""

from __future__ import annotations

import ipaddress
import re

from tessera.core import ValidationError

_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


def host_port(target: str, *, field: str = "target") -> tuple[str, int]:
    """Split `host:port` (`[v6]:port` for IPv6).

    Raises:
        ValidationError: Naming `field` when the target is not `host:port`.

    """
    host, sep, port = target.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not _is_host(host):
        raise ValidationError.for_field(field, f"must be host:port, got {target!r}")
    return host, int(port)


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOST.match(host))
    return True

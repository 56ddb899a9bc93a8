"""How Tessera's launchers configure gRPC's transport in the processes they start.

gRPC C-core reads `GRPC_EXPERIMENTS` once, when the `grpc` module is imported, so the variable
must be in a process's environment before it starts: launchers (`tessera dev up`, the container
image, the benchmarks) put it there; a process cannot set it for itself.

What it changes, measured (grpcio 1.85, CPython 3.11, asyncio, 2 vCPUs; docs/benchmarks.md
"gRPC transport, session 5"): with the EventEngine client and listener endpoints (gRPC's
default), each message crosses one more thread on its way to the event loop. Without them, a
message round trip on an open stream takes 140-230 µs instead of 210-380 µs back to back, and
380-570 µs instead of 560-750 µs after 10 ms of idleness; the lock service spends 6-23 % less CPU
on an uncontended acquire + release (etcd 1,764 -> 1,427 µs, Redis 1,152 -> 883 µs). Both
transports are gRPC's own, supported code paths; only which one is used changes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType

#: The variables Tessera's launchers give the processes they start (`grpc_transport_environment`).
GRPC_TRANSPORT_ENVIRONMENT: Mapping[str, str] = MappingProxyType(
    {"GRPC_EXPERIMENTS": "-event_engine_client,-event_engine_listener"}
)


def grpc_transport_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the variables of `GRPC_TRANSPORT_ENVIRONMENT` that `environ` does not set.

    An operator's own value always wins: a variable already in `environ` is left out.

    Args:
        environ: The environment the child starts from; the current process's when None.

    Returns:
        The variables to add to the child's environment.

    """
    current = os.environ if environ is None else environ
    return {
        name: value for name, value in GRPC_TRANSPORT_ENVIRONMENT.items() if name not in current
    }

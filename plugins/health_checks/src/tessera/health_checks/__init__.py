"""Tessera's built-in health checks, registered in the `tessera.health_checks` group.

| name   | class       | target                    | passing when                         |
|--------|-------------|---------------------------|--------------------------------------|
| `tcp`  | `TcpCheck`  | `host:port`               | a connection opens                   |
| `grpc` | `GrpcCheck` | `host:port[/service]`     | grpc.health.v1 answers SERVING       |
| `http` | `HttpCheck` | `http(s)://host:port/...` | GET answers 2xx (429 is WARNING)     |

Each follows the `tessera.core.plugins.HealthCheck` contract and passes the conformance kit in
`tessera.testing.conformance.health_checks`.
"""

from tessera.health_checks._grpc import GrpcCheck
from tessera.health_checks._http import HttpCheck
from tessera.health_checks._tcp import TcpCheck

__all__ = ["GrpcCheck", "HttpCheck", "TcpCheck"]

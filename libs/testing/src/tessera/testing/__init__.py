"""Test tools for Tessera and its plugins: a pytest plugin with real servers, and fault tools.

The pytest plugin (:mod:`tessera.testing.plugin`, loaded automatically) provides real etcd,
Redis, PostgreSQL and ZooKeeper servers on free ports as fixtures. This package adds:

- :class:`ServerFactory`, the type of the per-test server fixtures (``redis_factory``, ...);
- :func:`serve_in_process` and :class:`RunningService`, a Tessera gRPC server in the test's
  event loop with a connected channel (also the ``running_service`` fixture, a
  :class:`ServiceStarter`);
- :class:`JobsProcess`, a real Celery worker or beat process (also the ``jobs_process``
  fixture);
- :class:`TcpProxy`, a proxy that delays, blackholes or drops traffic, for partition tests;
- :func:`cancel_while_frozen`, which cancels a call between its request and the paused
  server's answer;
- :class:`History` and :class:`Operation`, a record of concurrent operations, and the checkers
  :func:`check_exclusive_holds` and :func:`check_fencing_tokens` that find :class:`Violation`
  of lock safety in it.

Servers are paused, resumed, killed and restarted through their own methods
(:class:`tessera.core.embedded.EmbeddedServer`).
"""

from tessera.testing._checks import Violation, check_exclusive_holds, check_fencing_tokens
from tessera.testing._factory import ServerFactory
from tessera.testing._frozen import cancel_while_frozen
from tessera.testing._history import ACQUIRE, OK, RELEASE, History, Invocation, Operation
from tessera.testing._jobs import JobsProcess
from tessera.testing._proxy import TcpProxy
from tessera.testing._service import RunningService, ServiceStarter, serve_in_process

__all__ = [
    "ACQUIRE",
    "OK",
    "RELEASE",
    "History",
    "Invocation",
    "JobsProcess",
    "Operation",
    "RunningService",
    "ServerFactory",
    "ServiceStarter",
    "TcpProxy",
    "Violation",
    "cancel_while_frozen",
    "check_exclusive_holds",
    "check_fencing_tokens",
    "serve_in_process",
]

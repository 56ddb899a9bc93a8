"""The ``tessera`` pytest plugin: real servers on free ports, fault tools, in-process services.

Installed with tessera-testing and loaded by pytest through the ``pytest11`` entry point, so
its fixtures need no import.

Session-scoped, shared by every test of the run (never kill or pause them: use a factory):

- ``etcd_server`` (:class:`~tessera.core.embedded.EtcdServer`), ``etcd_cluster``
  (:class:`~tessera.core.embedded.EtcdCluster`, 3 members), ``redis_server``
  (:class:`~tessera.core.embedded.RedisServer`), ``redis_cluster``
  (:class:`~tessera.core.embedded.RedisCluster`, 3 masters), ``postgres_server``
  (:class:`~tessera.core.embedded.PostgresServer`), ``zookeeper_server``
  (:class:`~tessera.core.embedded.ZooKeeperServer`).

Function-scoped :class:`~tessera.testing.ServerFactory` fixtures, for tests that kill, pause or
restart servers or need options: ``etcd_factory``, ``etcd_cluster_factory``, ``redis_factory``,
``postgres_factory``, ``zookeeper_factory``. Every server they start stops when the test ends.
``redis_sentinel`` is function-scoped too: a fresh
:class:`~tessera.core.embedded.RedisSentinelGroup` (master, one replica, three sentinels) that a
test may fail over.

``jobs_process``: a function ``(*arguments, env={...}) -> JobsProcess`` that starts
``python -m tessera.core.jobs <arguments>`` (a real Celery worker or beat) with ``env`` over this
process's environment; every process it started is stopped (SIGTERM, then SIGKILL) when the test
ends.

``running_service``: an async function ``(bindings, settings=None) -> RunningService`` that
serves gRPC services in-process until the test ends (see
:func:`~tessera.testing.serve_in_process`).

ZooKeeper comes from a system package, not a wheel: where it is missing its fixtures skip, except
under CI (``CI=true``), where they fail, since CI installs it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import pytest
import pytest_asyncio

from tessera.core import TesseraSettings
from tessera.core.embedded import (
    BinaryNotFoundError,
    EtcdCluster,
    EtcdServer,
    PostgresServer,
    RedisCluster,
    RedisSentinelGroup,
    RedisServer,
    ZooKeeperServer,
    find_binary,
)
from tessera.core.server import ServiceBinding
from tessera.testing._factory import S, ServerFactory
from tessera.testing._jobs import JobsProcess
from tessera.testing._service import RunningService, ServiceStarter, serve_in_process


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """Run a single-member etcd for the session; clients use ``etcd_server.endpoint``."""
    with EtcdServer(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """Run a 3-member etcd cluster for the session; clients use ``etcd_cluster.endpoints``."""
    with EtcdCluster(tmp_path_factory.mktemp("etcd-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Run a Redis without persistence for the session; clients use ``redis_server.url``."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """Run a 3-master Redis Cluster for the session; clients use ``redis_cluster.url``."""
    with RedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinelGroup]:
    """Run a Sentinel-managed Redis for one test (it may kill the master); use ``.url``."""
    with RedisSentinelGroup(
        tmp_path_factory.mktemp("redis-sentinel"), replicas=1, sentinels=3
    ) as group:
        yield group


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Run a PostgreSQL for the session; clients use ``postgres_server.dsn``."""
    with (
        _searchable_directories("postgres") as directories,
        PostgresServer(directories()) as server,
    ):
        yield server


@pytest.fixture(scope="session")
def zookeeper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """Run a standalone ZooKeeper for the session; clients use ``zookeeper_server.hosts``."""
    _require_system_binary("zkServer.sh")
    with ZooKeeperServer(tmp_path_factory.mktemp("zookeeper")) as server:
        yield server


@pytest.fixture
def etcd_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory[EtcdServer]]:
    """Start single-member etcd servers for this test only; options as :class:`EtcdServer`."""
    yield from _factory(EtcdServer, lambda: tmp_path_factory.mktemp("etcd"))


@pytest.fixture
def etcd_cluster_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerFactory[EtcdCluster]]:
    """Start etcd clusters for this test only; options as :class:`EtcdCluster` (e.g. size)."""
    yield from _factory(EtcdCluster, lambda: tmp_path_factory.mktemp("etcd-cluster"))


@pytest.fixture
def redis_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerFactory[RedisServer]]:
    """Start Redis servers for this test only; options as :class:`RedisServer`."""
    yield from _factory(RedisServer, lambda: tmp_path_factory.mktemp("redis"))


@pytest.fixture
def postgres_factory() -> Iterator[ServerFactory[PostgresServer]]:
    """Start PostgreSQL servers for this test only; options as :class:`PostgresServer`."""
    with _searchable_directories("postgres") as directories:
        yield from _factory(PostgresServer, directories)


@pytest.fixture
def zookeeper_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerFactory[ZooKeeperServer]]:
    """Start ZooKeeper servers for this test only; options as :class:`ZooKeeperServer`."""
    _require_system_binary("zkServer.sh")
    yield from _factory(ZooKeeperServer, lambda: tmp_path_factory.mktemp("zookeeper"))


@pytest_asyncio.fixture
async def running_service() -> AsyncIterator[ServiceStarter]:
    """Serve gRPC services in-process on free ports (see :class:`ServiceStarter`).

    Every server started stops when the test ends.

    Example::

        async def test_echo(running_service):
            service = await running_service([])  # the kit always serves Diagnostics
            stub = diagnostics_pb2_grpc.DiagnosticsStub(service.channel)
    """
    async with AsyncExitStack() as stack:

        async def start(
            bindings: Sequence[ServiceBinding], settings: TesseraSettings | None = None
        ) -> RunningService:
            return await stack.enter_async_context(serve_in_process(bindings, settings))

        yield start


@pytest.fixture
def jobs_process(tmp_path: Path) -> Iterator[Callable[..., JobsProcess]]:
    """Start real `python -m tessera.core.jobs` processes; all stop when the test ends.

    Example::

        def test_reap(jobs_process, redis_server, etcd_server):
            worker = jobs_process("worker", "-Q", "lock", "-c", "1", env={
                "TESSERA_REDIS_URL": redis_server.url,
                "TESSERA_ETCD_ENDPOINTS": etcd_server.endpoint,
            })
    """
    started: list[JobsProcess] = []

    def start(*arguments: str, env: Mapping[str, str] | None = None) -> JobsProcess:
        environment = {**os.environ, "TESSERA_LOG_FORMAT": "console", **(env or {})}
        log_path = tmp_path / f"jobs-{len(started)}-{arguments[0]}.log"
        process = JobsProcess(arguments, environment, log_path)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()


def _factory(make: Callable[..., S], directory: Callable[[], Path]) -> Iterator[ServerFactory[S]]:
    factory = ServerFactory(make, directory)
    try:
        yield factory
    finally:
        factory.close()


@contextmanager
def _searchable_directories(kind: str) -> Iterator[Callable[[], Path]]:
    # PostgreSQL run by root switches to an unprivileged account, which cannot enter pytest's
    # base temporary directory (mode 0700), so its data goes under the system temp folder.
    created: list[Path] = []

    def new() -> Path:
        directory = Path(tempfile.mkdtemp(prefix=f"tessera-{kind}-"))
        created.append(directory)
        return directory

    try:
        yield new
    finally:
        for directory in created:
            shutil.rmtree(directory, ignore_errors=True)


def _require_system_binary(name: str) -> None:
    try:
        find_binary(name)
    except BinaryNotFoundError as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{error} CI installs it, so its absence is a failure here.")
        pytest.skip(str(error))

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError

from tessera.core.embedded import ZooKeeperServer
from tessera.testing import ServerFactory


@contextmanager
def _connected(server: ZooKeeperServer) -> Iterator[KazooClient]:
    client = KazooClient(hosts=server.hosts, timeout=4)
    client.start(timeout=10)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def test_zookeeper_server_serves_a_session(zookeeper_server: ZooKeeperServer) -> None:
    with _connected(zookeeper_server) as client:
        client.create("/test-embedded-zookeeper", b"written")
        value, _ = client.get("/test-embedded-zookeeper")

    assert value == b"written"
    assert zookeeper_server.hosts == f"127.0.0.1:{zookeeper_server.port}"


def test_paused_zookeeper_times_out_and_answers_again_after_resume(
    zookeeper_factory: ServerFactory[ZooKeeperServer],
) -> None:
    server = zookeeper_factory()
    with _connected(server) as client:
        client.create("/k", b"before pause")

        server.pause()
        with pytest.raises(KazooTimeoutError):
            client.get_async("/k").get(timeout=0.5)

        server.resume()
        value, _ = client.get("/k")

    assert value == b"before pause"


def test_killed_zookeeper_restarts_with_its_data(
    zookeeper_factory: ServerFactory[ZooKeeperServer],
) -> None:
    server = zookeeper_factory()
    with _connected(server) as client:
        client.create("/k", b"durable")

    server.kill()
    server.restart()

    with _connected(server) as client:
        value, _ = client.get("/k")
    assert value == b"durable"

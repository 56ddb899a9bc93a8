import tessera.client.lock
import tessera.lock
import tessera.lock_backends


def test_lock_service_exports() -> None:
    assert tessera.lock.__all__ == [
        "LOCK_SERVICE",
        "LockServicer",
        "LockSettings",
        "load_backend",
        "lock_binding",
    ]


def test_lock_backends_exports() -> None:
    assert tessera.lock_backends.__all__ == [
        "LOCKS_PREFIX",
        "REDIS_PREFIX",
        "ZK_ROOT",
        "EtcdLockBackend",
        "LockQueue",
        "PostgresLockBackend",
        "PostgresSettings",
        "QueuedEntry",
        "RedisLockBackend",
        "Requests",
        "ZooKeeperConnection",
        "ZooKeeperLockBackend",
        "ZooKeeperSettings",
    ]


def test_lock_sdk_exports() -> None:
    assert tessera.client.lock.__all__ == [
        "FencedResource",
        "HeldLock",
        "Leader",
        "Leadership",
        "LockClient",
        "Mode",
        "Session",
        "StaleTokenError",
        "SyncLockClient",
    ]
    for module in (tessera.lock, tessera.lock_backends, tessera.client.lock):
        assert all(hasattr(module, name) for name in module.__all__)

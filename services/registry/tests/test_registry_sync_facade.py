import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from tessera.client.registry import SyncRegistry

from .conftest import Replica, instance


def _scenario(address: str, namespace: str) -> None:
    with SyncRegistry([address]) as registry:
        kept = registry.register(instance(namespace, id="s1"))
        registry.register(instance(namespace, id="s2", port=8081), keep_alive=False)
        assert {i.id for i in registry.list(namespace, "api").service.instances} == {kept, "s2"}

        watch = registry.watch(namespace, "api", balancer="least_request")
        # Picks from several threads at once, none on the facade's loop.
        with ThreadPoolExecutor(4) as pool:
            picked = set(pool.map(lambda _: watch.pick().id, range(200)))
        assert picked == {"s1", "s2"}
        assert threading.current_thread() is not threading.main_thread()

        assert registry.resolve(namespace, "api", balancer="maglev", hash_key=b"k").id in picked
        registry.deregister(namespace, "api", "s2")
        registry.deregister(namespace, "api", kept)
        assert not registry.list(namespace, "api").service.instances

        ids = registry.register_many([instance(namespace, "db", id=f"d{n}") for n in range(3)])
        assert ids == ["d0", "d1", "d2"]
        assert len(registry.list(namespace, "db").service.instances) == 3


async def test_registry_sync_facade_registers_lists_picks_and_deregisters(
    replica: Replica, namespace: str
) -> None:
    await asyncio.to_thread(_scenario, replica.address, namespace)

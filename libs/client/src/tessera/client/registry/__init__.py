"""Python SDK of the Tessera registry.

- `RegistryClient`: the Registry API over gRPC, failing over across replicas; errors are the
  Tessera tree.
- `Registration`: ephemeral instances registered and kept alive in the background, registered
  again after a failover that lost them.
- `ServiceWatch`: a discovery cache fed by Watch that picks instances with a balancer plugin.
- `SyncRegistry`: a blocking facade running all of the above on a private loop thread.
- `BalancedChannel`: per-call picks for grpc.aio stubs, with zone preference and outlier
  ejection.
- `self_registration`: how a Tessera service registers itself when `registry_endpoints` is set.
- `served_set`: the eligibility and protection rule the registry and the SDK share.
- `read_stats`: the per-service counts the registry leader's statistics job keeps in Redis.

Example::

    async with RegistryClient(["127.0.0.1:50051"]) as client:
        async with Registration(client) as registration:
            await registration.add(Instance(namespace="prod", service="api", host="10.0.0.5",
                                            port=8080))
            async with ServiceWatch(client, "prod", "api", balancer="least_request") as api:
                instance = api.pick()
"""

from tessera.client.registry._channel import FAILURE_CODES, BalancedChannel, RoutedCall
from tessera.client.registry._client import CALL_TIMEOUT_S, MAX_BATCH, RegistryClient
from tessera.client.registry._discovery import ServiceWatch
from tessera.client.registry._eligibility import ServedSet, served_set, to_endpoint
from tessera.client.registry._errors import rpc_error
from tessera.client.registry._keepalive import Registration
from tessera.client.registry._self import SELF_NAMESPACE, self_instance, self_registration
from tessera.client.registry._stats import (
    STATS_KEY,
    STATS_TTL_S,
    RegistryStats,
    ServiceStats,
    read_stats,
)
from tessera.client.registry._sync import SYNC_TIMEOUT_S, SyncRegistry
from tessera.proto.registry.v1.registry_pb2 import Instance, ServingStatus

__all__ = [
    "CALL_TIMEOUT_S",
    "FAILURE_CODES",
    "MAX_BATCH",
    "SELF_NAMESPACE",
    "STATS_KEY",
    "STATS_TTL_S",
    "SYNC_TIMEOUT_S",
    "BalancedChannel",
    "Instance",
    "Registration",
    "RegistryClient",
    "RegistryStats",
    "RoutedCall",
    "ServedSet",
    "ServiceStats",
    "ServiceWatch",
    "ServingStatus",
    "SyncRegistry",
    "read_stats",
    "rpc_error",
    "self_instance",
    "self_registration",
    "served_set",
    "to_endpoint",
]

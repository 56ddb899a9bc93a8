import asyncio
from collections.abc import Sequence

import psutil

from tessera.client.devstack._components import Component
from tessera.client.devstack._health import ComponentKind, ComponentStatus, Health
from tessera.client.devstack._jobs import probe_heartbeat
from tessera.client.devstack._probes import (
    ProbeResult,
    probe_etcd,
    probe_grpc_health,
    probe_redis,
)


async def probe_component(component: Component, timeout_s: float) -> ProbeResult:
    """Run the health probe that fits the component's kind.

    etcd: a status call that needs a leader; Redis: PING; a service: ``grpc.health.v1`` Check;
    worker and beat: freshness of the job heartbeat in Redis (``component.endpoint``).

    Args:
        component: What to probe.
        timeout_s: Seconds the probe may take.

    Returns:
        The probe's result; probes never raise for an unreachable component.

    """
    match component.kind:
        case ComponentKind.ETCD:
            return await probe_etcd(component.endpoint, timeout_s)
        case ComponentKind.REDIS:
            return await probe_redis(component.endpoint, timeout_s)
        case ComponentKind.SERVICE:
            return await probe_grpc_health(component.endpoint, timeout_s)
        case ComponentKind.WORKER | ComponentKind.BEAT:
            return await probe_heartbeat(component.endpoint, timeout_s)


async def check_components(
    components: Sequence[Component], timeout_s: float
) -> list[ComponentStatus]:
    """Probe components concurrently, as ``tessera status`` does.

    A component whose recorded pid no longer exists is FAILED without being probed; one whose
    probe fails is UNHEALTHY.

    Args:
        components: What to check (from ``stack.json`` or the settings defaults).
        timeout_s: Seconds each probe may take.

    Returns:
        One status per component, in the given order.

    """

    async def judge(component: Component) -> ComponentStatus:
        if component.pid is not None and not psutil.pid_exists(component.pid):
            health, detail = Health.FAILED, f"process {component.pid} is gone"
        else:
            result = await probe_component(component, timeout_s)
            health = Health.HEALTHY if result.healthy else Health.UNHEALTHY
            detail = result.detail
        return component.status(health, detail)

    return list(await asyncio.gather(*(judge(component) for component in components)))

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from tessera.client.registry._client import RegistryClient
from tessera.client.registry._keepalive import Registration
from tessera.core import TesseraError, TesseraSettings
from tessera.proto.registry.v1 import registry_pb2

#: Namespace Tessera's own services register in.
SELF_NAMESPACE = "tessera"

_RETRY_S = 0.5
_MAX_RETRY_S = 5.0
#: How long deregistering on exit may delay a stopping process.
_DEREGISTER_TIMEOUT_S = 2.0


def self_instance(settings: TesseraSettings) -> registry_pb2.Instance:
    """Describe the process `settings` configure as an instance of its own service.

    The id is `host:port`, so a restarted process replaces its previous record instead of
    adding one beside it.
    """
    return registry_pb2.Instance(
        namespace=SELF_NAMESPACE,
        service=settings.service_name,
        id=f"{settings.host}:{settings.port}",
        host=settings.host,
        port=settings.port,
        metadata={"tessera.component": "service"},
    )


@contextlib.asynccontextmanager
async def self_registration(settings: TesseraSettings) -> AsyncIterator[Registration | None]:
    """Keep this process registered in the registry while the context is open.

    Does nothing (yields None) unless `settings.registry_endpoints` names a replica and
    `settings.port` is fixed (a port the operating system picks is not known here). Otherwise
    registers `self_instance(settings)` in the background, retrying with backoff until a
    replica accepts it (the registry may start after the service, as under `tessera dev up`),
    then keeps it alive; on exit deregisters it, waiting at most a couple of seconds.

    Never raises for the registry's sake: a service runs the same whether or not it could
    register; failures are logged.

    Yields:
        The `Registration` holding the instance, or None when self-registration is off.

    """
    if not settings.registry_endpoints or settings.port == 0:
        yield None
        return
    async with RegistryClient(settings.registry_endpoints) as client:
        registration = Registration(client)
        task = asyncio.create_task(
            _register(registration, self_instance(settings)), name="registry-self-register"
        )
        try:
            yield registration
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DEREGISTER_TIMEOUT_S):
                    await registration.close()


async def _register(registration: Registration, instance: registry_pb2.Instance) -> None:
    log = structlog.get_logger(__name__)
    backoff = _RETRY_S
    while True:
        try:
            await registration.add(instance)
        except TesseraError as error:
            log.debug("registry_self_register_retry", error=error.message)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_RETRY_S)
        else:
            log.info("registry_self_registered", service=instance.service, id=instance.id)
            return

"""Run the rate-limit service: `python -m tessera.ratelimit` or `tessera-ratelimit`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from tessera.client.registry import self_registration
from tessera.core.server import ServiceBinding, freeze_startup_heap, run
from tessera.ratelimit._service import rate_limit_service
from tessera.ratelimit._settings import RateLimitSettings

#: A Check of 100 descriptors allocates about a thousand objects that die with it: at Python's
#: default thresholds (700, 10, 10) the youngest generation was collected on nearly every request,
#: promoting those in flight to older generations (about 5 % of the server's CPU).
_GC_THRESHOLDS = (20_000, 20, 20)


@asynccontextmanager
async def _bindings(settings: RateLimitSettings) -> AsyncIterator[Sequence[ServiceBinding]]:
    async with rate_limit_service(settings) as service, self_registration(settings):
        freeze_startup_heap(_GC_THRESHOLDS)
        yield service.bindings


def main() -> None:
    """Serve until SIGTERM or SIGINT; exit 1 when the service cannot start."""
    run(RateLimitSettings.from_env, _bindings)


if __name__ == "__main__":
    main()

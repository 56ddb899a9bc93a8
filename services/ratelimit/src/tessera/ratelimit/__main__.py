"""Run the rate-limit service: `python -m tessera.ratelimit` or `tessera-ratelimit`."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from tessera.client.registry import self_registration
from tessera.core.server import ServiceBinding, run
from tessera.ratelimit._service import rate_limit_service
from tessera.ratelimit._settings import RateLimitSettings

#: Allocations between collections of the youngest generation (Python's default: 700).
_YOUNG_THRESHOLD = 20_000


@asynccontextmanager
async def _bindings(settings: RateLimitSettings) -> AsyncIterator[Sequence[ServiceBinding]]:
    async with rate_limit_service(settings) as service, self_registration(settings):
        # What start-up built lives as long as the process: out of the collector's sight, the
        # full collections that requests' garbage triggers have that much less to scan.
        gc.freeze()
        yield service.bindings


def main() -> None:
    """Serve until SIGTERM or SIGINT; exit 1 when the service cannot start."""
    # A Check of 100 descriptors allocates about a thousand objects that die with it: at the
    # default threshold (700) the youngest generation was collected on nearly every request,
    # promoting those in flight to older generations (about 5 % of the server's CPU).
    gc.set_threshold(_YOUNG_THRESHOLD, 20, 20)
    run(RateLimitSettings.from_env, _bindings)


if __name__ == "__main__":
    main()

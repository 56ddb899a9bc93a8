"""The governance service on its own etcd, in child processes, for bench/governance_*.py."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from harness import Endpoint, ServerHandle, free_port, server_process

from tessera.core.embedded import EtcdServer


@asynccontextmanager
async def governance_stack() -> AsyncIterator[ServerHandle]:
    """Start etcd and `python -m tessera.governance`; yield the service's handle."""
    async with AsyncExitStack() as stack:
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="tessera-bench-"))
        etcd = await asyncio.to_thread(EtcdServer(directory).start)
        stack.callback(etcd.stop)
        endpoint = Endpoint("127.0.0.1", free_port())
        env = {
            "TESSERA_PORT": str(endpoint.port),
            "TESSERA_METRICS_PORT": str(free_port()),
            "TESSERA_ETCD_ENDPOINTS": etcd.endpoint,
            "TESSERA_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(sys.path),
        }
        yield await stack.enter_async_context(
            server_process([sys.executable, "-m", "tessera.governance"], endpoint, env=env)
        )

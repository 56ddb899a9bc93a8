from __future__ import annotations

import asyncio
import time

from tessera.core.plugins import CheckResult, HealthStatus
from tessera.health_checks._target import host_port


class TcpCheck:
    """Passing when a TCP connection to `host:port` opens within the timeout (`tcp`).

    It proves the port accepts connections, nothing more: a server that accepts and then hangs
    passes.
    """

    async def check(self, target: str, timeout_s: float) -> CheckResult:
        """Open and close one connection.

        Raises:
            ValidationError: `target` is not `host:port`.

        """
        host, port = host_port(target)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                _, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            return _critical(f"no connection within {timeout_s:g} s", started)
        except OSError as error:
            return _critical(error.strerror or type(error).__name__, started)
        writer.close()
        try:
            async with asyncio.timeout(timeout_s):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            pass  # the connection opened, which is all this check asks
        return CheckResult(HealthStatus.PASSING, latency_s=time.perf_counter() - started)


def _critical(detail: str, started: float) -> CheckResult:
    return CheckResult(HealthStatus.CRITICAL, detail, time.perf_counter() - started)

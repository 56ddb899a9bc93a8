from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx

from tessera.core import ValidationError
from tessera.core.plugins import CheckResult, HealthStatus


class HttpCheck:
    """GET an `http://` or `https://` URL (`http`), as Consul's HTTP check does.

    Passing for a 2xx answer, WARNING for 429 (the instance is alive but shedding load),
    CRITICAL for anything else, a connection failure, or no answer within the timeout.
    Redirects are not followed: a health endpoint answers for itself.
    """

    async def check(self, target: str, timeout_s: float) -> CheckResult:
        """Send one GET.

        Raises:
            ValidationError: `target` is not an http(s) URL with a host.

        """
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError.for_field("target", f"must be an http(s) URL, got {target!r}")
        started = time.perf_counter()
        try:
            async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
                response = await client.get(target)
        except httpx.TimeoutException:
            return _result(HealthStatus.CRITICAL, f"no answer within {timeout_s:g} s", started)
        except httpx.HTTPError as error:
            return _result(HealthStatus.CRITICAL, f"{type(error).__name__}: {error}", started)
        code = response.status_code
        if 200 <= code < 300:
            return _result(HealthStatus.PASSING, "", started)
        status = HealthStatus.WARNING if code == 429 else HealthStatus.CRITICAL
        return _result(status, f"HTTP {code}", started)


def _result(status: HealthStatus, detail: str, started: float) -> CheckResult:
    return CheckResult(status, detail, time.perf_counter() - started)

"""The token-authentication slot of the server kit."""

from __future__ import annotations

import hmac
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType

from pydantic import SecretStr

from tessera.core._errors import UnauthenticatedError
from tessera.core.server._call_scope import (
    HEALTH_SERVICE,
    CallScopeInterceptor,
    RpcMethod,
    ServicerContext,
)

_SCHEME = "bearer "


@dataclass(frozen=True, slots=True)
class TokenAuthConfig:
    """What `TokenAuthInterceptor` accepts.

    Attributes:
        token: The shared token clients present as `authorization: Bearer <token>`.
        exempt_services: Services callable without a token: health checks by default, so load
            balancers and orchestrators need no secret.

    """

    token: SecretStr
    exempt_services: frozenset[str] = frozenset({HEALTH_SERVICE})


class TokenAuthInterceptor(CallScopeInterceptor):
    """Refuse calls without metadata `authorization: Bearer <token>` with UNAUTHENTICATED.

    Raises `UnauthenticatedError` inside the call, so the error-mapping interceptor reports and
    counts it like any other error. The token comparison takes constant time.
    """

    def __init__(self, config: TokenAuthConfig) -> None:
        super().__init__()
        self._config = config
        self._token = config.token.get_secret_value().encode()

    def applies_to(self, method: RpcMethod) -> bool:
        """Every service but the exempt ones needs the token."""
        return method.service not in self._config.exempt_services

    def call_scope(
        self, method: RpcMethod, context: ServicerContext
    ) -> AbstractAsyncContextManager[None]:
        """Check the call's token before the servicer runs."""
        return _TokenCheck(self._token, context)


class _TokenCheck:
    """Checks one call's bearer token on entry."""

    __slots__ = ("_context", "_token")

    def __init__(self, token: bytes, context: ServicerContext) -> None:
        self._token = token
        self._context = context

    async def __aenter__(self) -> None:
        if not self._presents_token():
            raise UnauthenticatedError(
                "missing or invalid bearer token in 'authorization' metadata"
            )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        pass

    def _presents_token(self) -> bool:
        for key, value in self._context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                if value[: len(_SCHEME)].lower() != _SCHEME:
                    continue
                presented = value[len(_SCHEME) :].strip().encode()
                if hmac.compare_digest(presented, self._token):
                    return True
        return False

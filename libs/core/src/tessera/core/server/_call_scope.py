"""A base for server interceptors that run code around every call, unary or streaming."""

from __future__ import annotations

import abc
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Self

import grpc

#: Full names of the services every server runs besides its bindings.
HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICES = frozenset(
    {"grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
)

ServicerContext = grpc.aio.ServicerContext[Any, Any]
_CallScope = Callable[[ServicerContext], AbstractAsyncContextManager[None]]


@dataclass(frozen=True, slots=True)
class RpcMethod:
    """The method a call invokes.

    Attributes:
        service: Full proto service name, e.g. `tessera.registry.v1.Registry`.
        name: Method name, e.g. `Register`.

    """

    service: str
    name: str

    @classmethod
    def parse(cls, path: str) -> Self:
        """Split a gRPC method path (`/package.Service/Method`) into service and method."""
        service, _, name = path.lstrip("/").rpartition("/")
        return cls(service, name)

    @property
    def path(self) -> str:
        """The gRPC method path, `/package.Service/Method`."""
        return f"/{self.service}/{self.name}"


class CallScopeInterceptor(grpc.aio.ServerInterceptor, abc.ABC):
    """Runs `call_scope` around each call of the methods it `applies_to`.

    Subclasses implement `call_scope`, an async context manager entered when the call starts and
    left when the servicer returns, raises or yields its last message. An exception raised from
    it reaches the client like one from the servicer. The wrapped handlers are cached per method,
    so the per-call cost is the scope itself: the kit's scopes are small classes with `__slots__`
    and `__aenter__`/`__aexit__`, since an `@asynccontextmanager` generator costs several times
    as much to enter and leave. Only for async servicers (grpc.aio); not thread-safe, like
    everything on a grpc.aio server, which runs on one event loop.
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], Any]] = {}

    @abc.abstractmethod
    def call_scope(
        self, method: RpcMethod, context: ServicerContext
    ) -> AbstractAsyncContextManager[None]:
        """Return the context manager that surrounds one call of `method`."""

    def applies_to(self, method: RpcMethod) -> bool:
        """Whether calls of `method` run inside `call_scope`; all methods by default."""
        return True

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Return the next handler wrapped in this interceptor's call scope."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        path = handler_call_details.method
        cached = self._wrapped.get(path)
        if cached is not None and cached[0] is handler:
            wrapped: grpc.RpcMethodHandler[Any, Any] = cached[1]
            return wrapped
        method = RpcMethod.parse(path)
        if self.applies_to(method):
            wrapped = wrap_handler(handler, functools.partial(self.call_scope, method))
        else:
            wrapped = handler
        self._wrapped[path] = (handler, wrapped)
        return wrapped


def wrap_handler(
    handler: grpc.RpcMethodHandler[Any, Any], scope: _CallScope
) -> grpc.RpcMethodHandler[Any, Any]:
    """Return a handler like `handler` whose behaviour runs inside `scope(context)`.

    Response-streaming behaviours become async generators whatever their style: the
    OpenTelemetry server interceptor iterates what it wraps, so a servicer that writes with
    `context.write` (such as the health Watch) is awaited inside a generator that yields nothing.
    """
    if handler.response_streaming:
        stream_behavior: Any = (
            handler.stream_stream if handler.request_streaming else handler.unary_stream
        )

        async def streaming(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
            async with scope(context):
                responses = stream_behavior(request, context)
                if not hasattr(responses, "__aiter__"):
                    await responses
                    return
                # aclosing: a call that ends early must run the servicer's cleanup now, in this
                # task's context, not whenever the abandoned generator is collected.
                async with contextlib.aclosing(responses):
                    async for response in responses:
                        yield response

        make = (
            grpc.stream_stream_rpc_method_handler
            if handler.request_streaming
            else grpc.unary_stream_rpc_method_handler
        )
        return make(
            streaming,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    unary_behavior: Any = handler.stream_unary if handler.request_streaming else handler.unary_unary

    async def unary(request: Any, context: ServicerContext) -> Any:
        async with scope(context):
            return await unary_behavior(request, context)

    make = (
        grpc.stream_unary_rpc_method_handler
        if handler.request_streaming
        else grpc.unary_unary_rpc_method_handler
    )
    return make(
        unary,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )

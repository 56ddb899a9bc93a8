"""Client spans for grpc.aio calls, with the trace context carried to the server.

OpenTelemetry's own grpc.aio client interceptor awaits the call's status inside the interceptor,
so cancelling the caller cancels only that wait and the RPC keeps running on the server
(open-telemetry/opentelemetry-python-contrib#3271). These interceptors hand the call back
untouched and end the span from the call's done callback, so a cancellation reaches the RPC.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import grpc
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

_RequestT = TypeVar("_RequestT")
_ResponseT = TypeVar("_ResponseT")
_CallT = TypeVar("_CallT", bound=grpc.aio.Call)

_ChannelFactory = Callable[..., grpc.aio.Channel]

# The factories grpc.aio had before install_client_tracing replaced them; None when not installed.
_original_factories: tuple[_ChannelFactory, _ChannelFactory] | None = None
# Tasks that read a finished call's status: the event loop keeps only weak references to tasks.
_status_readers: set[asyncio.Task[None]] = set()


class _CallTracer:
    """The span work shared by the four kinds of interceptor (see client_tracing_interceptors)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    async def _traced(
        self,
        details: grpc.aio.ClientCallDetails,
        start_call: Callable[[grpc.aio.ClientCallDetails], Awaitable[_CallT]],
    ) -> _CallT:
        method = details.method
        # grpc passes the method as bytes despite its annotation (grpc/grpc#31092).
        name = method.decode() if isinstance(method, bytes) else method
        service, _, short_method = name.lstrip("/").partition("/")
        span = self._tracer.start_span(
            name,
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": short_method},
        )
        try:
            call = await start_call(_with_trace_context(details, span))
        except grpc.aio.AioRpcError as error:
            # A later interceptor awaited the call and raised its status.
            _record_status(span, error.code(), error.details())
            span.end()
            raise
        except BaseException as error:
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            span.end()
            raise
        # A later interceptor may return a finished call (a response it made itself), whose
        # add_done_callback is not implemented.
        if call.done():
            _end_span_on_status(span, call)
        else:
            call.add_done_callback(lambda finished: _end_span_on_status(span, finished))
        return call


# grpc.aio files each interceptor under the first of the four kinds it implements, so every kind
# needs an object of its own.
class _UnaryUnaryTracer(_CallTracer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _RequestT],
            Awaitable[grpc.aio.UnaryUnaryCall[_RequestT, _ResponseT]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _RequestT,
    ) -> grpc.aio.UnaryUnaryCall[_RequestT, _ResponseT]:
        return await self._traced(client_call_details, lambda d: continuation(d, request))


class _UnaryStreamTracer(_CallTracer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _RequestT],
            Awaitable[grpc.aio.UnaryStreamCall[_RequestT, _ResponseT]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _RequestT,
    ) -> grpc.aio.UnaryStreamCall[_RequestT, _ResponseT]:
        return await self._traced(client_call_details, lambda d: continuation(d, request))


class _StreamUnaryTracer(_CallTracer, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, AsyncIterable[_RequestT] | Iterable[_RequestT]],
            Awaitable[grpc.aio.StreamUnaryCall[_RequestT, _ResponseT]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: AsyncIterable[_RequestT] | Iterable[_RequestT],
    ) -> grpc.aio.StreamUnaryCall[_RequestT, _ResponseT]:
        return await self._traced(client_call_details, lambda d: continuation(d, request_iterator))


class _StreamStreamTracer(_CallTracer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, AsyncIterable[_RequestT] | Iterable[_RequestT]],
            Awaitable[grpc.aio.StreamStreamCall[_RequestT, _ResponseT]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: AsyncIterable[_RequestT] | Iterable[_RequestT],
    ) -> grpc.aio.StreamStreamCall[_RequestT, _ResponseT]:
        return await self._traced(client_call_details, lambda d: continuation(d, request_iterator))


def client_tracing_interceptors(
    tracer_provider: trace.TracerProvider | None = None,
) -> list[grpc.aio.ClientInterceptor]:
    """Make the interceptors that trace every call of a grpc.aio channel, one for each kind.

    Each call gets a CLIENT span named after the method (`/pkg.Service/Method`), with
    `rpc.system`, `rpc.service` and `rpc.method`, and the W3C trace context in its metadata. The
    call is returned without being awaited, so cancelling it cancels the RPC. The span ends when
    the call finishes, with `rpc.grpc.status_code` and an error status for every code but OK.

    Args:
        tracer_provider: Supplies the tracer; the global provider when None.

    Returns:
        Interceptors for unary-unary, unary-stream, stream-unary and stream-stream calls, to put
        in a channel's `interceptors`.

    """
    tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
    return [
        _UnaryUnaryTracer(tracer),
        _UnaryStreamTracer(tracer),
        _StreamUnaryTracer(tracer),
        _StreamStreamTracer(tracer),
    ]


def _with_trace_context(
    details: grpc.aio.ClientCallDetails, span: Span
) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
    inject(metadata, context=trace.set_span_in_context(span))
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


def _end_span_on_status(span: Span, call: grpc.aio.Call) -> None:
    # A done callback cannot await, and call.code() is a coroutine; once the call is done it
    # returns at once, so a task reads it on the next turn of the loop.
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        # Called outside the loop (garbage collection cancelling a call after its loop stopped):
        # the status can no longer be awaited.
        span.end()
        return
    reader = loop.create_task(_end_span(span, call))
    _status_readers.add(reader)
    reader.add_done_callback(_status_readers.discard)


async def _end_span(span: Span, call: grpc.aio.Call) -> None:
    try:
        _record_status(span, await call.code(), await call.details())
    finally:
        span.end()


def _record_status(span: Span, code: grpc.StatusCode, details: str | None) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, f"{code.name}: {details}"))


def install_client_tracing(tracer_provider: trace.TracerProvider) -> None:
    """Trace every grpc.aio channel created from now on.

    Replaces `grpc.aio.insecure_channel` and `grpc.aio.secure_channel` with versions that put
    `client_tracing_interceptors` first in the channel's interceptors, so the span covers the
    others; also where a library bound them by name at import (aetcd, so etcd calls are
    traced). Channels created before are not traced. Does nothing when already installed. Not
    thread-safe: call it once at process start (`configure_tracing` does).

    Args:
        tracer_provider: Supplies the tracer of the client spans.

    """
    global _original_factories
    if _original_factories is not None:
        return
    insecure_channel, secure_channel = grpc.aio.insecure_channel, grpc.aio.secure_channel
    tracing = client_tracing_interceptors(tracer_provider)

    def traced_insecure_channel(
        target: str,
        options: Sequence[tuple[str, Any]] | None = None,
        compression: grpc.Compression | None = None,
        interceptors: Iterable[grpc.aio.ClientInterceptor] | None = None,
    ) -> grpc.aio.Channel:
        return insecure_channel(target, options, compression, [*tracing, *(interceptors or ())])

    def traced_secure_channel(
        target: str,
        credentials: grpc.ChannelCredentials,
        options: Sequence[tuple[str, Any]] | None = None,
        compression: grpc.Compression | None = None,
        interceptors: Iterable[grpc.aio.ClientInterceptor] | None = None,
    ) -> grpc.aio.Channel:
        return secure_channel(
            target, credentials, options, compression, [*tracing, *(interceptors or ())]
        )

    _original_factories = (insecure_channel, secure_channel)
    grpc.aio.insecure_channel = traced_insecure_channel
    grpc.aio.secure_channel = traced_secure_channel
    _rebind_factories(_original_factories, (traced_insecure_channel, traced_secure_channel))


#: Modules that import the channel factories by name (`from grpc.aio import insecure_channel`),
#: so replacing `grpc.aio`'s attributes does not reach them once they are imported: aetcd's
#: channels (every etcd call of Tessera) would stay untraced.
_FACTORY_HOLDERS = ("aetcd.rpc",)


def _rebind_factories(old: tuple[Any, Any], new: tuple[Any, Any]) -> None:
    for name in _FACTORY_HOLDERS:
        module = sys.modules.get(name)  # one imported later takes grpc.aio's current factories
        if module is None:
            continue
        for attribute, was, becomes in zip(
            ("insecure_channel", "secure_channel"), old, new, strict=True
        ):
            if getattr(module, attribute, None) is was:
                setattr(module, attribute, becomes)


def uninstall_client_tracing() -> None:
    """Restore the grpc.aio channel factories `install_client_tracing` replaced.

    Channels created from now on are not traced; channels created before keep their tracing.
    Does nothing when not installed.
    """
    global _original_factories
    if _original_factories is None:
        return
    traced = (grpc.aio.insecure_channel, grpc.aio.secure_channel)
    grpc.aio.insecure_channel, grpc.aio.secure_channel = _original_factories
    _rebind_factories(traced, _original_factories)
    _original_factories = None

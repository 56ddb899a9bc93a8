"""A request carried by a stream logs under its own method, as its unary call would."""

from __future__ import annotations

import contextvars

import grpc
import structlog

from tessera.core.observability import StreamedCalls


def _method() -> object:
    return structlog.contextvars.get_contextvars().get("method")


def test_a_streamed_requests_log_lines_name_its_method_until_it_finishes() -> None:
    def run() -> None:
        # What the server kit binds for the stream's call.
        structlog.contextvars.bind_contextvars(method="/tessera.test.v1.T/Commands")
        call = StreamedCalls("tessera.test.v1.T").start("Acquire")
        assert _method() == "/tessera.test.v1.T/Acquire"
        call.finish(grpc.StatusCode.OK)
        assert _method() == "/tessera.test.v1.T/Commands"

    contextvars.copy_context().run(run)


def test_concurrent_streamed_requests_each_keep_their_own_method() -> None:
    first_context, second_context = contextvars.copy_context(), contextvars.copy_context()
    calls = StreamedCalls("tessera.test.v1.T")
    first = first_context.run(calls.start, "Acquire")
    second = second_context.run(calls.start, "Release")
    assert first_context.run(_method) == "/tessera.test.v1.T/Acquire"
    assert second_context.run(_method) == "/tessera.test.v1.T/Release"
    first_context.run(first.finish, grpc.StatusCode.CANCELLED)
    second_context.run(second.finish, grpc.StatusCode.OK)
    assert first_context.run(_method) is None
    assert second_context.run(_method) is None

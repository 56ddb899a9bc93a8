"""The Diagnostics service every Tessera server answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

from tessera.core._errors import FieldViolation, ValidationError
from tessera.core.server._call_scope import ServicerContext
from tessera.proto.diagnostics.v1 import diagnostics_pb2, diagnostics_pb2_grpc

DIAGNOSTICS_SERVICE = diagnostics_pb2.DESCRIPTOR.services_by_name["Diagnostics"].full_name
MAX_ECHO_PAYLOAD_BYTES = 1024 * 1024
MAX_ECHO_COUNT = 10_000


class DiagnosticsServicer(diagnostics_pb2_grpc.DiagnosticsServicer):
    """Echo calls that do no work: the floor of a call through the server kit.

    Stateless; safe for any number of concurrent calls.
    """

    async def Echo(  # noqa: N802 - the gRPC method name
        self, request: diagnostics_pb2.EchoRequest, context: ServicerContext
    ) -> diagnostics_pb2.EchoResponse:
        """Return the payload unchanged.

        Raises:
            ValidationError: `payload` is larger than 1 MiB.

        """
        _raise_for(_payload_violations(request.payload))
        return diagnostics_pb2.EchoResponse(payload=request.payload)

    async def EchoStream(  # noqa: N802 - the gRPC method name
        self, request: diagnostics_pb2.EchoStreamRequest, context: ServicerContext
    ) -> AsyncIterator[diagnostics_pb2.EchoResponse]:
        """Send the payload `count` times.

        Raises:
            ValidationError: `payload` is larger than 1 MiB, or `count` is not in 1..10000;
                every invalid field is named.

        """
        violations = _payload_violations(request.payload)
        if not 1 <= request.count <= MAX_ECHO_COUNT:
            violations.append(FieldViolation("count", f"must be between 1 and {MAX_ECHO_COUNT}"))
        _raise_for(violations)
        response = diagnostics_pb2.EchoResponse(payload=request.payload)
        for _ in range(request.count):
            yield response


def _payload_violations(payload: bytes) -> list[FieldViolation]:
    if len(payload) > MAX_ECHO_PAYLOAD_BYTES:
        return [FieldViolation("payload", f"must be at most {MAX_ECHO_PAYLOAD_BYTES} bytes")]
    return []


def _raise_for(violations: list[FieldViolation]) -> None:
    if violations:
        raise ValidationError(violations)

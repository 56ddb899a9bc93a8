"""The SDK's one translation of failed calls, fed by a real server's error mapping over the wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2, status_pb2

from tessera.client._rpc_errors import StatusDetails, rpc_error, status_details, translated
from tessera.client.governance._errors import ContractRefusedError
from tessera.client.governance._errors import rpc_error as governance_rpc_error
from tessera.client.registry import rpc_error as registry_rpc_error
from tessera.core import (
    AbortedError,
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    TesseraError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)
from tessera.core.server import ServiceBinding
from tessera.proto.registry.v1 import registry_pb2, registry_pb2_grpc
from tessera.testing import serve_in_process


class _RefusedError(FailedPreconditionError):
    """What a service sends for a refused write: `PreconditionFailure` violations."""

    def to_rpc_status(self) -> status_pb2.Status:
        status = super().to_rpc_status()
        failure = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type="FIELD_REMOVED", subject="3:/properties/id", description="id was removed"
                )
            ]
        )
        status.details.add().Pack(failure)
        return status


class StandardViolationError(_RefusedError):
    """Named like governance's error, whose name (ErrorInfo.reason) marks a standard's refusal."""


# What the failing registry raises, by the service name of a Resolve request.
_RAISES: dict[str, Callable[[], BaseException]] = {
    "invalid": lambda: ValidationError(
        [FieldViolation("instance.port", "must be between 1 and 65535")]
    ),
    "invalid-bare": lambda: ValidationError("no field to blame"),
    "not-found": lambda: NotFoundError("no such instance"),
    "exists": lambda: AlreadyExistsError("already registered"),
    "precondition": lambda: FailedPreconditionError("draining"),
    "refused": lambda: _RefusedError("breaks BACKWARD"),
    "standard": lambda: StandardViolationError("breaks the naming standard"),
    "aborted": lambda: AbortedError("lost a race"),
    "exhausted": lambda: ResourceExhaustedError("over quota"),
    "denied": lambda: PermissionDeniedError("not yours"),
    "unauthenticated": lambda: UnauthenticatedError("who are you"),
    "slow": lambda: DeadlineExceededError("too slow"),
    "down": lambda: UnavailableError("etcd is down"),
    "bug": lambda: RuntimeError("a bug the server hides as INTERNAL"),
}


class _FailingRegistry(registry_pb2_grpc.RegistryServicer):
    async def Resolve(  # noqa: N802 - the gRPC method name
        self, request: registry_pb2.ResolveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.ResolveResponse:
        raise _RAISES[request.service]()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def registry_stub() -> AsyncIterator[registry_pb2_grpc.RegistryAsyncStub]:
    binding = ServiceBinding(
        "tessera.registry.v1.Registry",
        # Only Resolve is needed; the generated servicer answers UNIMPLEMENTED for the rest.
        _FailingRegistry(),  # type: ignore[abstract]
        registry_pb2_grpc.add_RegistryServicer_to_server,
    )
    async with serve_in_process([binding]) as service:
        yield registry_pb2_grpc.RegistryStub(service.channel)


async def _failure(stub: registry_pb2_grpc.RegistryAsyncStub, case: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Resolve(registry_pb2.ResolveRequest(namespace="prod", service=case), timeout=5)
    return caught.value


@pytest.mark.parametrize(
    ("case", "kind", "retryable"),
    [
        ("not-found", NotFoundError, False),
        ("exists", AlreadyExistsError, False),
        ("precondition", FailedPreconditionError, False),
        ("aborted", AbortedError, True),
        ("exhausted", ResourceExhaustedError, True),
        ("denied", PermissionDeniedError, False),
        ("unauthenticated", UnauthenticatedError, False),
        ("slow", DeadlineExceededError, True),
        ("down", UnavailableError, True),
    ],
)
async def test_rpc_error_picks_the_core_class_of_the_status_code(
    registry_stub: registry_pb2_grpc.RegistryAsyncStub,
    case: str,
    kind: type[TesseraError],
    retryable: bool,
) -> None:
    sent = _RAISES[case]()
    assert isinstance(sent, TesseraError)

    error = rpc_error(await _failure(registry_stub, case))

    assert type(error) is kind
    assert error.message == sent.message
    assert error.retryable is retryable


async def test_rpc_error_keeps_the_field_violations_of_invalid_argument(
    registry_stub: registry_pb2_grpc.RegistryAsyncStub,
) -> None:
    error = rpc_error(await _failure(registry_stub, "invalid"))

    assert isinstance(error, ValidationError)
    assert error.violations == (FieldViolation("instance.port", "must be between 1 and 65535"),)
    assert error.retryable is False


async def test_rpc_error_accepts_invalid_argument_without_violations(
    registry_stub: registry_pb2_grpc.RegistryAsyncStub,
) -> None:
    error = rpc_error(await _failure(registry_stub, "invalid-bare"))

    assert isinstance(error, ValidationError)
    assert (error.message, error.violations) == ("no field to blame", ())


async def test_rpc_error_turns_an_internal_failure_into_a_plain_non_retryable_error(
    registry_stub: registry_pb2_grpc.RegistryAsyncStub,
) -> None:
    failure = await _failure(registry_stub, "bug")
    error = rpc_error(failure)

    assert failure.code() is grpc.StatusCode.INTERNAL
    assert type(error) is TesseraError
    assert error.retryable is False
    assert "a bug" not in error.message  # the server does not leak internals


async def test_rpc_error_names_the_code_when_the_status_has_no_message() -> None:
    failure = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details=None
    )

    error = rpc_error(failure)

    assert (type(error), error.message) == (UnavailableError, "UNAVAILABLE")
    assert status_details(failure) == StatusDetails()


async def test_status_details_reads_precondition_violations_and_error_reasons(
    registry_stub: registry_pb2_grpc.RegistryAsyncStub,
) -> None:
    details = status_details(await _failure(registry_stub, "refused"))

    assert details.field_violations == ()
    assert [(v.type, v.subject) for v in details.precondition_violations] == [
        ("FIELD_REMOVED", "3:/properties/id")
    ]
    assert details.reasons == {"_RefusedError"}


async def test_translated_returns_replies_and_raises_translations_chained_to_the_rpc_error(
    registry_stub: registry_pb2_grpc.RegistryAsyncStub,
) -> None:
    async def reply() -> str:
        await asyncio.sleep(0)
        return "ok"

    assert await translated(reply()) == "ok"
    request = registry_pb2.ResolveRequest(namespace="prod", service="not-found")
    with pytest.raises(NotFoundError) as caught:
        await translated(registry_stub.Resolve(request, timeout=5))
    assert isinstance(caught.value.__cause__, grpc.aio.AioRpcError)


async def test_governance_reads_refused_contracts_and_falls_back_to_the_shared_translation(
    registry_stub: registry_pb2_grpc.RegistryAsyncStub,
) -> None:
    refused = governance_rpc_error(await _failure(registry_stub, "refused"))
    standard = governance_rpc_error(await _failure(registry_stub, "standard"))
    plain = governance_rpc_error(await _failure(registry_stub, "precondition"))
    invalid = governance_rpc_error(await _failure(registry_stub, "invalid"))

    assert isinstance(refused, ContractRefusedError)
    assert [(i.path, i.kind) for i in refused.incompatibilities] == [
        ("/properties/id", "FIELD_REMOVED")
    ]
    assert isinstance(standard, ContractRefusedError)
    assert standard.incompatibilities == []
    assert len(standard.violations) == 1
    assert type(plain) is FailedPreconditionError
    assert isinstance(invalid, ValidationError)
    assert invalid.violations


async def test_registry_prefixes_the_status_code_and_keeps_the_class(
    registry_stub: registry_pb2_grpc.RegistryAsyncStub,
) -> None:
    error = registry_rpc_error(await _failure(registry_stub, "not-found"))
    bare = registry_rpc_error(
        grpc.aio.AioRpcError(
            grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(), details=None
        )
    )

    assert (type(error), error.message) == (NotFoundError, "NOT_FOUND: no such instance")
    assert (type(bare), bare.message, bare.retryable) == (
        TesseraError,
        "INTERNAL: no detail",
        False,
    )

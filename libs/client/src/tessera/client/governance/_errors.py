from __future__ import annotations

import grpc

from tessera.client import _rpc_errors
from tessera.client.governance._model import Incompatibility, LintViolation
from tessera.core import FailedPreconditionError, TesseraError


class ContractRefusedError(FailedPreconditionError):
    """The service refused a contract version that breaks its subject's mode or standard.

    The version is refused when it breaks the subject's compatibility mode, or the standard the
    subject requires under policy REJECT; nothing was stored.

    Attributes:
        incompatibilities: Compatibility problems (path, kind, reason, version compared with).
        violations: Standard violations (path, rule, message).

    """

    def __init__(
        self,
        message: str,
        incompatibilities: list[Incompatibility],
        violations: list[LintViolation] | None = None,
    ) -> None:
        super().__init__(message)
        self.incompatibilities = incompatibilities
        self.violations = violations or []


def rpc_error(error: grpc.aio.AioRpcError) -> TesseraError:
    """Translate a failed governance call into the core error tree, keeping its details.

    A FAILED_PRECONDITION with precondition violations is a refused contract version
    (`ContractRefusedError`); everything else is translated as `tessera.client._rpc_errors`
    does.
    """
    details = _rpc_errors.status_details(error)
    refused = details.precondition_violations
    if error.code() is grpc.StatusCode.FAILED_PRECONDITION and refused:
        message = error.details() or error.code().name
        # The service names the error class in ErrorInfo.reason.
        if "StandardViolationError" in details.reasons:
            lint = [LintViolation(v.subject, v.type, v.description) for v in refused]
            return ContractRefusedError(message, [], lint)
        return ContractRefusedError(message, [Incompatibility.from_violation(v) for v in refused])
    return _rpc_errors.rpc_error(error, details=details)

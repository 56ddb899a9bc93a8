from __future__ import annotations

from collections.abc import Sequence

from google.rpc import error_details_pb2, status_pb2

from tessera.core import FailedPreconditionError
from tessera.governance._compatibility import Incompatibility
from tessera.governance._standards import LintViolation


class IncompatibleSchemaError(FailedPreconditionError):
    """A new contract version breaks the subject's compatibility mode; nothing was stored.

    The message lists every incompatibility on its own line; the gRPC status also carries them
    as a `google.rpc.PreconditionFailure` (type: the kind, subject: `v<version>:<path>`,
    description: the reason).

    Attributes:
        incompatibilities: Why, one entry per problem.

    """

    def __init__(self, subject: str, incompatibilities: Sequence[Incompatibility]) -> None:
        lines = [
            f"{item.direction.value} v{item.against_version} {item.path}: {item.reason}"
            for item in incompatibilities
        ]
        super().__init__(f"schema is incompatible with subject '{subject}':\n" + "\n".join(lines))
        self.incompatibilities = tuple(incompatibilities)

    def to_rpc_status(self) -> status_pb2.Status:
        """Add a `PreconditionFailure` with one violation per incompatibility."""
        status = super().to_rpc_status()
        failure = error_details_pb2.PreconditionFailure()
        for item in self.incompatibilities:
            failure.violations.add(
                type=item.kind,
                subject=f"v{item.against_version}:{item.path}",
                description=item.reason,
            )
        packed = status.details.add()
        packed.Pack(failure)
        return status


class StandardViolationError(FailedPreconditionError):
    """A new contract version breaks the standard its subject requires (policy REJECT).

    Nothing was stored. The message lists every violation; the gRPC status also carries them as a
    `google.rpc.PreconditionFailure` (type: the rule, subject: the path, description: the message).

    Attributes:
        violations: Why, one entry per problem.

    """

    def __init__(self, subject: str, standard: str, violations: Sequence[LintViolation]) -> None:
        lines = [f"{item.path}: {item.message}" for item in violations]
        super().__init__(
            f"schema breaks standard '{standard}' required by subject '{subject}':\n"
            + "\n".join(lines)
        )
        self.violations = tuple(violations)

    def to_rpc_status(self) -> status_pb2.Status:
        """Add a `PreconditionFailure` with one violation per lint violation."""
        status = super().to_rpc_status()
        failure = error_details_pb2.PreconditionFailure()
        for item in self.violations:
            failure.violations.add(type=item.rule, subject=item.path, description=item.message)
        status.details.add().Pack(failure)
        return status

"""The one error tree of Tessera.

Every error that Tessera code raises on purpose is a `TesseraError`. Each class carries the gRPC
status code a client sees and whether retrying the same call may succeed::

    TesseraError                    UNKNOWN
    ├── ValidationError             INVALID_ARGUMENT     bad input; names the offending fields
    ├── NotFoundError               NOT_FOUND
    ├── AlreadyExistsError          ALREADY_EXISTS
    ├── FailedPreconditionError     FAILED_PRECONDITION  the system is not in a state to do this
    │   ├── ConfigError                                  a configuration file or value is unusable
    │   └── PluginError                                  a plugin failed to load or raised
    ├── AbortedError                ABORTED              retryable: lost a race (CAS, lock)
    ├── ResourceExhaustedError      RESOURCE_EXHAUSTED   retryable: over a limit or quota
    ├── PermissionDeniedError       PERMISSION_DENIED
    ├── UnauthenticatedError        UNAUTHENTICATED
    ├── DeadlineExceededError       DEADLINE_EXCEEDED    retryable
    └── UnavailableError            UNAVAILABLE          retryable
        └── BackendError                                 etcd, redis, postgres, ... failed

The server kit maps these to gRPC statuses in one interceptor; `TesseraError.to_rpc_status` builds
the `google.rpc.Status` it sends (with `BadRequest` field violations, `ErrorInfo` and, when known,
`RetryInfo`). Anything that is not a `TesseraError` reaches clients as INTERNAL with a generic
message.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

#: `google.rpc.ErrorInfo.domain` of every error Tessera sends.
ERROR_DOMAIN = "tessera"


class TesseraError(Exception):
    """Base of every error Tessera raises on purpose.

    Args:
        message: What went wrong, for humans. Sent to clients as the status message, so it must not
            contain secrets or internals.
        retryable: Whether the same call may succeed later. Defaults to the class's `retryable`.
        retry_after_s: A hint, in seconds, of when a retry may succeed; sent as
            `google.rpc.RetryInfo` when the error is retryable.

    Attributes:
        code: The gRPC status code clients see (class attribute).
        message: The message given to the constructor.
        retryable: Whether the same call may succeed later.
        retry_after_s: The retry hint, or None.

    """

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only arguments, which Exception's default pickling (it replays
        # self.args positionally) cannot rebuild; Celery and multiprocessing pickle errors.
        return (_restore_error, (type(self), self.message, dict(self.__dict__)))

    def error_metadata(self) -> Mapping[str, str]:
        """Machine-readable facts about the error, sent as `google.rpc.ErrorInfo.metadata`.

        Returns:
            An empty mapping here; subclasses add their attributes (for example the backend name).

        """
        return {}

    def to_rpc_status(self) -> status_pb2.Status:
        """Build the `google.rpc.Status` that reports this error to a gRPC client.

        Returns:
            A status with this error's code and message, an `ErrorInfo` detail whose reason is the
            class name, and a `RetryInfo` detail when the error is retryable and has a retry hint.

        """
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        _pack(
            status,
            error_details_pb2.ErrorInfo(
                reason=type(self).__name__, domain=ERROR_DOMAIN, metadata=self.error_metadata()
            ),
        )
        if self.retryable and self.retry_after_s is not None:
            seconds = max(self.retry_after_s, 0.0)
            delay = duration_pb2.Duration(
                seconds=math.floor(seconds), nanos=round((seconds % 1) * 1e9) % 1_000_000_000
            )
            _pack(status, error_details_pb2.RetryInfo(retry_delay=delay))
        return status


def _pack(status: status_pb2.Status, detail: Any) -> None:
    packed = any_pb2.Any()
    packed.Pack(detail)
    status.details.append(packed)


def _restore_error(cls: type[TesseraError], message: str, state: dict[str, Any]) -> TesseraError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field of a request or configuration.

    Attributes:
        field: Path of the field, dotted for nested fields (`"limits.0.rate"`).
        description: Why the value is invalid, phrased as the rule it breaks
            (`"must be between 1 and 3600 seconds"`).

    """

    field: str
    description: str


class ValidationError(TesseraError):
    """Bad input; clients see INVALID_ARGUMENT with `google.rpc.BadRequest` field violations.

    Args:
        violations: Either a message with no field attached, or one or more `FieldViolation`.
        message: The status message; by default built from the violations.

    Attributes:
        violations: The invalid fields, possibly empty.

    Example:
        ``raise ValidationError.for_field("ttl", "must be between 1 and 3600 seconds")``

    """

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self,
        violations: str | FieldViolation | Iterable[FieldViolation],
        /,
        *,
        message: str | None = None,
    ) -> None:
        if isinstance(violations, str):
            found: tuple[FieldViolation, ...] = ()
            message = violations if message is None else message
        else:
            found = (violations,) if isinstance(violations, FieldViolation) else tuple(violations)
            if not found:
                raise ValueError("ValidationError needs a message or at least one FieldViolation")
            if message is None:
                message = "invalid " + "; ".join(f"{v.field}: {v.description}" for v in found)
        super().__init__(message, retryable=False)
        self.violations = found

    @classmethod
    def for_field(cls, field: str, description: str) -> Self:
        """Build the error for one invalid field.

        Args:
            field: Path of the field.
            description: The rule the value breaks.

        Returns:
            A ValidationError with that single violation.

        """
        return cls(FieldViolation(field, description))

    def to_rpc_status(self) -> status_pb2.Status:
        """Build the status, adding a `google.rpc.BadRequest` with one entry per violation."""
        status = super().to_rpc_status()
        if self.violations:
            _pack(
                status,
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in self.violations
                    ]
                ),
            )
        return status


class NotFoundError(TesseraError):
    """The named entity does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(TesseraError):
    """The entity to create exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(TesseraError):
    """The system is not in a state that allows the operation; retrying unchanged will not help."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ConfigError(FailedPreconditionError):
    """A configuration file or value is unusable.

    Configuration that arrives in a request and fails validation raises `ValidationError` instead,
    so the client sees INVALID_ARGUMENT with the fields named.

    Args:
        message: What is wrong; names the setting, file or key.
        source: Where the configuration came from (a file path, an etcd key, `"environment"`).

    """

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(message, retryable=False)
        self.source = source

    def error_metadata(self) -> Mapping[str, str]:
        """Add the configuration source, when known."""
        return {} if self.source is None else {"source": self.source}


class PluginError(FailedPreconditionError):
    """A plugin failed to load or raised; the other plugins keep working.

    Args:
        message: What went wrong.
        plugin: The entry-point name of the plugin.
        group: The entry-point group (the plugin family), for example `"tessera.limiters"`.

    """

    def __init__(self, message: str, *, plugin: str, group: str) -> None:
        super().__init__(message, retryable=False)
        self.plugin = plugin
        self.group = group

    def error_metadata(self) -> Mapping[str, str]:
        """Add the plugin and its group."""
        return {"plugin": self.plugin, "group": self.group}


class AbortedError(TesseraError):
    """The operation lost a race (a compare-and-swap, a lock); retrying the sequence may work."""

    code = grpc.StatusCode.ABORTED
    retryable = True


class ResourceExhaustedError(TesseraError):
    """A limit or quota is exhausted; retrying after `retry_after_s` may work."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    retryable = True


class PermissionDeniedError(TesseraError):
    """The caller is known but may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class UnauthenticatedError(TesseraError):
    """The caller did not prove who it is (missing or invalid credentials)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class DeadlineExceededError(TesseraError):
    """The operation did not finish in time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    retryable = True


class UnavailableError(TesseraError):
    """The service cannot answer now (shutting down, overloaded); retrying may work."""

    code = grpc.StatusCode.UNAVAILABLE
    retryable = True


class BackendError(UnavailableError):
    """A backend (etcd, redis, postgres, zookeeper, ...) failed or is unreachable.

    Args:
        message: What failed; never the backend's credentials.
        backend: Which backend, for example `"etcd"`.
        retryable: Defaults to True: backend failures are usually transient.
        retry_after_s: A retry hint in seconds, if known.

    """

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        retryable: bool | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, retry_after_s=retry_after_s)
        self.backend = backend

    def error_metadata(self) -> Mapping[str, str]:
        """Add the backend name."""
        return {"backend": self.backend}

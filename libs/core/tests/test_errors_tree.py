import pickle

import grpc
import pytest
from google.rpc import error_details_pb2

import tessera.core
from tessera.core import (
    AbortedError,
    AlreadyExistsError,
    BackendError,
    ConfigError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    PluginError,
    ResourceExhaustedError,
    TesseraError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)


def _details(status, kind):
    found = []
    for detail in status.details:
        message = kind()
        if detail.Unpack(message):
            found.append(message)
    return found


@pytest.mark.parametrize(
    ("error", "code", "retryable"),
    [
        (ValidationError("bad"), grpc.StatusCode.INVALID_ARGUMENT, False),
        (NotFoundError("x"), grpc.StatusCode.NOT_FOUND, False),
        (AlreadyExistsError("x"), grpc.StatusCode.ALREADY_EXISTS, False),
        (FailedPreconditionError("x"), grpc.StatusCode.FAILED_PRECONDITION, False),
        (ConfigError("x"), grpc.StatusCode.FAILED_PRECONDITION, False),
        (PluginError("x", plugin="p", group="g"), grpc.StatusCode.FAILED_PRECONDITION, False),
        (AbortedError("x"), grpc.StatusCode.ABORTED, True),
        (ResourceExhaustedError("x"), grpc.StatusCode.RESOURCE_EXHAUSTED, True),
        (PermissionDeniedError("x"), grpc.StatusCode.PERMISSION_DENIED, False),
        (UnauthenticatedError("x"), grpc.StatusCode.UNAUTHENTICATED, False),
        (DeadlineExceededError("x"), grpc.StatusCode.DEADLINE_EXCEEDED, True),
        (UnavailableError("x"), grpc.StatusCode.UNAVAILABLE, True),
        (BackendError("x", backend="etcd"), grpc.StatusCode.UNAVAILABLE, True),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, TesseraError) else None,
)
def test_each_error_carries_its_status_code_and_retryability(error, code, retryable):
    assert isinstance(error, TesseraError)
    assert error.code is code
    assert error.retryable is retryable
    assert error.to_rpc_status().code == code.value[0]


def test_retryable_can_be_overridden_per_instance():
    assert UnavailableError("x", retryable=False).retryable is False
    assert NotFoundError("x", retryable=True).retryable is True
    assert BackendError("x", backend="redis", retryable=False).retryable is False
    assert UnavailableError("x").retryable is True  # the class default is untouched


def test_backend_and_plugin_errors_keep_their_subject():
    backend = BackendError("etcd unreachable", backend="etcd")
    assert isinstance(backend, UnavailableError)
    assert backend.backend == "etcd"
    plugin = PluginError("import failed", plugin="gcra", group="tessera.limiters")
    assert isinstance(plugin, FailedPreconditionError)
    assert (plugin.plugin, plugin.group) == ("gcra", "tessera.limiters")
    assert str(plugin) == "import failed"


def test_validation_error_for_field_names_the_field():
    error = ValidationError.for_field("ttl", "must be between 1 and 3600 seconds")
    assert error.violations == (FieldViolation("ttl", "must be between 1 and 3600 seconds"),)
    assert error.message == "invalid ttl: must be between 1 and 3600 seconds"
    assert error.retryable is False


def test_validation_error_accepts_many_violations_or_a_plain_message():
    error = ValidationError(
        [FieldViolation("a", "must be set"), FieldViolation("b.0", "must be positive")]
    )
    assert [v.field for v in error.violations] == ["a", "b.0"]
    assert error.message == "invalid a: must be set; b.0: must be positive"
    plain = ValidationError("request is empty")
    assert plain.violations == ()
    assert plain.message == "request is empty"
    custom = ValidationError(FieldViolation("a", "must be set"), message="bad limit")
    assert custom.message == "bad limit"
    with pytest.raises(ValueError, match="at least one FieldViolation"):
        ValidationError([])


def test_validation_status_carries_bad_request_field_violations():
    status = ValidationError(
        [FieldViolation("ttl", "must be positive"), FieldViolation("name", "must be set")]
    ).to_rpc_status()
    (bad_request,) = _details(status, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("ttl", "must be positive"),
        ("name", "must be set"),
    ]
    (info,) = _details(status, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("ValidationError", "tessera")


def test_retryable_errors_with_a_hint_carry_retry_info():
    status = ResourceExhaustedError("over limit", retry_after_s=1.25).to_rpc_status()
    (retry,) = _details(status, error_details_pb2.RetryInfo)
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (1, 250_000_000)
    not_retryable = ResourceExhaustedError("quota gone", retryable=False, retry_after_s=5)
    assert _details(not_retryable.to_rpc_status(), error_details_pb2.RetryInfo) == []
    assert _details(AbortedError("lost race").to_rpc_status(), error_details_pb2.RetryInfo) == []


def test_error_info_metadata_names_backend_plugin_and_config_source():
    (info,) = _details(
        BackendError("down", backend="redis").to_rpc_status(), error_details_pb2.ErrorInfo
    )
    assert dict(info.metadata) == {"backend": "redis"}
    plugin_status = PluginError("x", plugin="maglev", group="tessera.balancers").to_rpc_status()
    (info,) = _details(plugin_status, error_details_pb2.ErrorInfo)
    assert dict(info.metadata) == {"plugin": "maglev", "group": "tessera.balancers"}
    (info,) = _details(
        ConfigError("bad", source="rules.yaml").to_rpc_status(), error_details_pb2.ErrorInfo
    )
    assert dict(info.metadata) == {"source": "rules.yaml"}


@pytest.mark.parametrize(
    "error",
    [
        BackendError("etcd down", backend="etcd", retry_after_s=2.0),
        PluginError("boom", plugin="gcra", group="tessera.limiters"),
        ValidationError.for_field("ttl", "must be positive"),
        UnavailableError("draining", retryable=False),
    ],
    ids=lambda error: type(error).__name__,
)
def test_errors_survive_pickling_with_their_attributes(error):
    # Celery and multiprocessing pickle exceptions; keyword-only constructors must not break that.
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.__dict__ == error.__dict__
    assert str(copy) == str(error)


def _isort_style(name):
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_root_package_exports_a_sorted_all():
    assert tessera.core.__all__ == sorted(tessera.core.__all__, key=_isort_style)
    for name in tessera.core.__all__:
        assert hasattr(tessera.core, name), name

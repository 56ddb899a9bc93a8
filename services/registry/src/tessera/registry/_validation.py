from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Collection

from tessera.core import FieldViolation, ValidationError
from tessera.proto.registry.v1 import registry_pb2
from tessera.registry._keys import ServiceName

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,62}$")

#: Largest metadata map: entries, and bytes of keys and values together.
MAX_METADATA_ENTRIES = 64
MAX_METADATA_BYTES = 4096
MAX_TAGS = 64
MAX_WEIGHT = 10_000.0
MAX_PROBE_TIMEOUT_S = 60.0
MAX_PROBE_STREAK = 100


def service_name(namespace: str, service: str, *, prefix: str = "") -> ServiceName:
    """Validate a namespace and service name.

    Raises:
        ValidationError: Naming `<prefix>namespace` and/or `<prefix>service`.

    """
    violations = [
        FieldViolation(f"{prefix}{field}", _name_rule(value))
        for field, value in (("namespace", namespace), ("service", service))
        if not _NAME.match(value)
    ]
    if violations:
        raise ValidationError(violations)
    return ServiceName(namespace, service)


def namespace(value: str) -> str:
    """Validate a namespace on its own.

    Raises:
        ValidationError: Naming `namespace`.

    """
    if not _NAME.match(value):
        raise ValidationError.for_field("namespace", _name_rule(value))
    return value


def instance_ref(ref: registry_pb2.InstanceRef, *, prefix: str = "instance.") -> ServiceName:
    """Validate a reference to one instance.

    Raises:
        ValidationError: Naming the bad fields under `prefix`.

    """
    name = service_name(ref.namespace, ref.service, prefix=prefix)
    if not _ID.match(ref.id):
        raise ValidationError.for_field(f"{prefix}id", _id_rule(ref.id))
    return name


def registration(
    instance: registry_pb2.Instance, health_checks: Collection[str] = ()
) -> ServiceName:
    """Validate an instance given to Register (every violation at once).

    Fields the registry sets itself (`healthy`, `revision`, `owner`) are not checked: Register
    overwrites them.

    Args:
        instance: The instance.
        health_checks: Names of the installed health-check plugins.

    Raises:
        ValidationError: Naming each bad field as `instance.<field>`.

    """
    violations = []
    for field, value in (("namespace", instance.namespace), ("service", instance.service)):
        if not _NAME.match(value):
            violations.append(FieldViolation(f"instance.{field}", _name_rule(value)))
    if instance.id and not _ID.match(instance.id):
        violations.append(FieldViolation("instance.id", _id_rule(instance.id)))
    if not _is_host(instance.host):
        violations.append(
            FieldViolation("instance.host", "must be an IP address or a DNS host name")
        )
    if not 1 <= instance.port <= 65535:
        violations.append(FieldViolation("instance.port", "must be between 1 and 65535"))
    weight = instance.weight
    if not math.isfinite(weight) or weight < 0 or weight > MAX_WEIGHT:
        violations.append(
            FieldViolation("instance.weight", f"must be > 0 and <= {MAX_WEIGHT:g} (0 means 1)")
        )
    violations.extend(_metadata_violations(instance))
    if len(instance.tags) > MAX_TAGS or any(not 0 < len(tag) <= 128 for tag in instance.tags):
        violations.append(
            FieldViolation("instance.tags", f"at most {MAX_TAGS} tags of 1 to 128 characters")
        )
    if instance.status not in registry_pb2.ServingStatus.values():
        violations.append(FieldViolation("instance.status", "unknown serving status"))
    violations.extend(_health_check_violations(instance.health_check, health_checks))
    if violations:
        raise ValidationError(violations)
    return ServiceName(instance.namespace, instance.service)


def threshold(value: float, *, field: str = "protect_threshold") -> float:
    """Validate a protection threshold (0 to 1).

    Raises:
        ValidationError: Naming `field`.

    """
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise ValidationError.for_field(field, "must be between 0 and 1")
    return value


def _health_check_violations(
    spec: registry_pb2.HealthCheckSpec, installed: Collection[str]
) -> list[FieldViolation]:
    if not spec.kind:
        return []
    violations = []
    if spec.kind not in installed:
        known = ", ".join(sorted(installed)) or "none"
        violations.append(
            FieldViolation(
                "instance.health_check.kind",
                f"unknown health check {spec.kind!r} (installed: {known})",
            )
        )
    if not math.isfinite(spec.timeout_s) or not 0 <= spec.timeout_s <= MAX_PROBE_TIMEOUT_S:
        violations.append(
            FieldViolation(
                "instance.health_check.timeout_s", f"must be 0 to {MAX_PROBE_TIMEOUT_S:g} seconds"
            )
        )
    for field in ("successes_before_passing", "failures_before_critical"):
        if getattr(spec, field) > MAX_PROBE_STREAK:
            violations.append(
                FieldViolation(f"instance.health_check.{field}", f"at most {MAX_PROBE_STREAK}")
            )
    return violations


def _metadata_violations(instance: registry_pb2.Instance) -> list[FieldViolation]:
    metadata = instance.metadata
    size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if len(metadata) > MAX_METADATA_ENTRIES or size > MAX_METADATA_BYTES:
        return [
            FieldViolation(
                "instance.metadata",
                f"at most {MAX_METADATA_ENTRIES} entries and {MAX_METADATA_BYTES} bytes",
            )
        ]
    bad = sorted(key for key in metadata if not _LABEL_KEY.match(key))
    if bad:
        return [FieldViolation(f"instance.metadata[{bad[0]}]", "keys are label names")]
    return []


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME.match(host)) and not host.replace(".", "").isdigit()
    return True


def _name_rule(value: str) -> str:
    if not value:
        return "must not be empty"
    return "must be 1 to 63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"


def _id_rule(value: str) -> str:
    if not value:
        return "must not be empty"
    return "must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', ':', '-'"

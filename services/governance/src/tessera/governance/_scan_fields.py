"""What a scan checks on each field of a contract, computed column by column on a chunk."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# pyarrow ships no type information (no py.typed marker, no stubs package used here).
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from tessera.core import ValidationError

# JSON types as text (CSV cells): what a cell must look like to be a value of the type.
TEXT_PATTERNS = {
    "integer": r"^[-+]?\d+$",
    "number": r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$",
    "boolean": r"^(?i:true|false)$",
}
DATE_TIME = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[-+]\d{2}:?\d{2})?$"
_JSON_TYPES = ("string", "integer", "number", "boolean", "object", "array", "null")


@dataclass(frozen=True, slots=True)
class FieldCheck:
    """The checks a contract property implies.

    Attributes:
        name: The property.
        required: Listed in the schema's `required`.
        types: Allowed JSON types other than null; empty allows any.
        nullable: Whether null is allowed (`type` lists "null", or no `type`).
        enum: Allowed values as text (JSON text for non-strings), or None.
        pattern: Regular expression (RE2 syntax) string values must match, or None.
        date_time: `format: date-time`: strings must be RFC 3339 timestamps.

    """

    name: str
    required: bool
    types: frozenset[str]
    nullable: bool
    enum: tuple[str, ...] | None
    pattern: str | None
    date_time: bool

    def text_valid(self, text: pa.Array) -> pa.Array:
        """Return, per non-null cell of `text`, whether it is a valid value of the field.

        For data that arrives as text (CSV cells): a cell is valid when it reads as one of the
        allowed types and satisfies enum, pattern and format.
        """
        valid = _any_type(text, self.types)
        return pc.and_(valid, self._value_checks(text))

    def typed_valid(self, values: pa.Array) -> pa.Array:
        """Return, per non-null value of a typed column (Parquet), whether it is valid."""
        type_ok = _arrow_type_fits(values.type, self.types)
        if not type_ok:
            return pa.repeat(pa.scalar(False), len(values))
        return self._value_checks(as_text(values))

    def python_valid(self, values: Sequence[Any]) -> pa.Array:
        """Return, per present non-null Python value (JSON Lines), whether it is valid."""
        type_ok = pa.array([_python_type_fits(value, self.types) for value in values], pa.bool_())
        texts = pa.array([python_text(value) for value in values], pa.string())
        return pc.and_(type_ok, self._value_checks(texts))

    def _value_checks(self, text: pa.Array) -> pa.Array:
        valid = pa.repeat(pa.scalar(True), len(text))
        if self.enum is not None:
            valid = pc.and_(valid, pc.is_in(text, value_set=pa.array(self.enum, pa.string())))
        if self.pattern is not None:
            valid = pc.and_(valid, pc.match_substring_regex(text, self.pattern))
        if self.date_time:
            valid = pc.and_(valid, pc.match_substring_regex(text, DATE_TIME))
        return valid


def field_checks(schema: object) -> list[FieldCheck]:
    """Derive the field checks of a contract's top-level properties, in declaration order.

    Raises:
        ValidationError: Naming `subject`: the schema declares no properties, or a `pattern` is
            not valid RE2 syntax (the dialect scans run).

    """
    if not isinstance(schema, Mapping) or not isinstance(schema.get("properties"), Mapping):
        raise ValidationError.for_field("subject", "the contract declares no top-level properties")
    required = set(schema.get("required", ()))
    checks = []
    for name, prop in schema["properties"].items():
        prop = prop if isinstance(prop, Mapping) else {}
        declared = prop.get("type", ())
        types = {declared} if isinstance(declared, str) else set(declared)
        nullable = not types or "null" in types
        types.discard("null")
        enum = prop.get("enum")
        pattern = prop.get("pattern")
        check = FieldCheck(
            name=name,
            required=name in required,
            types=frozenset(types & set(_JSON_TYPES)),
            nullable=nullable or (enum is not None and None in enum),
            enum=None
            if enum is None
            else tuple(str(python_text(v)) for v in enum if v is not None),
            pattern=pattern if isinstance(pattern, str) else None,
            date_time=prop.get("format") == "date-time",
        )
        if check.pattern is not None:
            try:
                pc.match_substring_regex(pa.array([""]), check.pattern)
            except pa.ArrowInvalid as error:
                raise ValidationError.for_field(
                    "subject", f"pattern of property '{name}' is not RE2 syntax: {error}"
                ) from None
        checks.append(check)
    return checks


def as_text(values: pa.Array) -> pa.Array:
    """Return a column as text, the form enum, pattern, uniqueness and keys compare."""
    return values if pa.types.is_string(values.type) else pc.cast(values, pa.string())


def python_text(value: object) -> str | None:
    """Return a JSON value as text: strings as they are, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def _any_type(text: pa.Array, types: frozenset[str]) -> pa.Array:
    if not types or types & {"string", "object", "array"}:
        return pa.repeat(pa.scalar(True), len(text))
    valid: pa.Array | None = None
    for name in sorted(types):
        matches = pc.match_substring_regex(text, TEXT_PATTERNS[name])
        valid = matches if valid is None else pc.or_(valid, matches)
    assert valid is not None  # types is not empty here
    return valid


def _arrow_type_fits(kind: pa.DataType, types: frozenset[str]) -> bool:
    if not types:
        return True
    if pa.types.is_integer(kind):
        return bool(types & {"integer", "number"})
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number" in types
    if pa.types.is_boolean(kind):
        return "boolean" in types
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return "string" in types
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string" in types
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return "array" in types
    if pa.types.is_struct(kind) or pa.types.is_map(kind):
        return "object" in types
    return False


def _python_type_fits(value: object, types: frozenset[str]) -> bool:
    if not types:
        return True
    if isinstance(value, bool):
        return "boolean" in types
    if isinstance(value, int):
        return bool(types & {"integer", "number"})
    if isinstance(value, float):
        return "number" in types or ("integer" in types and value.is_integer())
    if isinstance(value, str):
        return "string" in types
    if isinstance(value, list):
        return "array" in types
    if isinstance(value, dict):
        return "object" in types
    return False

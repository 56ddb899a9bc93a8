"""Naming-and-structure standards and the linter that checks schemas against them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from tessera.core import ValidationError
from tessera.governance._schema import pointer_segment

JSON_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
_NESTED = ("items", "additionalProperties", "not", "if", "then", "else", "contains")
_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_DEFINITIONS = ("$defs", "definitions")


@dataclass(frozen=True, slots=True)
class RequiredField:
    """A field every schema under a standard must declare and require.

    Attributes:
        name: The property name.
        type: The JSON type it must have; empty for any.
        format: The `format` it must have; empty for any.

    """

    name: str
    type: str = ""
    format: str = ""


@dataclass(frozen=True, slots=True)
class LintViolation:
    """One way a schema breaks a standard.

    Attributes:
        path: JSON Pointer into the schema.
        rule: `ENTITY_NAME`, `FIELD_NAME`, `RESERVED_WORD`, `TYPE_NOT_ALLOWED`,
            `REQUIRED_FIELD_MISSING`, `REQUIRED_FIELD_OPTIONAL`, `REQUIRED_FIELD_TYPE` or
            `REQUIRED_FIELD_FORMAT`.
        message: For people.

    """

    path: str
    rule: str
    message: str


@dataclass(frozen=True)
class Standard:
    """One version of a naming-and-structure standard (the JSON value of its etcd key).

    Attributes:
        name: The standard's name.
        version: 1, 2, ... (0 before the store allocates it).
        description: Free text.
        entity_pattern: Regular expression the schema `title` and `$defs` names must match in
            whole; empty for no rule.
        field_pattern: Regular expression every property name must match in whole.
        reserved_words: Property names that may not be used, case-insensitively.
        required_fields: Fields the top-level object must declare and require.
        allowed_types: JSON types properties may have; empty for all.

    Raises:
        ValidationError: From the constructor: a pattern that does not compile
            (`standard.entity_pattern`, `standard.field_pattern`), an unknown type
            (`standard.allowed_types`, `standard.required_fields[i].type`) or an unnamed
            required field.

    """

    name: str
    version: int
    description: str = ""
    entity_pattern: str = ""
    field_pattern: str = ""
    reserved_words: tuple[str, ...] = ()
    required_fields: tuple[RequiredField, ...] = ()
    allowed_types: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _ = self._entity_regex, self._field_regex  # compile now: errors name the field
        for kind in self.allowed_types:
            if kind not in JSON_TYPES:
                raise ValidationError.for_field(
                    "standard.allowed_types", f"'{kind}' is not a JSON type"
                )
        for index, required in enumerate(self.required_fields):
            if not required.name:
                raise ValidationError.for_field(
                    f"standard.required_fields[{index}].name", "must not be empty"
                )
            if required.type and required.type not in JSON_TYPES:
                raise ValidationError.for_field(
                    f"standard.required_fields[{index}].type",
                    f"'{required.type}' is not a JSON type",
                )

    @cached_property
    def _entity_regex(self) -> re.Pattern[str] | None:
        return _compile("standard.entity_pattern", self.entity_pattern)

    @cached_property
    def _field_regex(self) -> re.Pattern[str] | None:
        return _compile("standard.field_pattern", self.field_pattern)

    @cached_property
    def _reserved(self) -> frozenset[str]:
        return frozenset(word.lower() for word in self.reserved_words)

    def to_json(self) -> bytes:
        """Encode for etcd."""
        return json.dumps(
            {
                "name": self.name,
                "version": self.version,
                "description": self.description,
                "entity_pattern": self.entity_pattern,
                "field_pattern": self.field_pattern,
                "reserved_words": list(self.reserved_words),
                "required_fields": [asdict(required) for required in self.required_fields],
                "allowed_types": list(self.allowed_types),
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Standard:
        """Decode what `to_json` wrote."""
        value: dict[str, Any] = json.loads(raw)
        return cls(
            name=value["name"],
            version=value["version"],
            description=value["description"],
            entity_pattern=value["entity_pattern"],
            field_pattern=value["field_pattern"],
            reserved_words=tuple(value["reserved_words"]),
            required_fields=tuple(RequiredField(**item) for item in value["required_fields"]),
            allowed_types=tuple(value["allowed_types"]),
        )

    def lint(self, schema: Mapping[str, Any] | bool) -> list[LintViolation]:
        """List every way `schema` breaks this standard, in schema order.

        Walks the whole schema: properties, items, additionalProperties, combinators and
        definitions, at any depth.
        """
        if not isinstance(schema, Mapping):
            return []
        found = list(self._required_fields(schema))
        if self._entity_regex is not None and schema.get("type") == "object":
            title = schema.get("title")
            if not isinstance(title, str) or not self._entity_regex.fullmatch(title):
                found.append(
                    LintViolation(
                        "/title",
                        "ENTITY_NAME",
                        f"entity name {title!r} does not match {self.entity_pattern!r}",
                    )
                )
        found.extend(self._walk(schema, ""))
        return found

    def _required_fields(self, schema: Mapping[str, Any]) -> Iterator[LintViolation]:
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        for wanted in self.required_fields:
            where = f"/properties/{pointer_segment(wanted.name)}"
            declared = properties.get(wanted.name)
            if not isinstance(declared, Mapping):
                yield LintViolation(
                    where, "REQUIRED_FIELD_MISSING", f"the standard requires field '{wanted.name}'"
                )
                continue
            if wanted.name not in required:
                yield LintViolation(
                    "/required",
                    "REQUIRED_FIELD_OPTIONAL",
                    f"field '{wanted.name}' must be listed in 'required'",
                )
            if wanted.type and declared.get("type") != wanted.type:
                yield LintViolation(
                    f"{where}/type",
                    "REQUIRED_FIELD_TYPE",
                    f"field '{wanted.name}' must have type '{wanted.type}'",
                )
            if wanted.format and declared.get("format") != wanted.format:
                yield LintViolation(
                    f"{where}/format",
                    "REQUIRED_FIELD_FORMAT",
                    f"field '{wanted.name}' must have format '{wanted.format}'",
                )

    def _walk(self, schema: Any, path: str) -> Iterator[LintViolation]:
        if not isinstance(schema, Mapping):
            return
        for name, child in schema.get("properties", {}).items():
            where = f"{path}/properties/{pointer_segment(name)}"
            if self._field_regex is not None and not self._field_regex.fullmatch(name):
                yield LintViolation(
                    where, "FIELD_NAME", f"field '{name}' does not match {self.field_pattern!r}"
                )
            if name.lower() in self._reserved:
                yield LintViolation(where, "RESERVED_WORD", f"field '{name}' is a reserved word")
            if self.allowed_types and isinstance(child, Mapping) and "type" in child:
                declared = child["type"]
                for kind in [declared] if isinstance(declared, str) else declared:
                    if kind not in self.allowed_types:
                        yield LintViolation(
                            f"{where}/type",
                            "TYPE_NOT_ALLOWED",
                            f"type '{kind}' of field '{name}' is not allowed by the standard",
                        )
            yield from self._walk(child, where)
        for keyword in _NESTED:
            yield from self._walk(schema.get(keyword), f"{path}/{keyword}")
        for keyword in _LISTS:
            for index, child in enumerate(schema.get(keyword, ())):
                yield from self._walk(child, f"{path}/{keyword}/{index}")
        for keyword in _DEFINITIONS:
            for name, child in schema.get(keyword, {}).items():
                where = f"{path}/{keyword}/{pointer_segment(name)}"
                if self._entity_regex is not None and not self._entity_regex.fullmatch(name):
                    yield LintViolation(
                        where,
                        "ENTITY_NAME",
                        f"entity name '{name}' does not match {self.entity_pattern!r}",
                    )
                yield from self._walk(child, where)


def _compile(field_name: str, pattern: str) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValidationError.for_field(
            field_name, f"is not a regular expression: {error}"
        ) from None

"""Reader/writer compatibility of JSON Schema documents, with Schema Registry semantics.

A *reader* schema can read a *writer* schema when every document the writer accepts, the reader
accepts too. BACKWARD compatibility of a new version means the new schema (reader) can read data
written with the old one (writer); FORWARD swaps the roles; FULL asks for both.

The check is structural and conservative, in the manner of Confluent's JSON Schema checker: it
compares keyword by keyword and reports a change it cannot prove safe (a changed `pattern`, a
changed combinator) as an incompatibility rather than guessing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tessera.governance._schema import pointer_segment

_COMBINATORS = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$ref")


class Direction(StrEnum):
    """Which way a reason was found: the new schema reading old data, or the reverse."""

    BACKWARD = "BACKWARD"
    FORWARD = "FORWARD"


class CompatibilityMode(StrEnum):
    """How the versions of a subject must relate (the Schema Registry modes)."""

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @property
    def transitive(self) -> bool:
        """Whether the new version is checked against every earlier version, not the latest."""
        return self.name.endswith("_TRANSITIVE")

    @property
    def directions(self) -> tuple[Direction, ...]:
        """The directions the mode checks."""
        if self is CompatibilityMode.NONE:
            return ()
        if self.name.startswith("BACKWARD"):
            return (Direction.BACKWARD,)
        if self.name.startswith("FORWARD"):
            return (Direction.FORWARD,)
        return (Direction.BACKWARD, Direction.FORWARD)


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One reason why a reader schema cannot read what a writer schema allows.

    Attributes:
        path: JSON Pointer to the keyword that differs (`/properties/age/type`).
        kind: Machine-readable kind (`TYPE_NARROWED`, `REQUIRED_PROPERTY_ADDED`, ...).
        reason: What changed, for people.
        against_version: The version compared with (0 when comparing two bare schemas).
        direction: Which schema was the reader.

    """

    path: str
    kind: str
    reason: str
    against_version: int = 0
    direction: Direction = Direction.BACKWARD


def check_compatibility(
    schema: Mapping[str, Any] | bool,
    previous: Sequence[tuple[int, Mapping[str, Any] | bool]],
    mode: CompatibilityMode,
) -> list[Incompatibility]:
    """Check a new schema against a subject's earlier versions under a compatibility mode.

    Args:
        schema: The new schema.
        previous: `(version, schema)` of the stored versions, oldest first.
        mode: The subject's mode; transitive modes compare with every version, the others with
            the latest only.

    Returns:
        Every incompatibility found, tagged with the version and direction; empty when the new
        schema may be stored.

    """
    if not previous or mode is CompatibilityMode.NONE:
        return []
    targets = previous if mode.transitive else previous[-1:]
    found: list[Incompatibility] = []
    for version, old in targets:
        for direction in mode.directions:
            reader, writer = (schema, old) if direction is Direction.BACKWARD else (old, schema)
            found.extend(
                Incompatibility(
                    path=item.path,
                    kind=item.kind,
                    reason=item.reason,
                    against_version=version,
                    direction=direction,
                )
                for item in reader_incompatibilities(reader, writer)
            )
    return found


def reader_incompatibilities(
    reader: Mapping[str, Any] | bool, writer: Mapping[str, Any] | bool
) -> list[Incompatibility]:
    """List why `reader` cannot read every document `writer` accepts.

    Args:
        reader: The schema that reads the data.
        writer: The schema the data was written with.

    Returns:
        The incompatibilities, in schema order; empty when the reader reads everything.

    """
    return list(_compare(reader, writer, ""))


def _compare(reader: Any, writer: Any, path: str) -> Iterator[Incompatibility]:
    if reader is True or reader == {}:
        return
    if writer is False:
        return
    if reader is False:
        yield Incompatibility(path or "/", "SCHEMA_CLOSED", "the reader accepts no document")
        return
    if writer is True:
        writer = {}
    yield from _compare_combinators(reader, writer, path)
    yield from _compare_types(reader, writer, path)
    yield from _compare_enum(reader, writer, path)
    yield from _compare_bounds(reader, writer, path)
    yield from _compare_strings(reader, writer, path)
    yield from _compare_arrays(reader, writer, path)
    yield from _compare_objects(reader, writer, path)


def _compare_combinators(
    reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
) -> Iterator[Incompatibility]:
    # Deciding inclusion between arbitrary combinations is undecidable in general; like the
    # Schema Registry checker without its combinator heuristics, an unchanged combinator is
    # accepted and any other change is reported.
    for keyword in _COMBINATORS:
        if keyword in reader and _canonical(reader[keyword]) != _canonical(writer.get(keyword)):
            yield Incompatibility(
                f"{path}/{pointer_segment(keyword)}",
                "COMBINED_SCHEMA_CHANGED",
                f"'{keyword}' was added or changed; only an unchanged '{keyword}' is "
                "known to read the same data",
            )


def _types(schema: Mapping[str, Any]) -> set[str] | None:
    declared = schema.get("type")
    if declared is None:
        if "enum" in schema:
            return {_json_type(value) for value in schema["enum"]}
        if "const" in schema:
            return {_json_type(schema["const"])}
        return None
    return {declared} if isinstance(declared, str) else set(declared)


def _compare_types(
    reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
) -> Iterator[Incompatibility]:
    accepted = _types(reader)
    if accepted is None or "type" not in reader:
        return
    written = _types(writer)
    if written is None:
        yield Incompatibility(
            f"{path}/type",
            "TYPE_NARROWED",
            f"the writer allows any type; the reader only {_listing(accepted)}",
        )
        return
    if "number" in accepted:
        accepted = accepted | {"integer"}  # every integer is a number
    missing = written - accepted
    if missing:
        yield Incompatibility(
            f"{path}/type",
            "TYPE_NARROWED",
            f"the writer allows {_listing(missing)}, which the reader "
            f"({_listing(accepted)}) does not",
        )


def _compare_enum(
    reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
) -> Iterator[Incompatibility]:
    for keyword in ("enum", "const"):
        if keyword not in reader:
            continue
        allowed = (
            {_canonical(value) for value in reader["enum"]}
            if keyword == "enum"
            else {_canonical(reader["const"])}
        )
        if "enum" in writer:
            written = {_canonical(value) for value in writer["enum"]}
        elif "const" in writer:
            written = {_canonical(writer["const"])}
        else:
            yield Incompatibility(
                f"{path}/{keyword}",
                f"{keyword.upper()}_ADDED",
                f"the reader restricts values with '{keyword}'; the writer does not",
            )
            continue
        removed = sorted(written - allowed)
        if removed:
            yield Incompatibility(
                f"{path}/{keyword}",
                "ENUM_VALUES_REMOVED",
                f"values {', '.join(removed)} are allowed by the writer, not by the reader",
            )


# keyword -> True when a larger reader value is stricter (a lower bound).
_BOUNDS: Mapping[str, bool] = {
    "minimum": True,
    "exclusiveMinimum": True,
    "minLength": True,
    "minItems": True,
    "minProperties": True,
    "maximum": False,
    "exclusiveMaximum": False,
    "maxLength": False,
    "maxItems": False,
    "maxProperties": False,
}


def _compare_bounds(
    reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
) -> Iterator[Incompatibility]:
    for keyword, lower in _BOUNDS.items():
        limit = reader.get(keyword)
        if not isinstance(limit, int | float) or isinstance(limit, bool):
            continue
        written = writer.get(keyword)
        if written is None:
            yield Incompatibility(
                f"{path}/{keyword}", "BOUND_ADDED", f"the reader adds {keyword} {limit}"
            )
        elif (written < limit) if lower else (written > limit):
            yield Incompatibility(
                f"{path}/{keyword}",
                "BOUND_TIGHTENED",
                f"{keyword} went from {written} to {limit}",
            )
    factor = reader.get("multipleOf")
    if factor is not None:
        written = writer.get("multipleOf")
        if written is None or written % factor != 0:
            yield Incompatibility(
                f"{path}/multipleOf",
                "MULTIPLE_OF_CHANGED",
                f"the writer's values need not be multiples of {factor}",
            )


def _compare_strings(
    reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
) -> Iterator[Incompatibility]:
    for keyword in ("pattern", "format", "contentEncoding", "contentMediaType"):
        if keyword in reader and reader[keyword] != writer.get(keyword):
            change = "added" if keyword not in writer else "changed"
            yield Incompatibility(
                f"{path}/{keyword}",
                f"{keyword.upper()}_{change.upper()}",
                f"{keyword} {change} to {reader[keyword]!r}",
            )


def _compare_arrays(
    reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
) -> Iterator[Incompatibility]:
    if reader.get("uniqueItems") is True and writer.get("uniqueItems") is not True:
        yield Incompatibility(
            f"{path}/uniqueItems", "UNIQUE_ITEMS_ADDED", "the reader requires unique items"
        )
    if "items" in reader:
        yield from _compare(reader["items"], writer.get("items", True), f"{path}/items")


def _open_content(schema: Mapping[str, Any]) -> Any:
    """Return the schema that properties not named in `properties` must satisfy."""
    return schema.get("additionalProperties", True)


def _compare_objects(
    reader: Mapping[str, Any], writer: Mapping[str, Any], path: str
) -> Iterator[Incompatibility]:
    required_before = set(writer.get("required", ()))
    for name in reader.get("required", ()):
        if name not in required_before:
            yield Incompatibility(
                f"{path}/required",
                "REQUIRED_PROPERTY_ADDED",
                f"property '{name}' became required; data written before may lack it",
            )
    read_props: Mapping[str, Any] = reader.get("properties", {})
    written_props: Mapping[str, Any] = writer.get("properties", {})
    reader_rest, writer_rest = _open_content(reader), _open_content(writer)
    for name, written in written_props.items():
        where = f"{path}/properties/{pointer_segment(name)}"
        if name in read_props:
            yield from _compare(read_props[name], written, where)
        elif reader_rest is False:
            yield Incompatibility(
                where,
                "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                f"property '{name}' was removed and the reader allows no other properties",
            )
        else:
            yield from _compare(reader_rest, written, where)
    for name, read in read_props.items():
        if name in written_props or writer_rest is False:
            continue
        # Data written under an open model may carry this property with any value the
        # writer's additionalProperties allows.
        yield from (
            Incompatibility(
                f"{path}/properties/{pointer_segment(name)}",
                "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                f"property '{name}' was added while the writer allowed other properties; "
                f"data written before may hold '{name}' with other values ({item.reason})",
            )
            for item in _compare(read, writer_rest, f"{path}/properties/{pointer_segment(name)}")
        )
    if reader_rest is not True and "additionalProperties" in reader:
        if reader_rest is False and writer_rest is not False:
            yield Incompatibility(
                f"{path}/additionalProperties",
                "ADDITIONAL_PROPERTIES_CLOSED",
                "the reader no longer allows properties it does not name",
            )
        elif reader_rest is not False:
            yield from _compare(reader_rest, writer_rest, f"{path}/additionalProperties")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _listing(types: set[str]) -> str:
    return ", ".join(sorted(types))

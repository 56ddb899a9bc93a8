from __future__ import annotations

from typing import Any

import pytest

from tessera.governance import (
    CompatibilityMode,
    Direction,
    check_compatibility,
    reader_incompatibilities,
)


def obj(props: dict[str, Any], required: list[str] | None = None, **more: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props, **more}
    if required:
        schema["required"] = required
    return schema


CLOSED = {"additionalProperties": False}
INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}

# (case, reader, writer, kinds expected at those paths); empty: the reader reads the writer.
CASES: list[tuple[str, Any, Any, list[tuple[str, str]]]] = [
    ("identical", obj({"a": INT}), obj({"a": INT}), []),
    ("type widened integer to number", obj({"a": NUM}), obj({"a": INT}), []),
    (
        "type narrowed number to integer",
        obj({"a": INT}),
        obj({"a": NUM}),
        [("/properties/a/type", "TYPE_NARROWED")],
    ),
    (
        "type changed string to integer",
        obj({"a": INT}),
        obj({"a": STR}),
        [("/properties/a/type", "TYPE_NARROWED")],
    ),
    ("type union widened", obj({"a": {"type": ["string", "null"]}}), obj({"a": STR}), []),
    (
        "type union narrowed",
        obj({"a": STR}),
        obj({"a": {"type": ["string", "null"]}}),
        [("/properties/a/type", "TYPE_NARROWED")],
    ),
    (
        "type added where writer allowed anything",
        obj({"a": STR}),
        obj({"a": {}}),
        [("/properties/a/type", "TYPE_NARROWED")],
    ),
    (
        "required property added",
        obj({"a": INT, "b": INT}, ["a", "b"], **CLOSED),
        obj({"a": INT}, ["a"], **CLOSED),
        [("/required", "REQUIRED_PROPERTY_ADDED")],
    ),
    ("required property dropped", obj({"a": INT}), obj({"a": INT}, ["a"]), []),
    (
        "optional property added to closed writer",
        obj({"a": INT, "b": STR}, **CLOSED),
        obj({"a": INT}, **CLOSED),
        [],
    ),
    (
        "typed property added to open writer",
        obj({"a": INT, "b": STR}),
        obj({"a": INT}),
        [("/properties/b", "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL")],
    ),
    ("untyped property added to open writer", obj({"a": INT, "b": {}}), obj({"a": INT}), []),
    ("property removed from open reader", obj({"a": INT}), obj({"a": INT, "b": STR}), []),
    (
        "property removed from closed reader",
        obj({"a": INT}, **CLOSED),
        obj({"a": INT, "b": STR}, **CLOSED),
        [("/properties/b", "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL")],
    ),
    (
        "additionalProperties closed",
        obj({"a": INT}, **CLOSED),
        obj({"a": INT}),
        [("/additionalProperties", "ADDITIONAL_PROPERTIES_CLOSED")],
    ),
    (
        "additionalProperties narrowed",
        obj({}, additionalProperties=INT),
        obj({}, additionalProperties=NUM),
        [("/additionalProperties/type", "TYPE_NARROWED")],
    ),
    ("additionalProperties opened", obj({"a": INT}), obj({"a": INT}, **CLOSED), []),
    (
        "enum value removed",
        obj({"s": {"enum": ["a", "b"]}}),
        obj({"s": {"enum": ["a", "b", "c"]}}),
        [("/properties/s/enum", "ENUM_VALUES_REMOVED")],
    ),
    ("enum value added", obj({"s": {"enum": ["a", "b", "c"]}}), obj({"s": {"enum": ["a"]}}), []),
    (
        "enum added to free string",
        obj({"s": {"type": "string", "enum": ["a"]}}),
        obj({"s": STR}),
        [("/properties/s/enum", "ENUM_ADDED")],
    ),
    (
        "maximum lowered",
        obj({"n": {"type": "integer", "maximum": 10}}),
        obj({"n": {"type": "integer", "maximum": 100}}),
        [("/properties/n/maximum", "BOUND_TIGHTENED")],
    ),
    (
        "minimum added",
        obj({"n": {"type": "integer", "minimum": 0}}),
        obj({"n": INT}),
        [("/properties/n/minimum", "BOUND_ADDED")],
    ),
    (
        "maxLength raised",
        obj({"s": {"type": "string", "maxLength": 20}}),
        obj({"s": {"type": "string", "maxLength": 10}}),
        [],
    ),
    (
        "minItems raised",
        obj({"l": {"type": "array", "minItems": 2}}),
        obj({"l": {"type": "array", "minItems": 1}}),
        [("/properties/l/minItems", "BOUND_TIGHTENED")],
    ),
    (
        "pattern added",
        obj({"s": {"type": "string", "pattern": "^a"}}),
        obj({"s": STR}),
        [("/properties/s/pattern", "PATTERN_ADDED")],
    ),
    (
        "array items narrowed",
        obj({"l": {"type": "array", "items": INT}}),
        obj({"l": {"type": "array", "items": NUM}}),
        [("/properties/l/items/type", "TYPE_NARROWED")],
    ),
    (
        "nested required added",
        obj({"o": obj({"x": INT}, ["x"], **CLOSED)}),
        obj({"o": obj({"x": INT}, **CLOSED)}),
        [("/properties/o/required", "REQUIRED_PROPERTY_ADDED")],
    ),
    (
        "combinator changed",
        {"anyOf": [INT, STR]},
        {"anyOf": [INT]},
        [("/anyOf", "COMBINED_SCHEMA_CHANGED")],
    ),
    ("reader accepts anything", True, obj({"a": INT}), []),
    ("writer accepts nothing", obj({"a": INT}), False, []),
    ("reader accepts nothing", False, obj({"a": INT}), [("/", "SCHEMA_CLOSED")]),
    (
        "property name with slash is escaped",
        obj({"a/b": INT}, **CLOSED),
        obj({"a/b": NUM}, **CLOSED),
        [("/properties/a~1b/type", "TYPE_NARROWED")],
    ),
]


@pytest.mark.parametrize(
    ("reader", "writer", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_reader_incompatibilities(
    reader: Any, writer: Any, expected: list[tuple[str, str]]
) -> None:
    found = reader_incompatibilities(reader, writer)
    assert [(item.path, item.kind) for item in found] == expected
    assert all(item.reason for item in found)


V1 = obj({"a": INT}, **CLOSED)
V2 = obj({"a": INT, "b": STR}, **CLOSED)  # adds optional b: backward yes, forward no (v1 closed)
V3 = obj({"a": INT, "b": STR}, ["b"], **CLOSED)  # requires b: not backward with v1 or v2


@pytest.mark.parametrize(
    ("mode", "new", "history", "expected"),
    [
        (CompatibilityMode.BACKWARD, V2, [V1], []),
        (CompatibilityMode.FORWARD, V2, [V1], [(1, Direction.FORWARD)]),
        (CompatibilityMode.FULL, V2, [V1], [(1, Direction.FORWARD)]),
        (CompatibilityMode.NONE, V3, [V1], []),
        (CompatibilityMode.BACKWARD, V3, [V1, V2], [(2, Direction.BACKWARD)]),
        (
            CompatibilityMode.BACKWARD_TRANSITIVE,
            V3,
            [V1, V2],
            [(1, Direction.BACKWARD), (2, Direction.BACKWARD)],
        ),
        # Against the latest only, v1 is not looked at: removing b again is backward with v2.
        (CompatibilityMode.BACKWARD, V1, [V3, V2], [(2, Direction.BACKWARD)]),
        (CompatibilityMode.FORWARD_TRANSITIVE, V1, [V1, V2], []),
        (CompatibilityMode.FULL_TRANSITIVE, V1, [V1, V2], [(2, Direction.BACKWARD)]),
        (CompatibilityMode.BACKWARD, V3, [], []),
    ],
)
def test_modes_choose_versions_and_directions(
    mode: CompatibilityMode, new: Any, history: list[Any], expected: list[tuple[int, Direction]]
) -> None:
    found = check_compatibility(new, list(enumerate(history, start=1)), mode)
    assert [(item.against_version, item.direction) for item in found] == expected


def test_two_hundred_field_schemas_compare_every_field() -> None:
    writer = obj({f"f{i}": NUM for i in range(200)})
    reader = obj({f"f{i}": INT for i in range(200)})
    found = reader_incompatibilities(reader, writer)
    assert len(found) == 200
    assert found[199].path == "/properties/f199/type"

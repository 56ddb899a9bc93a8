from __future__ import annotations

from typing import Any

import pytest

from tessera.core import ValidationError
from tessera.governance._standards import RequiredField, Standard

SNAKE = Standard(
    name="house",
    version=1,
    entity_pattern="[A-Z][A-Za-z0-9]*",
    field_pattern="[a-z][a-z0-9_]*",
    reserved_words=("select", "order"),
    required_fields=(RequiredField("created_at", "string", "date-time"),),
    allowed_types=("string", "integer", "number", "boolean", "object", "array"),
)
GOOD: dict[str, Any] = {
    "type": "object",
    "title": "Customer",
    "properties": {
        "created_at": {"type": "string", "format": "date-time"},
        "customer_id": {"type": "integer"},
    },
    "required": ["created_at"],
}


def lint(schema: Any) -> list[tuple[str, str]]:
    return [(v.path, v.rule) for v in SNAKE.lint(schema)]


def variant(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (GOOD, []),
        (variant(title="customer"), [("/title", "ENTITY_NAME")]),
        ({k: v for k, v in GOOD.items() if k != "title"}, [("/title", "ENTITY_NAME")]),
        (
            variant(properties={**GOOD["properties"], "CustomerName": {"type": "string"}}),
            [("/properties/CustomerName", "FIELD_NAME")],
        ),
        (
            variant(properties={**GOOD["properties"], "Order": {"type": "string"}}),
            [("/properties/Order", "FIELD_NAME"), ("/properties/Order", "RESERVED_WORD")],
        ),
        (
            variant(properties={**GOOD["properties"], "note": {"type": ["string", "null"]}}),
            [("/properties/note/type", "TYPE_NOT_ALLOWED")],
        ),
        (variant(required=[]), [("/required", "REQUIRED_FIELD_OPTIONAL")]),
        (
            variant(properties={"customer_id": {"type": "integer"}}),
            [("/properties/created_at", "REQUIRED_FIELD_MISSING")],
        ),
        (
            variant(properties={**GOOD["properties"], "created_at": {"type": "integer"}}),
            [
                ("/properties/created_at/type", "REQUIRED_FIELD_TYPE"),
                ("/properties/created_at/format", "REQUIRED_FIELD_FORMAT"),
            ],
        ),
        (
            variant(
                properties={
                    **GOOD["properties"],
                    "lines": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"skuCode": {"type": "string"}}},
                    },
                }
            ),
            [("/properties/lines/items/properties/skuCode", "FIELD_NAME")],
        ),
        (
            variant(**{"$defs": {"order_line": {"type": "object", "properties": {"Qty": {}}}}}),
            [
                ("/$defs/order_line", "ENTITY_NAME"),
                ("/$defs/order_line/properties/Qty", "FIELD_NAME"),
            ],
        ),
        (
            variant(anyOf=[{"properties": {"a/b": {}}}]),
            [("/anyOf/0/properties/a~1b", "FIELD_NAME")],
        ),
        (True, []),
    ],
    ids=[
        "good",
        "entity-case",
        "no-title",
        "camel-field",
        "reserved",
        "type-null",
        "optional-audit",
        "missing-audit",
        "audit-type",
        "nested-items",
        "defs",
        "combinator",
        "boolean-schema",
    ],
)
def test_lint(schema: Any, expected: list[tuple[str, str]]) -> None:
    assert lint(schema) == expected


def test_an_empty_standard_accepts_everything() -> None:
    assert (
        Standard(name="none", version=1).lint({"properties": {"Any Name": {"type": "null"}}}) == []
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"field_pattern": "[a-z"}, "standard.field_pattern"),
        ({"entity_pattern": "(?P<"}, "standard.entity_pattern"),
        ({"allowed_types": ("text",)}, "standard.allowed_types"),
        ({"required_fields": (RequiredField("x", "date"),)}, "standard.required_fields[0].type"),
        ({"required_fields": (RequiredField(""),)}, "standard.required_fields[0].name"),
    ],
)
def test_bad_standard_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Standard(name="bad", version=0, **changes)
    assert [v.field for v in caught.value.violations] == [field]


def test_standard_round_trips_through_json() -> None:
    assert Standard.from_json(SNAKE.to_json()) == SNAKE

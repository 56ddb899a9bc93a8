"""The conceptual model: entities over contracts, relationships, and the checks they imply."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tessera.core import ValidationError

CARDINALITIES = ("ONE_TO_ONE", "ONE_TO_MANY", "MANY_TO_MANY")


@dataclass(frozen=True, slots=True)
class Entity:
    """An entity: a contract subject and the fields that identify one instance.

    Attributes:
        name: The entity's name.
        subject: The subject whose latest schema defines its fields.
        key: The primary-key fields.
        description: Free text.

    """

    name: str
    subject: str
    key: tuple[str, ...]
    description: str = ""

    def to_json(self) -> bytes:
        """Encode for etcd."""
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Entity:
        """Decode what `to_json` wrote."""
        value: dict[str, Any] = json.loads(raw)
        return cls(**{**value, "key": tuple(value["key"])})


@dataclass(frozen=True, slots=True)
class Relationship:
    """A relationship between entities (see model.proto for the meaning of each field).

    Attributes:
        name: The relationship's name.
        cardinality: `ONE_TO_ONE`, `ONE_TO_MANY` or `MANY_TO_MANY`.
        from_entity: The referencing side (one-to-x) or the first side (many-to-many).
        to_entity: The referenced side.
        from_fields: Fields referencing a key: in `from_entity`, or in `through`.
        to_fields: Many-to-many only: fields of `through` referencing `to_entity`'s key.
        through: Many-to-many only: the junction entity.
        description: Free text.

    """

    name: str
    cardinality: str
    from_entity: str
    to_entity: str
    from_fields: tuple[str, ...]
    to_fields: tuple[str, ...] = ()
    through: str = ""
    description: str = ""

    def to_json(self) -> bytes:
        """Encode for etcd."""
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Relationship:
        """Decode what `to_json` wrote."""
        value: dict[str, Any] = json.loads(raw)
        return cls(
            **{
                **value,
                "from_fields": tuple(value["from_fields"]),
                "to_fields": tuple(value["to_fields"]),
            }
        )

    def check_against(
        self, entities: Mapping[str, Entity], fields: Mapping[str, frozenset[str]]
    ) -> None:
        """Check that the entities exist and the fields fit their schemas and keys.

        Args:
            entities: The entities the relationship may name, by name.
            fields: The top-level properties of each entity's current schema, by entity name.

        Raises:
            ValidationError: Naming the offending `relationship.*` field.

        """
        for role in ("from_entity", "to_entity") + (("through",) if self.through else ()):
            if getattr(self, role) not in entities:
                raise ValidationError.for_field(
                    f"relationship.{role}", f"no entity named '{getattr(self, role)}'"
                )
        many = self.cardinality == "MANY_TO_MANY"
        if many != bool(self.through):
            raise ValidationError.for_field(
                "relationship.through", "is required for MANY_TO_MANY and only allowed there"
            )
        if not many and self.to_fields:
            raise ValidationError.for_field(
                "relationship.to_fields", "is only allowed for MANY_TO_MANY"
            )
        holder = self.through if many else self.from_entity
        _check_reference(
            "relationship.from_fields",
            self.from_fields,
            fields[holder],
            holder,
            entities[self.from_entity if many else self.to_entity],
        )
        if many:
            _check_reference(
                "relationship.to_fields",
                self.to_fields,
                fields[holder],
                holder,
                entities[self.to_entity],
            )


@dataclass(frozen=True, slots=True)
class ReferentialCheck:
    """A check a scan runs: every child value tuple appears among the parent's key values.

    Attributes:
        relationship: The relationship it comes from.
        child_entity: The referencing entity.
        child_fields: Its referencing fields.
        parent_entity: The referenced entity.
        parent_fields: The referenced entity's key, in order.
        unique: Whether a child value tuple may appear at most once (one-to-one).

    """

    relationship: str
    child_entity: str
    child_fields: tuple[str, ...]
    parent_entity: str
    parent_fields: tuple[str, ...]
    unique: bool


def referential_checks(
    relationships: Sequence[Relationship], entities: Mapping[str, Entity]
) -> list[ReferentialCheck]:
    """Derive the referential-integrity checks of relationships, in relationship order.

    A one-to-one or one-to-many relationship gives one check (unique for one-to-one); a
    many-to-many gives two, one per side of its junction entity. Parent fields are the
    entities' current keys.
    """
    checks: list[ReferentialCheck] = []
    for rel in relationships:
        if rel.cardinality == "MANY_TO_MANY":
            sides = [(rel.from_fields, rel.from_entity), (rel.to_fields, rel.to_entity)]
            child = rel.through
        else:
            sides = [(rel.from_fields, rel.to_entity)]
            child = rel.from_entity
        checks.extend(
            ReferentialCheck(
                relationship=rel.name,
                child_entity=child,
                child_fields=child_fields,
                parent_entity=parent,
                parent_fields=entities[parent].key,
                unique=rel.cardinality == "ONE_TO_ONE",
            )
            for child_fields, parent in sides
        )
    return checks


def top_level_fields(schema: object) -> frozenset[str]:
    """Return the property names a schema declares at its top level."""
    if isinstance(schema, Mapping) and isinstance(schema.get("properties"), Mapping):
        return frozenset(schema["properties"])
    return frozenset()


def _check_reference(
    field: str,
    names: Sequence[str],
    available: frozenset[str],
    holder: str,
    referenced: Entity,
) -> None:
    if len(names) != len(referenced.key):
        raise ValidationError.for_field(
            field,
            f"names {len(names)} fields but the key of '{referenced.name}' has "
            f"{len(referenced.key)} ({', '.join(referenced.key)})",
        )
    for index, name in enumerate(names):
        if name not in available:
            raise ValidationError.for_field(
                f"{field}[{index}]", f"'{name}' is not a field of entity '{holder}'"
            )

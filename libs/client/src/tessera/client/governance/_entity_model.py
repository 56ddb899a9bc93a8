from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tessera.proto.governance.v1 import model_pb2

Cardinality = Literal["ONE_TO_ONE", "ONE_TO_MANY", "MANY_TO_MANY"]


@dataclass(frozen=True, slots=True)
class Entity:
    """An entity of the conceptual model (see model.proto).

    Attributes:
        name: Its name.
        subject: The contract subject defining its fields.
        key: Its primary-key fields.
        description: Free text.

    """

    name: str
    subject: str
    key: tuple[str, ...]
    description: str = ""

    def to_proto(self) -> model_pb2.Entity:
        """Build a `tessera.governance.v1.Entity`."""
        return model_pb2.Entity(
            name=self.name, subject=self.subject, key=self.key, description=self.description
        )

    @classmethod
    def from_proto(cls, message: model_pb2.Entity) -> Entity:
        """Copy a `tessera.governance.v1.Entity`."""
        return cls(message.name, message.subject, tuple(message.key), message.description)


@dataclass(frozen=True, slots=True)
class Relationship:
    """A relationship between entities (see model.proto for each field's meaning).

    Attributes:
        name: Its name.
        cardinality: `ONE_TO_ONE`, `ONE_TO_MANY` or `MANY_TO_MANY`.
        from_entity: The referencing (or first) entity.
        to_entity: The referenced (or second) entity.
        from_fields: Fields referencing a key.
        to_fields: Many-to-many only.
        through: Many-to-many only: the junction entity.
        description: Free text.

    """

    name: str
    cardinality: Cardinality
    from_entity: str
    to_entity: str
    from_fields: tuple[str, ...]
    to_fields: tuple[str, ...] = ()
    through: str = ""
    description: str = ""

    def to_proto(self) -> model_pb2.Relationship:
        """Build a `tessera.governance.v1.Relationship`."""
        return model_pb2.Relationship(
            name=self.name,
            cardinality=model_pb2.Cardinality.Value(self.cardinality),
            from_entity=self.from_entity,
            to_entity=self.to_entity,
            from_fields=self.from_fields,
            to_fields=self.to_fields,
            through=self.through,
            description=self.description,
        )

    @classmethod
    def from_proto(cls, message: model_pb2.Relationship) -> Relationship:
        """Copy a `tessera.governance.v1.Relationship`."""
        cardinality: Cardinality = model_pb2.Cardinality.Name(message.cardinality)  # type: ignore[assignment]
        return cls(
            name=message.name,
            cardinality=cardinality,
            from_entity=message.from_entity,
            to_entity=message.to_entity,
            from_fields=tuple(message.from_fields),
            to_fields=tuple(message.to_fields),
            through=message.through,
            description=message.description,
        )


@dataclass(frozen=True, slots=True)
class ReferentialCheck:
    """A referential-integrity check the model implies (see model.proto).

    Attributes:
        relationship: Where it comes from.
        child_entity: The referencing entity.
        child_fields: Its referencing fields.
        parent_entity: The referenced entity.
        parent_fields: The referenced key.
        unique: Whether child values must also be unique.

    """

    relationship: str
    child_entity: str
    child_fields: tuple[str, ...]
    parent_entity: str
    parent_fields: tuple[str, ...]
    unique: bool


@dataclass(frozen=True, slots=True)
class Model:
    """The conceptual model at one revision.

    Attributes:
        entities: By name.
        relationships: By name.
        checks: The referential checks, in relationship order.

    """

    entities: list[Entity]
    relationships: list[Relationship]
    checks: list[ReferentialCheck]

    @classmethod
    def from_proto(cls, message: model_pb2.GetModelResponse) -> Model:
        """Copy a `tessera.governance.v1.GetModelResponse`."""
        return cls(
            entities=[Entity.from_proto(e) for e in message.entities],
            relationships=[Relationship.from_proto(r) for r in message.relationships],
            checks=[
                ReferentialCheck(
                    c.relationship,
                    c.child_entity,
                    tuple(c.child_fields),
                    c.parent_entity,
                    tuple(c.parent_fields),
                    c.unique,
                )
                for c in message.checks
            ],
        )

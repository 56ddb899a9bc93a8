from __future__ import annotations

from tessera.core import ValidationError
from tessera.core.server import ServicerContext
from tessera.governance._contract_store import ContractStore
from tessera.governance._entity_model import (
    Entity,
    Relationship,
    referential_checks,
    top_level_fields,
)
from tessera.governance._model_store import ModelStore
from tessera.governance._schema import check_name
from tessera.proto.governance.v1 import model_pb2 as pb


class ModelRpcs:
    """The entity-model part of the Governance servicer.

    Entities and relationships are checked against the subjects' latest schemas when written;
    `GetModel` derives the referential-integrity checks from the current keys.

    Args:
        model: Where entities and relationships live.
        contracts: The subjects whose schemas define the entities' fields.

    """

    def __init__(self, model: ModelStore, contracts: ContractStore) -> None:
        self._model = model
        self._schemas = contracts

    async def UpsertEntity(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.UpsertEntityRequest, context: ServicerContext
    ) -> pb.UpsertEntityResponse:
        """Create or replace an entity whose key fields exist in its subject's latest schema."""
        message = request.entity
        entity = Entity(
            name=check_name("entity.name", message.name),
            subject=check_name("entity.subject", message.subject),
            key=tuple(message.key),
            description=message.description,
        )
        if not entity.key:
            raise ValidationError.for_field("entity.key", "must name at least one field")
        contract = await self._schemas.get(entity.subject, 0)
        fields = top_level_fields(contract.schema)
        for index, name in enumerate(entity.key):
            if name not in fields:
                raise ValidationError.for_field(
                    f"entity.key[{index}]",
                    f"'{name}' is not a property of subject '{entity.subject}' "
                    f"version {contract.version}",
                )
        await self._model.put_entity(entity)
        return pb.UpsertEntityResponse(entity=_entity_message(entity))

    async def UpsertRelationship(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.UpsertRelationshipRequest, context: ServicerContext
    ) -> pb.UpsertRelationshipResponse:
        """Create or replace a relationship that fits the entities' schemas and keys."""
        message = request.relationship
        if message.cardinality not in pb.Cardinality.values() or (
            message.cardinality == pb.CARDINALITY_UNSPECIFIED
        ):
            raise ValidationError.for_field(
                "relationship.cardinality", "must be ONE_TO_ONE, ONE_TO_MANY or MANY_TO_MANY"
            )
        relationship = Relationship(
            name=check_name("relationship.name", message.name),
            cardinality=pb.Cardinality.Name(message.cardinality),
            from_entity=message.from_entity,
            to_entity=message.to_entity,
            from_fields=tuple(message.from_fields),
            to_fields=tuple(message.to_fields),
            through=message.through,
            description=message.description,
        )
        model = await self._model.snapshot()
        named = {relationship.from_entity, relationship.to_entity, relationship.through}
        fields = {}
        for name in named & model.entities.keys():
            contract = await self._schemas.get(model.entities[name].subject, 0)
            fields[name] = top_level_fields(contract.schema)
        relationship.check_against(model.entities, fields)
        await self._model.put_relationship(relationship)
        return pb.UpsertRelationshipResponse(relationship=_relationship_message(relationship))

    async def GetModel(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.GetModelRequest, context: ServicerContext
    ) -> pb.GetModelResponse:
        """Return every entity and relationship, and the checks they imply."""
        model = await self._model.snapshot()
        return pb.GetModelResponse(
            entities=[_entity_message(model.entities[name]) for name in sorted(model.entities)],
            relationships=[_relationship_message(r) for r in model.relationships],
            checks=[
                pb.ReferentialCheck(
                    relationship=check.relationship,
                    child_entity=check.child_entity,
                    child_fields=check.child_fields,
                    parent_entity=check.parent_entity,
                    parent_fields=check.parent_fields,
                    unique=check.unique,
                )
                for check in referential_checks(model.relationships, model.entities)
            ],
        )


def _entity_message(entity: Entity) -> pb.Entity:
    return pb.Entity(
        name=entity.name, subject=entity.subject, key=entity.key, description=entity.description
    )


def _relationship_message(relationship: Relationship) -> pb.Relationship:
    return pb.Relationship(
        name=relationship.name,
        cardinality=pb.Cardinality.Value(relationship.cardinality),
        from_entity=relationship.from_entity,
        to_entity=relationship.to_entity,
        from_fields=relationship.from_fields,
        to_fields=relationship.to_fields,
        through=relationship.through,
        description=relationship.description,
    )

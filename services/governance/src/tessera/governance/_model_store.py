from __future__ import annotations

from dataclasses import dataclass

from tessera.core.etcd import EtcdClient
from tessera.governance import _keys
from tessera.governance._entity_model import Entity, Relationship


@dataclass(frozen=True, slots=True)
class ModelSnapshot:
    """The whole conceptual model as of one etcd revision.

    Attributes:
        revision: The revision it was read at.
        entities: By name.
        relationships: In name order.

    """

    revision: int
    entities: dict[str, Entity]
    relationships: list[Relationship]


class ModelStore:
    """Entities and relationships in etcd under `/tessera/governance/model/`.

    An upsert replaces the whole entity or relationship (last write wins); there is no history.

    Args:
        etcd: A connected client; safe for concurrent use from one event loop.

    """

    def __init__(self, etcd: EtcdClient) -> None:
        self._etcd = etcd

    async def put_entity(self, entity: Entity) -> None:
        """Create or replace an entity."""
        await self._etcd.put(_keys.entity(entity.name), entity.to_json())

    async def put_relationship(self, relationship: Relationship) -> None:
        """Create or replace a relationship."""
        await self._etcd.put(_keys.relationship(relationship.name), relationship.to_json())

    async def snapshot(self) -> ModelSnapshot:
        """Read every entity and relationship at one revision."""
        snapshot = await self._etcd.get_prefix(_keys.MODEL)
        entities: dict[str, Entity] = {}
        relationships: list[Relationship] = []
        relationship_prefix = _keys.relationship("").encode()
        for item in snapshot.items:
            if item.key.startswith(relationship_prefix):
                relationships.append(Relationship.from_json(item.value))
            else:
                entity = Entity.from_json(item.value)
                entities[entity.name] = entity
        return ModelSnapshot(snapshot.revision, entities, relationships)

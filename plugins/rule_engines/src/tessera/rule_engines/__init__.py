"""Tessera's built-in rule engines, registered under the `tessera.rule_engines` entry points.

- `cel` (`CelEngine`, the default): a rule is a Common Expression Language expression over the
  variable `record` that must evaluate to a bool, type-checked and cost-checked when compiled.
- `jsonschema` (`JsonSchemaEngine`): a rule is a JSON Schema document the record must satisfy.
"""

from tessera.rule_engines._cel import CelEngine
from tessera.rule_engines._cel_cost import CostLimit, estimate_cost
from tessera.rule_engines._jsonschema import JsonSchemaEngine

__all__ = ["CelEngine", "CostLimit", "JsonSchemaEngine", "estimate_cost"]

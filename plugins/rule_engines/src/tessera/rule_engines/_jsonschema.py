from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

# jsonschema ships no type information and types-jsonschema is not a dependency.
import jsonschema  # type: ignore[import-untyped]
from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]

from tessera.core import ValidationError
from tessera.core.plugins import CompiledRule, Verdict


class JsonSchemaEngine:
    """Rules written as JSON Schema documents: a record satisfies a rule when the schema accepts it.

    The dialect is taken from the schema's `$schema` (Draft 2020-12 when absent). Evaluation
    cost is bounded by the schema's size times the record's, except for `pattern` keywords, which
    run Python regular expressions; rule authors own their patterns.

    Thread-safe: validators are immutable once built.
    """

    def compile(self, expression: str) -> CompiledRule:
        """Parse the schema and check it against its metaschema (see `RuleEngine.compile`)."""
        try:
            schema = json.loads(expression)
        except json.JSONDecodeError as error:
            raise ValidationError.for_field(
                "expression",
                f"is not JSON: line {error.lineno}, column {error.colno}: {error.msg}",
            ) from None
        if not isinstance(schema, dict | bool):
            raise ValidationError.for_field("expression", "must be a JSON object or boolean")
        validator_class = jsonschema.validators.validator_for(
            schema, default=jsonschema.Draft202012Validator
        )
        try:
            validator_class.check_schema(schema)
        except SchemaError as error:
            where = "/" + "/".join(str(part) for part in error.absolute_path)
            raise ValidationError.for_field(
                "expression", f"is not a valid JSON Schema at {where}: {error.message}"
            ) from None
        return CompiledRule(expression=expression, program=validator_class(schema))

    def evaluate(
        self, rules: Sequence[CompiledRule], record: Mapping[str, object]
    ) -> list[Verdict]:
        """Validate one record against every rule's schema (see `RuleEngine.evaluate`)."""
        return [bool(rule.program.is_valid(record)) for rule in rules]  # type: ignore[attr-defined]

    def evaluate_batch(
        self, rules: Sequence[CompiledRule], records: Sequence[Mapping[str, object]]
    ) -> list[Sequence[Verdict]]:
        """Validate each record against every rule's schema (see `RuleEngine.evaluate_batch`)."""
        return [self.evaluate(rules, record) for record in records]

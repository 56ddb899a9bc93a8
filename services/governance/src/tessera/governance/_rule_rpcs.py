from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from tessera.core import ValidationError
from tessera.core.plugins import PluginSet, RuleEngine
from tessera.core.server import ServicerContext
from tessera.governance._audit import DecisionAudit
from tessera.governance._json_values import parse_json
from tessera.governance._result_encoding import encoder_for
from tessera.governance._rule_set_store import RuleSetStore
from tessera.governance._rule_sets import CompiledRuleSet, Outcome, RuleSetSpec, RuleSpec
from tessera.governance._schema import check_name
from tessera.governance._settings import GovernanceSettings
from tessera.proto.governance.v1 import rules_pb2 as pb

_SEVERITIES = {
    pb.SEVERITY_UNSPECIFIED: "ERROR",
    pb.INFO: "INFO",
    pb.WARNING: "WARNING",
    pb.ERROR: "ERROR",
}
_MODES = {pb.RULE_MODE_UNSPECIFIED: "ENFORCE", pb.ENFORCE: "ENFORCE", pb.SHADOW: "SHADOW"}
_OUTCOMES = {"PASSED": pb.PASSED, "FAILED": pb.FAILED, "ERRORED": pb.ERRORED}
_MESSAGE_LIMIT = 1024
# Batches smaller than this are evaluated on the event loop: a thread hop costs more than they do.
_INLINE_RECORDS = 16
_CACHED_RULE_SETS = 1024


class RuleRpcs:
    """The rule part of the Governance servicer: versioned rule sets and record evaluation.

    Compiled rule sets are cached by (name, version); versions are immutable, so the cache never
    goes stale. Large batches are evaluated in a worker thread so the event loop keeps serving.

    Args:
        store: Where rule sets live.
        engines: The loaded `tessera.rule_engines` plugins.
        settings: Limits and the default engine.

    """

    def __init__(
        self, store: RuleSetStore, engines: PluginSet[RuleEngine], settings: GovernanceSettings
    ) -> None:
        self._rule_sets = store
        self._engine_plugins = engines
        self._engines: dict[str, RuleEngine] = {}
        self._compiled: dict[tuple[str, int], CompiledRuleSet] = {}
        self._settings = settings
        self._audit = DecisionAudit(settings.audit_sample_rate)

    async def PutRuleSet(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.PutRuleSetRequest, context: ServicerContext
    ) -> pb.PutRuleSetResponse:
        """Compile every rule, then store the rule set as a new version."""
        spec = self._spec(request.rule_set)
        compiled = CompiledRuleSet(spec, self._engine(spec.engine))
        stored = await self._rule_sets.put(spec)
        self._remember(compiled.as_version(stored))
        return pb.PutRuleSetResponse(rule_set=_rule_set(stored))

    async def GetRuleSet(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.GetRuleSetRequest, context: ServicerContext
    ) -> pb.GetRuleSetResponse:
        """Return one version of a rule set (0: the latest)."""
        name = check_name("name", request.name)
        return pb.GetRuleSetResponse(
            rule_set=_rule_set(await self._rule_sets.get(name, request.version))
        )

    async def EvaluateRecord(  # noqa: N802 - gRPC method names are CamelCase
        self, request: pb.EvaluateRecordRequest, context: ServicerContext
    ) -> pb.EvaluateRecordResponse:
        """Evaluate one record against a rule set."""
        rule_set = await self._load("rule_set", request.rule_set, request.version)
        record = self._record("record_json", request.record_json)
        valid, verdicts = rule_set.evaluate(record)
        self._audit.sample(rule_set.spec, request.record_json, valid, verdicts)
        return pb.EvaluateRecordResponse(
            result=encoder_for(rule_set.spec).encode(valid, verdicts),
            version=rule_set.spec.version,
        )

    async def EvaluateBatch(  # noqa: N802 - gRPC method names are CamelCase
        self, requests: AsyncIterator[pb.EvaluateBatchRequest], context: ServicerContext
    ) -> AsyncIterator[pb.EvaluateBatchResponse]:
        """Evaluate each message's records; one response per message, in order."""
        rule_set: CompiledRuleSet | None = None
        async for request in requests:
            if rule_set is None:
                rule_set = await self._load("rule_set", request.rule_set, request.version)
            elif request.rule_set and request.rule_set != rule_set.spec.name:
                raise ValidationError.for_field("rule_set", "must not change within a stream")
            if len(request.records_json) > self._settings.max_batch_records:
                raise ValidationError.for_field(
                    "records_json",
                    f"holds {len(request.records_json)} records, over the limit of "
                    f"{self._settings.max_batch_records}",
                )
            raws = request.records_json
            if len(raws) <= _INLINE_RECORDS:
                outcomes, results = self._decide(rule_set, raws)
            else:
                outcomes, results = await asyncio.to_thread(self._decide, rule_set, raws)
            self._audit.sample_many(rule_set.spec, raws, outcomes)
            yield pb.EvaluateBatchResponse(results=results, version=rule_set.spec.version)

    def _decide(
        self, rule_set: CompiledRuleSet, raws: Sequence[bytes]
    ) -> tuple[list[Outcome], list[pb.RecordResult]]:
        """Parse, evaluate and encode one message's records (CPU-bound: off the event loop)."""
        records = [self._record("records_json", raw, index) for index, raw in enumerate(raws)]
        outcomes = rule_set.evaluate_many(records)
        encoder = encoder_for(rule_set.spec)
        # Records that pass every rule share one outcome object and one prebuilt message.
        all_passed, passed_message = rule_set.all_passed, encoder.all_passed
        results = [
            passed_message if outcome is all_passed else encoder.encode(*outcome)
            for outcome in outcomes
        ]
        return outcomes, results

    def _engine(self, name: str) -> RuleEngine:
        engine = self._engines.get(name)
        if engine is None:
            if name not in self._engine_plugins.loaded:
                installed = ", ".join(sorted(self._engine_plugins.loaded)) or "none"
                raise ValidationError.for_field(
                    "rule_set.engine", f"no rule engine named '{name}' (installed: {installed})"
                )
            engine = self._engines[name] = self._engine_plugins.get(name).create()
        return engine

    async def _load(self, field: str, name: str, version: int) -> CompiledRuleSet:
        check_name(field, name)
        if version == 0:
            version = await self._rule_sets.latest_version(name)
        compiled = self._compiled.get((name, version))
        if compiled is None:
            spec = await self._rule_sets.get(name, version)
            compiled = CompiledRuleSet(spec, self._engine(spec.engine))
            self._remember(compiled)
        return compiled

    def _remember(self, compiled: CompiledRuleSet) -> None:
        if len(self._compiled) >= _CACHED_RULE_SETS:
            # Versions are immutable, so dropping the whole cache only costs recompilation.
            self._compiled.clear()
        self._compiled[(compiled.spec.name, compiled.spec.version)] = compiled

    def _record(self, field: str, raw: bytes, index: int | None = None) -> Mapping[str, Any]:
        limit = self._settings.max_record_bytes
        if len(raw) > limit:
            raise ValidationError.for_field(
                _item(field, index), f"is {len(raw)} bytes, over the record size limit of {limit}"
            )
        try:
            record = parse_json(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValidationError.for_field(_item(field, index), f"is not JSON: {error}") from None
        if type(record) is not dict:
            raise ValidationError.for_field(_item(field, index), "must be a JSON object")
        return record

    def _spec(self, message: pb.RuleSet) -> RuleSetSpec:
        name = check_name("rule_set.name", message.name)
        if not message.rules:
            raise ValidationError.for_field("rule_set.rules", "must hold at least one rule")
        if len(message.rules) > self._settings.max_rules:
            raise ValidationError.for_field(
                "rule_set.rules", f"holds more than {self._settings.max_rules} rules"
            )
        rules = []
        seen: set[str] = set()
        for index, rule in enumerate(message.rules):
            where = f"rule_set.rules[{index}]"
            check_name(f"{where}.name", rule.name)
            if rule.name in seen:
                raise ValidationError.for_field(f"{where}.name", f"'{rule.name}' is repeated")
            seen.add(rule.name)
            if len(rule.message) > _MESSAGE_LIMIT:
                raise ValidationError.for_field(
                    f"{where}.message", f"is over {_MESSAGE_LIMIT} characters"
                )
            if rule.severity not in _SEVERITIES:
                raise ValidationError.for_field(
                    f"{where}.severity", f"unknown value {rule.severity}"
                )
            if rule.mode not in _MODES:
                raise ValidationError.for_field(f"{where}.mode", f"unknown value {rule.mode}")
            rules.append(
                RuleSpec(
                    name=rule.name,
                    expression=rule.expression,
                    message=rule.message or f"rule '{rule.name}' failed",
                    severity=_SEVERITIES[rule.severity],
                    mode=_MODES[rule.mode],
                )
            )
        engine = message.engine or self._settings.default_rule_engine
        return RuleSetSpec(name=name, version=0, engine=engine, rules=tuple(rules))


def _item(field: str, index: int | None) -> str:
    # Built only for an error: formatting the name of every record would cost more than parsing.
    return field if index is None else f"{field}[{index}]"


def _rule_set(spec: RuleSetSpec) -> pb.RuleSet:
    return pb.RuleSet(
        name=spec.name,
        version=spec.version,
        engine=spec.engine,
        rules=[
            pb.Rule(
                name=rule.name,
                expression=rule.expression,
                message=rule.message,
                severity=pb.Severity.Value(rule.severity),
                mode=pb.RuleMode.Value(rule.mode),
            )
            for rule in spec.rules
        ],
    )

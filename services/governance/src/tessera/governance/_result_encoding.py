from __future__ import annotations

import functools

from tessera.governance._rule_sets import RuleSetSpec, RuleSpec, RuleVerdict
from tessera.proto.governance.v1 import rules_pb2 as pb


class ResultEncoder:
    """Builds the `RecordResult` messages of one rule set, reusing what never changes.

    A passed or failed rule always encodes to the same `RuleResult`, so those are built once per
    rule, and a record that passes every rule reuses one whole prebuilt `RecordResult`: building
    messages is a large share of the cost of evaluating a record. Only errored rules (whose
    reason varies) are built per record.

    Args:
        spec: The rule set.

    """

    def __init__(self, spec: RuleSetSpec) -> None:
        self._passed = [_message(rule, pb.PASSED, "") for rule in spec.rules]
        self._failed = [_message(rule, pb.FAILED, rule.message) for rule in spec.rules]
        #: The message of a record that passed every rule.
        self.all_passed = pb.RecordResult(valid=True, results=self._passed)

    def encode(self, valid: bool, verdicts: list[RuleVerdict]) -> pb.RecordResult:
        """Encode one record's verdicts (in rule order, as `CompiledRuleSet.evaluate` gives)."""
        results = []
        all_passed = True
        for index, verdict in enumerate(verdicts):
            if verdict.outcome == "PASSED":
                results.append(self._passed[index])
                continue
            all_passed = False
            if verdict.outcome == "FAILED":
                results.append(self._failed[index])
            else:
                results.append(_message(verdict.rule, pb.ERRORED, verdict.message))
        if all_passed:
            return self.all_passed
        return pb.RecordResult(valid=valid, results=results)


@functools.lru_cache(maxsize=1024)
def encoder_for(spec: RuleSetSpec) -> ResultEncoder:
    """Return the (cached) encoder of a rule set version; versions are immutable."""
    return ResultEncoder(spec)


def _message(rule: RuleSpec, outcome: pb.RuleOutcome.ValueType, message: str) -> pb.RuleResult:
    return pb.RuleResult(
        rule=rule.name,
        outcome=outcome,
        severity=pb.Severity.Value(rule.severity),
        mode=pb.RuleMode.Value(rule.mode),
        message=message,
    )

from __future__ import annotations

import hashlib
import random

import structlog

from tessera.governance._rule_sets import RuleSetSpec, RuleVerdict

_log = structlog.get_logger("tessera.governance.audit")


class DecisionAudit:
    """Logs a random sample of rule decisions, so that what the rules decided can be audited.

    A sampled decision is one log line `rule decision` (logger `tessera.governance.audit`) with
    the rule set and version, whether the record was valid, the rules that did not pass with
    their outcome, and the SHA-256 of the record's JSON: enough to find the record again at its
    source without copying its content, which may be personal data, into the logs.

    Args:
        rate: Fraction of decisions logged, 0 (none) to 1 (all).
        rng: Source of randomness; a fresh `random.Random` when None.

    Use from one event loop or thread.

    """

    def __init__(self, rate: float, rng: random.Random | None = None) -> None:
        self._rate = rate
        self._random = (rng or random.Random()).random

    def sample(
        self, rule_set: RuleSetSpec, raw: bytes, valid: bool, verdicts: list[RuleVerdict]
    ) -> None:
        """Log this decision with probability `rate`."""
        if self._rate <= 0 or self._random() >= self._rate:
            return
        _log.info(
            "rule decision",
            rule_set=rule_set.name,
            version=rule_set.version,
            valid=valid,
            record_sha256=hashlib.sha256(raw).hexdigest(),
            not_passed={v.rule.name: v.outcome for v in verdicts if v.outcome != "PASSED"},
        )

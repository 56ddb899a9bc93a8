from __future__ import annotations

import hashlib
import math
import random
import sys
from collections.abc import Sequence

import structlog

from tessera.governance._rule_sets import Outcome, RuleSetSpec, RuleVerdict

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
        # Decisions to pass over before the next sampled one, drawn from the geometric
        # distribution: the same as one coin per decision, without a coin per decision.
        self._skip = self._gap()

    def sample_many(
        self, rule_set: RuleSetSpec, raws: Sequence[bytes], outcomes: Sequence[Outcome]
    ) -> None:
        """Log each of these decisions with probability `rate` (records in `raws`, in order)."""
        index = self._skip
        while index < len(raws):
            valid, verdicts = outcomes[index]
            self._log(rule_set, raws[index], valid, verdicts)
            index += 1 + self._gap()
        self._skip = index - len(raws)

    def _gap(self) -> int:
        if self._rate >= 1:
            return 0
        if self._rate <= 0:
            return sys.maxsize  # never sample
        return int(math.log(1.0 - self._random()) / math.log(1.0 - self._rate))

    def sample(
        self, rule_set: RuleSetSpec, raw: bytes, valid: bool, verdicts: list[RuleVerdict]
    ) -> None:
        """Log this decision with probability `rate`."""
        if self._rate <= 0 or self._random() >= self._rate:
            return
        self._log(rule_set, raw, valid, verdicts)

    def _log(
        self, rule_set: RuleSetSpec, raw: bytes, valid: bool, verdicts: list[RuleVerdict]
    ) -> None:
        _log.info(
            "rule decision",
            rule_set=rule_set.name,
            version=rule_set.version,
            valid=valid,
            record_sha256=hashlib.sha256(raw).hexdigest(),
            not_passed={v.rule.name: v.outcome for v in verdicts if v.outcome != "PASSED"},
        )

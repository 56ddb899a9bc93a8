from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from tessera.ratelimit._config import DescriptorRule, DomainConfig
from tessera.ratelimit._rulebook import AppliedDomain
from tessera.ratelimit._usage import RuleUsage

#: Kinds of audit findings.
FindingKind = Literal[
    "never_hit", "shadow_would_deny", "drift", "etcd_only", "file_only", "invalid_in_etcd"
]


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the configuration audit found.

    Attributes:
        kind: `never_hit` (a rule decided nothing over the period), `shadow_would_deny` (a
            shadow-mode rule would have denied `count` requests), `drift` (etcd's version of a
            domain differs from the directory's), `etcd_only` / `file_only` (a domain is in one
            place only), `invalid_in_etcd` (a stored domain fails validation; services skip it).
        domain: The domain.
        rule: The rule's name or configuration path; empty for domain-wide findings.
        detail: Words for an operator.
        count: The decisions behind the finding (shadow denials), else 0.

    """

    kind: FindingKind
    domain: str
    rule: str
    detail: str
    count: int = 0


def rule_labels(config: DomainConfig) -> Iterator[str]:
    """Yield the label (name, else path) of every rule that limits or breaks, as decisions do."""

    def walk(rule: DescriptorRule) -> Iterator[str]:
        for child in rule.children.values():
            if child.rate_limit is not None and child.rate_limit.name:
                yield child.rate_limit.name
            elif child.rate_limit is not None or child.circuit_breaker is not None:
                yield child.path
            yield from walk(child)

    return walk(config.root)


def audit(
    files: Mapping[str, DomainConfig],
    stored: Mapping[str, AppliedDomain],
    invalid: Mapping[str, str],
    usage: Sequence[RuleUsage],
    *,
    period: str,
) -> list[Finding]:
    """Compare the directory with etcd and the configuration with its usage.

    Args:
        files: Domains of the start-up directory.
        stored: Valid domains stored in etcd.
        invalid: Domains stored in etcd that fail validation, with the reason.
        usage: Decisions per rule over the audited period.
        period: The period in words, for the findings' details (`"the last 24 h"`).

    Returns:
        The findings, domain-wide ones first, each group sorted by domain and rule.

    """
    findings: list[Finding] = []
    for domain in sorted(set(files) | set(stored) | set(invalid)):
        if domain in invalid:
            findings.append(Finding("invalid_in_etcd", domain, "", invalid[domain]))
        elif domain in files and domain in stored:
            if files[domain].digest != stored[domain].config.digest:
                detail = f"etcd {stored[domain].version} differs from the directory's file"
                findings.append(Finding("drift", domain, "", detail))
        elif domain in stored:
            findings.append(Finding("etcd_only", domain, "", "stored in etcd, no file"))
        else:
            findings.append(Finding("file_only", domain, "", "in the directory, not in etcd"))
    used = {(row.domain, row.rule): row for row in usage}
    serving = {**files, **{name: applied.config for name, applied in stored.items()}}
    for domain, config in sorted(serving.items()):
        for label in sorted(set(rule_labels(config))):
            row = used.get((domain, label))
            if row is None or row.total == 0:
                findings.append(Finding("never_hit", domain, label, f"no decision in {period}"))
    for row in usage:
        if row.shadow_denied:
            detail = f"would have denied {row.shadow_denied} of {row.total} in {period}"
            findings.append(
                Finding("shadow_would_deny", row.domain, row.rule, detail, row.shadow_denied)
            )
    return findings

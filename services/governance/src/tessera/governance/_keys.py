"""The etcd keys of the governance service (documented in docs/keyspace.md)."""

from __future__ import annotations

from urllib.parse import quote

ROOT = "/tessera/governance"
#: Next contract id to allocate (decimal text); absent means 1.
CONTRACT_ID_COUNTER = f"{ROOT}/counters/contract_id"
SUBJECTS = f"{ROOT}/subjects/"
RULE_SETS = f"{ROOT}/rulesets/"


def _segment(name: str) -> str:
    # Names are validated to a safe alphabet, but encoding keeps one name one path segment
    # whatever the validation allows in the future.
    return quote(name, safe="")


def subject_prefix(subject: str) -> str:
    """Prefix of every key of one subject."""
    return f"{SUBJECTS}{_segment(subject)}/"


def subject_config(subject: str) -> str:
    """Return the key of the subject's settings: JSON `{"compatibility": "<mode>"}`."""
    return f"{subject_prefix(subject)}config"


def contract_versions(subject: str) -> str:
    """Prefix of the subject's versions."""
    return f"{subject_prefix(subject)}versions/"


def contract_version(subject: str, version: int) -> str:
    """One version of a subject; zero-padded so key order is version order."""
    return f"{contract_versions(subject)}{version:010d}"


def contract_id(contract_id: int) -> str:
    """Index from a contract id to its subject and version."""
    return f"{ROOT}/contracts/{contract_id:020d}"


STANDARDS = f"{ROOT}/standards/"


def document_version(kind_prefix: str, name: str, version: int) -> str:
    """Return the key of one version of a named document (rule set, standard)."""
    return f"{kind_prefix}{_segment(name)}/versions/{version:010d}"


def document_latest(kind_prefix: str, name: str) -> str:
    """Return the key of the latest version number of a named document (decimal text)."""
    return f"{kind_prefix}{_segment(name)}/latest"


MODEL = f"{ROOT}/model/"


def entity(name: str) -> str:
    """Return the key of one entity of the conceptual model."""
    return f"{MODEL}entities/{_segment(name)}"


def relationship(name: str) -> str:
    """Return the key of one relationship of the conceptual model."""
    return f"{MODEL}relationships/{_segment(name)}"


SCANS = f"{ROOT}/scans/"


def scan(scan_id: str) -> str:
    """Return the key of one scan: its spec, state, progress and report (JSON)."""
    return f"{SCANS}{_segment(scan_id)}"


SCHEDULES = f"{ROOT}/schedules/"


def schedule(name: str) -> str:
    """Return the key of one scan schedule: the scan request, interval and last run (JSON)."""
    return f"{SCHEDULES}{_segment(name)}"

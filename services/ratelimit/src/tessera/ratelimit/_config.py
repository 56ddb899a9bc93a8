from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs; types-PyYAML is not a dependency

from tessera.core import FieldViolation, ValidationError
from tessera.core.plugins import Alignment, Limiter, Rate

#: Seconds per unit, as envoyproxy/ratelimit defines them (a month is 30 days, a year 365).
UNIT_SECONDS: Mapping[str, int] = MappingProxyType(
    {
        "second": 1,
        "minute": 60,
        "hour": 3600,
        "day": 86400,
        "week": 7 * 86400,
        "month": 30 * 86400,
        "year": 365 * 86400,
    }
)

#: The algorithm of rules that name none: envoyproxy/ratelimit's.
DEFAULT_ALGORITHM = "fixed_window"

FailureMode = Literal["open", "closed"]

#: How a circuit breaker judges its window of calls.
BreakerStrategy = Literal["error_ratio", "slow_call_ratio", "error_count"]
BREAKER_STRATEGIES: tuple[BreakerStrategy, ...] = ("error_ratio", "slow_call_ratio", "error_count")
#: How an adaptive rule moves its limit.
AdaptiveStrategy = Literal["aimd", "gradient"]
ADAPTIVE_STRATEGIES: tuple[AdaptiveStrategy, ...] = ("aimd", "gradient")
#: Bound of a breaker's ring buffer: its state is one Redis hash holding the window as text.
MAX_BREAKER_WINDOW = 10_000

_DOMAIN_KEYS = frozenset({"domain", "descriptors", "failure_mode", "shadow_mode"})
_DESCRIPTOR_KEYS = frozenset(
    {
        "key",
        "value",
        "rate_limit",
        "circuit_breaker",
        "adaptive",
        "descriptors",
        "shadow_mode",
        "detailed_metric",
        "allow",
        "deny",
    }
)
_ADAPTIVE_KEYS = frozenset(
    {
        "strategy",
        "min_limit",
        "max_limit",
        "initial_limit",
        "target_latency_s",
        "max_error_ratio",
        "increase",
        "decrease",
        "cooldown_s",
        "smoothing",
    }
)
_AIMD_ONLY = ("target_latency_s", "increase", "decrease", "cooldown_s")
_BREAKER_KEYS = frozenset(
    {"strategy", "threshold", "slow_call_s", "window", "min_calls", "open_s", "half_open_probes"}
)
_RATE_LIMIT_KEYS = frozenset(
    {"unit", "requests_per_unit", "unlimited", "name", "replaces", "algorithm", "burst", "align"}
)
#: Where a limiter's rejection of a rate lands in a rule (`Limiter.arguments` names rate fields).
_RATE_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "rate.burst": "burst",
        "rate.align": "align",
        "rate.limit": "requests_per_unit",
        "rate.period_s": "unit",
    }
)


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    """The limit of a descriptor rule.

    Attributes:
        requests_per_unit: Units allowed per period, >= 0.
        unit: The period's unit name (`second` ... `year`); empty when unlimited.
        period_s: The period in seconds; 0 when unlimited.
        unlimited: Whether nothing is counted or limited.
        name: Optional name, which `replaces` of other rules refers to.
        replaces: Names of rules this one replaces when both apply to one request.
        algorithm: Entry-point name of the limiter (`tessera.limiters`).
        burst: Bucket algorithms: units let through at once (0: `requests_per_unit`).
        align: `epoch` or `calendar` windows (windowed algorithms).

    """

    requests_per_unit: int
    unit: str
    period_s: float
    unlimited: bool = False
    name: str = ""
    replaces: tuple[str, ...] = ()
    algorithm: str = DEFAULT_ALGORITHM
    burst: int = 0
    align: Alignment = "epoch"

    def rate(self, limit: int | None = None) -> Rate:
        """Return the limiter's `Rate` of this rule, `limit` replacing `requests_per_unit`."""
        return Rate(
            self.requests_per_unit if limit is None else limit,
            self.period_s,
            self.burst,
            self.align,
        )


@dataclass(frozen=True, slots=True)
class CircuitBreakerRule:
    """A circuit breaker on a target descriptor, fed by `ReportOutcome`.

    Attributes:
        strategy: Which calls are bad and when the breaker opens: `error_ratio` (failures, opens
            when bad / calls >= threshold), `slow_call_ratio` (calls of at least `slow_call_s`,
            same ratio) or `error_count` (failures, opens when bad >= threshold).
        threshold: A ratio in (0, 1] for the ratio strategies, a count >= 1 for `error_count`.
        window: How many of the latest outcomes the ring buffer keeps, >= 1.
        min_calls: Outcomes the window must hold before the breaker may open, in [1, window].
        open_s: How long the breaker stays open before letting probes through, > 0.
        half_open_probes: Probe calls admitted half-open; that many successes close the breaker,
            one bad outcome opens it again.
        slow_call_s: The latency from which a call is slow (`slow_call_ratio` only), > 0.

    """

    strategy: BreakerStrategy
    threshold: float
    window: int
    min_calls: int
    open_s: float
    half_open_probes: int
    slow_call_s: float = 0.0


@dataclass(frozen=True, slots=True)
class AdaptiveRule:
    """An adaptive limit: the rule's `requests_per_unit` moved by reported outcomes.

    Attributes:
        strategy: `aimd` (additive increase, multiplicative decrease on high latency or errors)
            or `gradient` (the limit follows the ratio of long-term to recent latency).
        min_limit: The limit never goes below, >= 1.
        max_limit: The limit never goes above, >= min_limit.
        initial_limit: The limit before any outcome, in [min_limit, max_limit].
        max_error_ratio: Above this moving average of failures the limit decreases, in [0, 1].
        smoothing: Weight of a new sample in the moving averages, in (0, 1].
        target_latency_s: `aimd`: above this moving average of latency the limit decreases.
        increase: `aimd`: about how much the limit grows per `limit` good outcomes.
        decrease: `aimd`: the factor applied on a decrease, in (0, 1).
        cooldown_s: `aimd`: at most one decrease per this many seconds.

    """

    strategy: AdaptiveStrategy
    min_limit: int
    max_limit: int
    initial_limit: int
    max_error_ratio: float
    smoothing: float
    target_latency_s: float = 0.0
    increase: float = 1.0
    decrease: float = 0.5
    cooldown_s: float = 1.0


@dataclass(frozen=True, slots=True)
class DescriptorRule:
    """One node of a domain's descriptor tree.

    Attributes:
        key: The entry key it matches.
        value: The entry value it matches; empty matches any value, a trailing `*` a prefix.
        path: Where it is in the configuration (`descriptors[0].descriptors[1]`).
        rate_limit: Its limit, or None for an inner node.
        circuit_breaker: Its circuit breaker, if any.
        adaptive: What moves its rate limit's `requests_per_unit`, if anything.
        shadow_mode: Count and report, never deny.
        allow: Values of this key that are never limited.
        deny: Values of this key that are always denied.
        children: Nested rules by `key_value` (exact), `key_prefix*` (wildcard) or `key`.
        wildcards: The keys of `children` that end with `*`, in configuration order.

    """

    key: str
    value: str
    path: str
    rate_limit: RateLimitRule | None = None
    circuit_breaker: CircuitBreakerRule | None = None
    adaptive: AdaptiveRule | None = None
    shadow_mode: bool = False
    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()
    children: Mapping[str, DescriptorRule] = field(default_factory=dict)
    wildcards: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """The validated configuration of one domain.

    Attributes:
        domain: Its name.
        root: A synthetic root whose children are the top-level descriptors.
        failure_mode: What limited descriptors get while Redis is unreachable: `open` admits,
            `closed` denies.
        shadow_mode: Whether every rule of the domain runs in shadow mode.
        text: The YAML it was parsed from.
        digest: SHA-256 of `text`, a version that does not depend on where it was stored.

    """

    domain: str
    root: DescriptorRule
    failure_mode: FailureMode = "open"
    shadow_mode: bool = False
    text: str = ""
    digest: str = ""


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]  # SafeLoader is untyped (Any)
    """A safe loader that rejects duplicate keys instead of keeping the last one."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} on line {line}", key_node.start_mark
            )
        seen.add(key)
    mapping: dict[Any, Any] = loader.construct_mapping(node)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse_domain(text: str, *, algorithms: Collection[str], source: str = "") -> DomainConfig:
    """Parse and validate one domain's YAML (envoyproxy/ratelimit's format plus extensions).

    Args:
        text: The YAML document.
        algorithms: Names of the installed limiters; a rule naming another is rejected.
        source: Where the text came from, prefixed to every field path (`"users.yaml:"`).

    Returns:
        The frozen configuration.

    Raises:
        ValidationError: The YAML is malformed or a field is invalid; each violation names the
            path of the offending field (`descriptors[1].rate_limit.unit`).

    """
    try:
        document = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ValidationError.for_field(source or "yaml", f"invalid YAML: {error}") from error
    parser = _Parser(algorithms, source)
    config = parser.domain(document, text)
    if parser.violations:
        raise ValidationError(parser.violations)
    assert config is not None  # no violation means every part was built
    return config


class _Parser:
    def __init__(self, algorithms: Collection[str], source: str) -> None:
        self.algorithms = algorithms
        self.source = source
        self.violations: list[FieldViolation] = []

    def fail(self, path: str, description: str) -> None:
        self.violations.append(FieldViolation(f"{self.source}{path}", description))

    def domain(self, document: Any, text: str) -> DomainConfig | None:
        if not isinstance(document, dict):
            self.fail("domain", "the document must be a mapping with a domain")
            return None
        self.unknown_keys(document, _DOMAIN_KEYS, "")
        domain = document.get("domain")
        if not isinstance(domain, str) or not domain:
            self.fail("domain", "must be a non-empty string")
        elif "{" in domain or "}" in domain:
            self.fail("domain", "must not contain { or } (they delimit Redis hash tags)")
        failure_mode = document.get("failure_mode", "open")
        if failure_mode not in ("open", "closed"):
            self.fail("failure_mode", "must be open or closed")
        shadow = self.boolean(document, "shadow_mode", "")
        root = DescriptorRule(key="", value="", path="")
        root = self.children(root, document.get("descriptors", []), "descriptors")
        if self.violations:
            return None
        return DomainConfig(
            domain=str(domain),
            root=root,
            failure_mode=failure_mode,
            shadow_mode=shadow,
            text=text,
            digest=hashlib.sha256(text.encode()).hexdigest(),
        )

    def children(self, parent: DescriptorRule, items: Any, path: str) -> DescriptorRule:
        if items is None:
            items = []
        if not isinstance(items, list):
            self.fail(path, "must be a list of descriptors")
            return parent
        children: dict[str, DescriptorRule] = {}
        wildcards: list[str] = []
        for index, item in enumerate(items):
            item_path = f"{path}[{index}]"
            rule = self.descriptor(item, item_path)
            if rule is None:
                continue
            composite = f"{rule.key}_{rule.value}" if rule.value else rule.key
            if composite in children:
                self.fail(
                    item_path,
                    f"duplicate descriptor key {rule.key!r} value {rule.value!r} "
                    f"(first at {children[composite].path})",
                )
                continue
            children[composite] = rule
            if rule.value.endswith("*"):
                wildcards.append(composite)
        return DescriptorRule(
            key=parent.key,
            value=parent.value,
            path=parent.path,
            rate_limit=parent.rate_limit,
            circuit_breaker=parent.circuit_breaker,
            adaptive=parent.adaptive,
            shadow_mode=parent.shadow_mode,
            allow=parent.allow,
            deny=parent.deny,
            children=MappingProxyType(children),
            wildcards=tuple(wildcards),
        )

    def descriptor(self, item: Any, path: str) -> DescriptorRule | None:
        if not isinstance(item, dict):
            self.fail(path, "must be a mapping with a key")
            return None
        self.unknown_keys(item, _DESCRIPTOR_KEYS, path + ".")
        key, value = item.get("key"), item.get("value", "")
        if not isinstance(key, str) or not key:
            self.fail(f"{path}.key", "must be a non-empty string")
            return None
        if not isinstance(value, str):
            self.fail(f"{path}.value", "must be a string")
            return None
        rate_limit = None
        if "rate_limit" in item:
            rate_limit = self.rate_limit(item["rate_limit"], f"{path}.rate_limit")
        breaker = None
        if "circuit_breaker" in item:
            breaker = self.circuit_breaker(item["circuit_breaker"], f"{path}.circuit_breaker")
        adaptive = None
        if "adaptive" in item:
            adaptive = self.adaptive(item["adaptive"], f"{path}.adaptive")
            if rate_limit is None or rate_limit.unlimited:
                self.fail(f"{path}.adaptive", "needs a rate_limit with requests_per_unit to adapt")
        rule = DescriptorRule(
            key=key,
            value=value,
            path=path,
            rate_limit=rate_limit,
            circuit_breaker=breaker,
            adaptive=adaptive,
            shadow_mode=self.boolean(item, "shadow_mode", path + "."),
            allow=self.values(item, "allow", path),
            deny=self.values(item, "deny", path),
        )
        self.boolean(item, "detailed_metric", path + ".")  # accepted for compatibility
        return self.children(rule, item.get("descriptors"), f"{path}.descriptors")

    def rate_limit(self, item: Any, path: str) -> RateLimitRule | None:
        if not isinstance(item, dict):
            self.fail(path, "must be a mapping")
            return None
        before = len(self.violations)
        self.unknown_keys(item, _RATE_LIMIT_KEYS, path + ".")
        unlimited = self.boolean(item, "unlimited", path + ".")
        name = item.get("name", "")
        if not isinstance(name, str):
            self.fail(f"{path}.name", "must be a string")
            name = ""
        replaces = self.replaces(item.get("replaces", []), f"{path}.replaces")
        algorithm = item.get("algorithm", DEFAULT_ALGORITHM)
        if algorithm not in self.algorithms:
            known = ", ".join(sorted(self.algorithms))
            self.fail(f"{path}.algorithm", f"unknown algorithm {algorithm!r}; known: {known}")
        if unlimited:
            if any(name in item for name in ("unit", "requests_per_unit", "burst", "align")):
                self.fail(
                    path, "an unlimited rate_limit takes no unit, requests_per_unit, burst or align"
                )
            return RateLimitRule(0, "", 0.0, True, name, replaces, str(algorithm))
        unit = item.get("unit")
        seconds = UNIT_SECONDS.get(unit.lower()) if isinstance(unit, str) else None
        if seconds is None:
            self.fail(f"{path}.unit", f"must be one of {', '.join(UNIT_SECONDS)}")
        count = item.get("requests_per_unit")
        if isinstance(count, bool) or not isinstance(count, int):
            self.fail(f"{path}.requests_per_unit", "must be an integer")
        elif count < 0:
            self.fail(f"{path}.requests_per_unit", "must be >= 0")
        burst = 0
        if "burst" in item:
            burst = self.integer(item, "burst", path, 1, 2**31, default=None) or 0
        align = item.get("align", "epoch")
        if align not in ("epoch", "calendar"):
            self.fail(f"{path}.align", "must be epoch or calendar")
            align = "epoch"
        if seconds is None or not isinstance(count, int):
            return None
        rule = RateLimitRule(
            count,
            str(unit).lower(),
            float(seconds),
            False,
            name,
            replaces,
            str(algorithm),
            burst,
            align,
        )
        if len(self.violations) == before:  # what the parser found is reported once
            self.check_rate(rule, path)
        return rule

    def check_rate(self, rule: RateLimitRule, path: str) -> None:
        # The algorithm itself tells which extensions it has (a burst, calendar windows): the
        # installed limiter encoding the rule's rate rejects what it does not take.
        limiter = (
            self.algorithms.get(rule.algorithm) if isinstance(self.algorithms, Mapping) else None
        )
        if not isinstance(limiter, Limiter):
            return
        try:
            limiter.arguments(rule.rate(), 0)
        except ValidationError as error:
            for violation in error.violations or (FieldViolation("", error.message),):
                name = _RATE_FIELDS.get(violation.field, violation.field)
                self.fail(f"{path}.{name}" if name else path, violation.description)

    def circuit_breaker(self, item: Any, path: str) -> CircuitBreakerRule | None:
        if not isinstance(item, dict):
            self.fail(path, "must be a mapping")
            return None
        self.unknown_keys(item, _BREAKER_KEYS, path + ".")
        strategy = item.get("strategy")
        if strategy not in BREAKER_STRATEGIES:
            self.fail(f"{path}.strategy", f"must be one of {', '.join(BREAKER_STRATEGIES)}")
            return None
        before = len(self.violations)
        window = self.integer(item, "window", path, 1, MAX_BREAKER_WINDOW, default=None)
        min_calls = None
        if window is not None:  # a bad window was reported; min_calls is bounded by it
            min_calls = self.integer(item, "min_calls", path, 1, window, default=window)
        probes = self.integer(item, "half_open_probes", path, 1, 1000, default=1)
        open_s = self.positive(item, "open_s", path)
        threshold = self.positive(item, "threshold", path)
        if strategy == "error_count":
            if threshold is not None and threshold != int(threshold):
                self.fail(f"{path}.threshold", "must be a whole number of failures")
        elif threshold is not None and threshold > 1:
            self.fail(f"{path}.threshold", "must be a ratio in (0, 1]")
        slow_call_s = 0.0
        if strategy == "slow_call_ratio":
            slow_call_s = self.positive(item, "slow_call_s", path) or 0.0
        elif "slow_call_s" in item:
            self.fail(f"{path}.slow_call_s", "applies to the slow_call_ratio strategy only")
        if (
            len(self.violations) > before
            or window is None
            or min_calls is None
            or probes is None
            or open_s is None
            or threshold is None
        ):
            return None
        return CircuitBreakerRule(
            strategy, threshold, window, min_calls, open_s, probes, slow_call_s
        )

    def adaptive(self, item: Any, path: str) -> AdaptiveRule | None:
        if not isinstance(item, dict):
            self.fail(path, "must be a mapping")
            return None
        self.unknown_keys(item, _ADAPTIVE_KEYS, path + ".")
        strategy = item.get("strategy")
        if strategy not in ADAPTIVE_STRATEGIES:
            self.fail(f"{path}.strategy", f"must be one of {', '.join(ADAPTIVE_STRATEGIES)}")
            return None
        before = len(self.violations)
        low = self.integer(item, "min_limit", path, 1, 2**31, default=None)
        high = self.integer(item, "max_limit", path, low or 1, 2**31, default=None)
        initial = None
        if low is not None and high is not None:
            initial = self.integer(item, "initial_limit", path, low, high, default=high)
        error_ratio = self.fraction(item, "max_error_ratio", path, 0.1, closed=True)
        smoothing = self.fraction(item, "smoothing", path, 0.2, closed=False)
        if strategy == "gradient":
            for name in _AIMD_ONLY:
                if name in item:
                    self.fail(f"{path}.{name}", "applies to the aimd strategy only")
            target = 0.0
            increase, decrease, cooldown = 1.0, 0.5, 1.0
        else:
            target = self.positive(item, "target_latency_s", path) or 0.0
            increase = self.positive({"increase": 1.0} | item, "increase", path) or 0.0
            decrease = self.fraction(item, "decrease", path, 0.5, closed=False)
            if decrease == 1.0:
                self.fail(f"{path}.decrease", "must be in (0, 1)")
            cooldown = self.positive({"cooldown_s": 1.0} | item, "cooldown_s", path) or 0.0
        if len(self.violations) > before or low is None or high is None or initial is None:
            return None
        return AdaptiveRule(
            strategy,
            low,
            high,
            initial,
            error_ratio,
            smoothing,
            target,
            increase,
            decrease,
            cooldown,
        )

    def fraction(
        self, item: dict[str, Any], name: str, path: str, default: float, *, closed: bool
    ) -> float:
        # closed: [0, 1]; otherwise (0, 1].
        value = item.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"{path}.{name}", "must be a number")
            return default
        if not (0 <= value <= 1 if closed else 0 < value <= 1):
            self.fail(f"{path}.{name}", "must be in [0, 1]" if closed else "must be in (0, 1]")
            return default
        return float(value)

    def integer(
        self, item: dict[str, Any], name: str, path: str, low: int, high: int, default: int | None
    ) -> int | None:
        value = item.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{path}.{name}", "must be an integer")
            return None
        if not low <= value <= high:
            self.fail(f"{path}.{name}", f"must be in [{low}, {high}]")
            return None
        return value

    def positive(self, item: dict[str, Any], name: str, path: str) -> float | None:
        value = item.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            self.fail(f"{path}.{name}", "must be a number > 0")
            return None
        return float(value)

    def replaces(self, items: Any, path: str) -> tuple[str, ...]:
        if not isinstance(items, list):
            self.fail(path, "must be a list of {name: ...}")
            return ()
        names = []
        for index, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str) or not name:
                self.fail(f"{path}[{index}].name", "must be a non-empty string")
            else:
                names.append(name)
        return tuple(names)

    def values(self, item: dict[str, Any], name: str, path: str) -> frozenset[str]:
        values = item.get(name, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            self.fail(f"{path}.{name}", "must be a list of strings")
            return frozenset()
        return frozenset(values)

    def boolean(self, item: dict[str, Any], name: str, prefix: str) -> bool:
        value = item.get(name, False)
        if not isinstance(value, bool):
            self.fail(f"{prefix}{name}", "must be true or false")
            return False
        return value

    def unknown_keys(self, item: dict[str, Any], known: frozenset[str], prefix: str) -> None:
        for key in item:
            if key not in known:
                self.fail(f"{prefix}{key}", "unknown field")

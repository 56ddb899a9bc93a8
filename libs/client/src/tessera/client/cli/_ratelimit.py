import asyncio
import difflib
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, TypeVar

import typer
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from tessera.client.cli._service_cli import JsonOption, default_target, run_with
from tessera.client.ratelimit import (
    AdaptiveLimitState,
    CheckResult,
    CircuitBreakerState,
    Decision,
    RateLimiter,
)
from tessera.core import ConfigError, TesseraSettings, ValidationError
from tessera.core.etcd import EtcdClient
from tessera.core.redis import connect_redis

T = TypeVar("T")

ratelimit_app = typer.Typer(
    help="Check descriptors against the rate-limit service and manage its configuration.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
config_app = typer.Typer(
    help="Validate, store, read and compare rate-limit configuration (YAML, one domain a file).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
ratelimit_app.add_typer(config_app, name="config")

TargetOption = Annotated[
    str,
    typer.Option(envvar="TESSERA_RATELIMIT_TARGET", help="The rate-limit service, host:port."),
]
DEFAULT_TARGET = default_target("ratelimit")
DescriptorArgument = Annotated[
    str, typer.Argument(help="Entries in order, as key=value pairs joined by commas.")
]


def parse_descriptor(text: str) -> list[tuple[str, str]]:
    """Parse `key=value,key2=value2` into entries (a key alone has an empty value).

    Raises:
        ValidationError: An entry has an empty key.

    """
    entries = []
    for part in text.split(","):
        key, _, value = part.partition("=")
        if not key.strip():
            raise ValidationError.for_field("descriptor", f"entry {part!r} has no key")
        entries.append((key.strip(), value.strip()))
    return entries


@ratelimit_app.command("check")
def check(
    domain: Annotated[str, typer.Argument(help="The configuration domain.")],
    descriptors: Annotated[
        list[str], typer.Argument(help="One or more descriptors, each key=value[,key=value...].")
    ],
    hits: Annotated[int, typer.Option(help="Units each descriptor takes.", min=1)] = 1,
    peek: Annotated[bool, typer.Option(help="Decide without counting.")] = False,
    target: TargetOption = DEFAULT_TARGET,
    as_json: JsonOption = False,
) -> None:
    """Count and decide descriptors; exit 0 when all are within their limits, 1 otherwise."""
    parsed = [parse_descriptor(text) for text in descriptors]

    async def call(limiter: RateLimiter) -> CheckResult:
        if peek:
            return await limiter.peek(domain, parsed)
        return await limiter.check(domain, parsed, hits=hits)

    result = _with_client(target, call)
    if as_json:
        payload = {"allowed": result.allowed, "decisions": [asdict(d) for d in result.decisions]}
        typer.echo(json.dumps(payload, indent=2, default=str))
    else:
        Console().print(_decision_table(descriptors, result.decisions))
    raise typer.Exit(0 if result.allowed else 1)


@ratelimit_app.command("explain")
def explain(
    domain: Annotated[str, typer.Argument(help="The configuration domain.")],
    descriptor: DescriptorArgument,
    target: TargetOption = DEFAULT_TARGET,
    as_json: JsonOption = False,
) -> None:
    """Show which rule matches a descriptor, why, and its current state (nothing counted).

    The state includes the rule's circuit breaker and its adaptive limit, with the aggregated
    usage the limit's last step saw (decision rates, utilisation, whether an increase was held).
    """
    entries = parse_descriptor(descriptor)
    explanation = _with_client(target, lambda limiter: limiter.explain(domain, entries))
    if as_json:
        typer.echo(json.dumps(asdict(explanation), indent=2, default=str))
        return
    for step in explanation.steps:
        typer.echo(f"- {step}")
    Console().print(_decision_table([descriptor], [explanation.decision]))
    decision = explanation.decision
    for line in _state_lines(decision.circuit_breaker, decision.adaptive):
        typer.echo(line)
    typer.echo(f"config version: {explanation.config_version}")


@ratelimit_app.command("release")
def release(
    domain: Annotated[str, typer.Argument(help="The configuration domain.")],
    descriptor: DescriptorArgument,
    lease: Annotated[str, typer.Argument(help="A concurrency lease or a quota lease.")],
    unused: Annotated[
        int, typer.Option(help="Quota leases: the tokens not spent, given back.", min=0)
    ] = 0,
    target: TargetOption = DEFAULT_TARGET,
) -> None:
    """Give back a lease's units; exit 0 when it was still held, 1 otherwise."""
    entries = parse_descriptor(descriptor)
    released = _with_client(
        target, lambda limiter: limiter.release(domain, entries, lease, unused=unused)
    )
    typer.echo("released" if released else "not held (released before, or expired)")
    raise typer.Exit(0 if released else 1)


@ratelimit_app.command("report-outcome")
def report_outcome(
    domain: Annotated[str, typer.Argument(help="The configuration domain.")],
    descriptor: DescriptorArgument,
    success: Annotated[
        bool, typer.Option("--success/--failure", help="Whether the protected call succeeded.")
    ] = True,
    latency: Annotated[float, typer.Option(help="The call's latency in seconds.", min=0)] = 0.0,
    target: TargetOption = DEFAULT_TARGET,
    as_json: JsonOption = False,
) -> None:
    """Feed one call's outcome to the target's circuit breaker and adaptive limit.

    Prints their states after it (the adaptive limit with the usage its step saw).
    """
    entries = parse_descriptor(descriptor)
    result = _with_client(
        target,
        lambda limiter: limiter.report_outcome(domain, entries, success=success, latency_s=latency),
    )
    if as_json:
        typer.echo(json.dumps(asdict(result), indent=2, default=str))
        return
    for line in _state_lines(result.circuit_breaker, result.adaptive):
        typer.echo(line)


@ratelimit_app.command("usage")
def usage(
    since: Annotated[
        float, typer.Option(help="Seconds to look back (at most 2 days).", min=60)
    ] = 3600.0,
    as_json: JsonOption = False,
) -> None:
    """Show decisions per domain and rule, summed from the usage buckets in TESSERA_REDIS_URL."""
    ratelimit = _service_package()

    async def read(redis: Redis) -> Any:
        return await ratelimit.read_usage(redis, since_s=since)

    rows = run_with(lambda: connect_redis(TesseraSettings.from_env()), read)
    if as_json:
        typer.echo(json.dumps([asdict(row) for row in rows], indent=2))
        return
    table = Table(title=f"decisions in the last {since / 3600:g} h", title_justify="left")
    for column in ("domain", "rule", "admitted", "denied", "shadow denied", "redis down"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.domain,
            row.rule,
            f"{row.admitted:,}",
            f"{row.denied:,}",
            f"{row.shadow_denied:,}",
            f"{row.unavailable:,}",
        )
    Console().print(table)


@ratelimit_app.command("audit")
def audit(
    config_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="TESSERA_RATELIMIT_CONFIG_DIR", help="The directory the services load."
        ),
    ] = None,
    since: Annotated[float, typer.Option(help="Seconds of usage to judge by.", min=60)] = 86_400.0,
    as_json: JsonOption = False,
) -> None:
    """Audit the configuration now: etcd against the directory, and against usage.

    Reports drift between etcd and the directory, rules never hit and shadow-mode rules that
    would have denied; exits 1 when etcd and the directory disagree.
    """
    _service_package()
    from tessera.ratelimit import jobs  # the service package is an optional dependency

    findings = asyncio.run(jobs.run_audit(TesseraSettings.from_env(), config_dir, since_s=since))
    if as_json:
        typer.echo(json.dumps([asdict(finding) for finding in findings], indent=2))
    else:
        for finding in findings:
            rule = f" {finding.rule}" if finding.rule else ""
            typer.echo(f"{finding.kind}: {finding.domain}{rule}: {finding.detail}")
        if not findings:
            typer.echo("no findings")
    disagree = {"drift", "etcd_only", "file_only", "invalid_in_etcd"}
    raise typer.Exit(1 if any(f.kind in disagree for f in findings) else 0)


@config_app.command("check")
def config_check(
    paths: Annotated[list[Path], typer.Argument(help="YAML files or directories of them.")],
) -> None:
    """Validate configuration files offline; exit 1 naming each bad field, else 0."""
    ratelimit = _service_package()
    algorithms = ratelimit.installed_limiters()
    failed = False
    for path in _yaml_files(paths):
        try:
            config = ratelimit.parse_domain(
                path.read_text(), algorithms=algorithms, source=f"{path}:"
            )
        except ValidationError as error:
            failed = True
            for violation in error.violations or ():
                typer.echo(f"{violation.field}: {violation.description}", err=True)
            if not error.violations:
                typer.echo(f"{path}: {error.message}", err=True)
        else:
            typer.echo(f"{path}: domain {config.domain} OK")
    raise typer.Exit(1 if failed else 0)


@config_app.command("apply")
def config_apply(
    path: Annotated[Path, typer.Argument(help="One domain's YAML file.", exists=True)],
) -> None:
    """Validate a file and store it in etcd; running services apply it without restart."""
    ratelimit = _service_package()

    async def apply(etcd: EtcdClient) -> Any:
        store = ratelimit.ConfigStore(etcd, algorithms=ratelimit.installed_limiters())
        return await store.apply(path.read_text())

    applied = _with_etcd(apply)
    typer.echo(f"domain {applied.config.domain} stored as version {applied.version}")


@config_app.command("get")
def config_get(domain: Annotated[str, typer.Argument(help="The domain to print.")]) -> None:
    """Print a domain's stored YAML (its version goes to stderr)."""
    stored = _stored(domain)
    typer.echo(f"# version {stored.version}", err=True)
    typer.echo(stored.config.text, nl=False)


@config_app.command("diff")
def config_diff(
    path: Annotated[Path, typer.Argument(help="One domain's YAML file.", exists=True)],
) -> None:
    """Show how a file differs from what etcd stores; exit 1 when they differ."""
    ratelimit = _service_package()
    text = path.read_text()
    config = ratelimit.parse_domain(text, algorithms=ratelimit.installed_limiters())
    stored = _stored(config.domain).config.text
    diff = list(
        difflib.unified_diff(
            stored.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=f"etcd:{config.domain}",
            tofile=str(path),
        )
    )
    typer.echo("".join(diff), nl=False)
    raise typer.Exit(1 if diff else 0)


def _stored(domain: str) -> Any:
    ratelimit = _service_package()

    async def get(etcd: EtcdClient) -> Any:
        return await ratelimit.ConfigStore(etcd, algorithms=ratelimit.installed_limiters()).get(
            domain
        )

    return _with_etcd(get)


def _service_package() -> ModuleType:
    # Imported on use: the rest of the CLI works without the service installed.
    try:
        import tessera.ratelimit  # an optional dependency of the CLI
    except ImportError as error:
        raise ConfigError("these commands need the tessera-ratelimit package") from error
    return tessera.ratelimit


def _yaml_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        else:
            files.append(path)
    return files


def _with_client(target: str, call: Callable[[RateLimiter], Awaitable[T]]) -> T:
    return run_with(lambda: RateLimiter.connect(target, timeout_s=5.0), call)


def _with_etcd(call: Callable[[EtcdClient], Awaitable[T]]) -> T:
    return run_with(lambda: EtcdClient.from_settings(TesseraSettings.from_env()), call)


def _state_lines(
    breaker: CircuitBreakerState | None, adaptive: AdaptiveLimitState | None
) -> list[str]:
    # A rule's circuit breaker and adaptive limit, one line each, then the limit's usage.
    lines = []
    if breaker is not None:
        lines.append(
            f"circuit breaker ({breaker.strategy}): {breaker.state}, "
            f"{breaker.bad_calls} bad of {breaker.calls} calls"
        )
    if adaptive is None:
        return lines
    lines.append(
        f"adaptive limit ({adaptive.strategy}): {adaptive.limit}, latency "
        f"{adaptive.latency_s:.3f}s (baseline {adaptive.baseline_latency_s:.3f}s), "
        f"error ratio {adaptive.error_ratio:.3f}, {adaptive.samples} outcomes"
    )
    usage = adaptive.usage
    if usage is None:
        why = "no outcome yet" if not adaptive.samples else "no usage feed at the last outcome"
        lines.append(f"usage: none seen ({why}; outcomes alone move the limit)")
    else:
        verdict = "increase held (below 0.5)" if usage.increase_held else "increase not held"
        lines.append(
            f"usage over {usage.window_s:g}s: offered {usage.offered_per_s:.3f}/s, admitted "
            f"{usage.admitted_per_s:.3f}/s, denied {usage.denied_per_s:.3f}/s; "
            f"utilisation {usage.utilisation:.3f}, {verdict}"
        )
    return lines


def _decision_table(
    descriptors: list[str], decisions: tuple[Decision, ...] | list[Decision]
) -> Table:
    table = Table(title_justify="left")
    for column in (
        "descriptor",
        "allowed",
        "reason",
        "rule",
        "algorithm",
        "limit",
        "remaining",
        "retry after",
        "reset after",
    ):
        table.add_column(column)
    for text, d in zip(descriptors, decisions, strict=True):
        limit = f"{d.limit}/{d.period_s:g}s" if d.algorithm else "-"
        table.add_row(
            text,
            "yes" if d.allowed else "no",
            d.reason,
            d.rule or "-",
            d.algorithm or "-",
            limit,
            str(d.remaining) if d.algorithm else "-",
            f"{d.retry_after_s:.3f}s" if not d.allowed else "-",
            f"{d.reset_after_s:.3f}s" if d.algorithm else "-",
        )
    return table

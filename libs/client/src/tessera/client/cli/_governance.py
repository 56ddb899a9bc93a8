"""`tessera gov`: data contracts, standards and record validation (the governance service)."""

import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tessera.client.cli._service_cli import JsonOption, default_target
from tessera.client.governance import (
    ContractRefusedError,
    Incompatibility,
    LintViolation,
    RequiredField,
    Rule,
    Scan,
    ScanFailedError,
    ScanReport,
    Standard,
    SyncGovernanceClient,
)
from tessera.client.governance import Table as GovTable
from tessera.core import ValidationError
from tessera.core.plugins import RULE_ENGINES, load_plugins

gov_app = typer.Typer(
    help="Data contracts and record validation (the governance service).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
contract_app = typer.Typer(
    help="Push, check and read versioned JSON Schema contracts.", no_args_is_help=True
)
rules_app = typer.Typer(help="Check and store rule sets.", no_args_is_help=True)
standard_app = typer.Typer(help="Store naming-and-structure standards.", no_args_is_help=True)
gov_app.add_typer(contract_app, name="contract")
gov_app.add_typer(rules_app, name="rules")
gov_app.add_typer(standard_app, name="standard")
scan_app = typer.Typer(
    help="Scan whole datasets against a contract, rules and the entity model.",
    no_args_is_help=True,
)
gov_app.add_typer(scan_app, name="scan")
schedule_app = typer.Typer(help="Scans that beat starts at an interval.", no_args_is_help=True)
scan_app.add_typer(schedule_app, name="schedule")

TargetOption = Annotated[
    str,
    typer.Option(envvar="TESSERA_GOVERNANCE_TARGET", help="The governance service, host:port."),
]
DEFAULT_TARGET = default_target("governance")
FileArgument = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]


@contract_app.command("push")
def push(
    subject: Annotated[str, typer.Argument(help="The subject.")],
    schema_file: FileArgument,
    owner: Annotated[str, typer.Option(help="Who answers for the contract.")] = "",
    description: Annotated[str, typer.Option(help="What changed.")] = "",
    target: TargetOption = DEFAULT_TARGET,
) -> None:
    """Register SCHEMA_FILE (a JSON Schema) as the next version of SUBJECT.

    Exits with status 1, listing every reason, when the subject's compatibility mode or its
    standard (policy REJECT) refuses it; prints the standard's warnings under policy WARN.
    """
    with SyncGovernanceClient(target) as gov:
        try:
            registration = gov.push_contract(
                subject, schema_file.read_text(), owner=owner, description=description
            )
        except ContractRefusedError as error:
            _print_incompatibilities(f"refused: {subject}", error.incompatibilities)
            raise typer.Exit(1) from None
    contract = registration.contract
    verb = "registered" if registration.created else "unchanged, already"
    typer.echo(f"{verb} {subject} version {contract.version} (id {contract.id})")
    if registration.warnings:
        _print_lint(f"warnings: {subject} breaks its standard", registration.warnings)


@contract_app.command("check")
def check(
    subject: Annotated[str, typer.Argument(help="The subject.")],
    schema_file: FileArgument,
    target: TargetOption = DEFAULT_TARGET,
    as_json: JsonOption = False,
) -> None:
    """Check whether SCHEMA_FILE could be registered under SUBJECT; exit 1 if not."""
    with SyncGovernanceClient(target) as gov:
        report = gov.check_contract(subject, schema_file.read_text())
    if as_json:
        typer.echo(json.dumps(asdict(report), indent=2))
    elif report.compatible:
        typer.echo(f"compatible with {subject} ({report.mode})")
    else:
        _print_incompatibilities(
            f"incompatible with {subject} ({report.mode})", report.incompatibilities
        )
    if not report.compatible:
        raise typer.Exit(1)


@contract_app.command("get")
def get(
    subject: Annotated[str, typer.Argument(help="The subject (ignored with --id).")] = "",
    version: Annotated[int, typer.Option(help="The version; 0 is the latest.")] = 0,
    contract_id: Annotated[int | None, typer.Option("--id", help="A contract id.")] = None,
    target: TargetOption = DEFAULT_TARGET,
) -> None:
    """Print a contract as JSON: by subject and version, or by id."""
    if contract_id is None and not subject:
        raise ValidationError.for_field("subject", "give a subject or --id")
    with SyncGovernanceClient(target) as gov:
        contract = (
            gov.get_contract_by_id(contract_id)
            if contract_id is not None
            else gov.get_contract(subject, version)
        )
    shown = asdict(contract)
    shown["schema"] = json.loads(shown.pop("schema_json"))
    typer.echo(json.dumps(shown, indent=2))


@contract_app.command("ls")
def list_subjects(target: TargetOption = DEFAULT_TARGET, as_json: JsonOption = False) -> None:
    """List subjects with their latest version and compatibility mode."""
    with SyncGovernanceClient(target) as gov:
        subjects = gov.list_subjects()
    if as_json:
        typer.echo(json.dumps([asdict(subject) for subject in subjects], indent=2))
        return
    table = Table(title="subjects", title_justify="left")
    for column in ("subject", "latest version", "compatibility"):
        table.add_column(column)
    for subject in subjects:
        table.add_row(subject.name, str(subject.latest_version), subject.compatibility)
    Console().print(table)


@standard_app.command("put")
def put_standard(standard_file: FileArgument, target: TargetOption = DEFAULT_TARGET) -> None:
    """Store STANDARD_FILE as the next version of its standard.

    The file is JSON: `{"name": ..., "entity_pattern": ..., "field_pattern": ...,
    "reserved_words": [...], "required_fields": [{"name": ..., "type": ..., "format": ...}],
    "allowed_types": [...], "description": ...}`.
    """
    spec = _read_json(standard_file)
    if not isinstance(spec, dict):
        raise ValidationError.for_field("standard_file", "must be a JSON object")
    try:
        standard = Standard(
            **{
                **spec,
                "reserved_words": tuple(spec.get("reserved_words", ())),
                "required_fields": tuple(
                    RequiredField(**item) for item in spec.get("required_fields", ())
                ),
                "allowed_types": tuple(spec.get("allowed_types", ())),
            }
        )
    except TypeError as error:
        raise ValidationError.for_field("standard_file", f"bad standard: {error}") from None
    with SyncGovernanceClient(target) as gov:
        stored = gov.put_standard(standard)
    typer.echo(f"stored standard {stored.name} version {stored.version}")


@gov_app.command("lint")
def lint(
    schema_file: FileArgument,
    standard: Annotated[str, typer.Option("--standard", "-s", help="The standard.")],
    version: Annotated[int, typer.Option(help="Standard version; 0 is the latest.")] = 0,
    target: TargetOption = DEFAULT_TARGET,
    as_json: JsonOption = False,
) -> None:
    """Check SCHEMA_FILE (a JSON Schema) against a standard; exit 1 if it breaks it."""
    with SyncGovernanceClient(target) as gov:
        violations = gov.lint_schema(standard, schema_file.read_text(), version=version)
    if as_json:
        typer.echo(json.dumps([asdict(violation) for violation in violations], indent=2))
    elif violations:
        _print_lint(f"{schema_file.name} breaks {standard}", violations)
    else:
        typer.echo(f"{schema_file.name} follows {standard}")
    if violations:
        raise typer.Exit(1)


@rules_app.command("put")
def put_rules(rule_set_file: FileArgument, target: TargetOption = DEFAULT_TARGET) -> None:
    """Store RULE_SET_FILE as the next version of its rule set.

    The file is JSON: `{"name": ..., "engine": "cel", "rules": [{"name": ..., "expression": ...,
    "message": ..., "severity": "ERROR", "mode": "ENFORCE"}]}`.
    """
    name, engine, rules = _read_rule_set(rule_set_file)
    with SyncGovernanceClient(target) as gov:
        version = gov.put_rule_set(name, rules, engine=engine)
    typer.echo(f"stored rule set {name} version {version}")


@rules_app.command("check")
def check_rules(rule_set_file: FileArgument) -> None:
    """Compile every rule of RULE_SET_FILE with the locally installed engine, offline.

    The same check `put` gets from the service, without one: exits 1 listing each rule that does
    not compile (with line and column) or is over the engine's cost limit.
    """
    name, engine_name, rules = _read_rule_set(rule_set_file)
    engine = load_plugins(RULE_ENGINES).get(engine_name or "cel").create()
    problems = []
    for index, rule in enumerate(rules):
        try:
            engine.compile(rule.expression)
        except ValidationError as error:
            reason = "; ".join(v.description for v in error.violations) or error.message
            problems.append(f"rules[{index}] ({rule.name}): {reason}")
    for problem in problems:
        typer.echo(problem)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{name}: {len(rules)} rules compile")


def _read_rule_set(path: Path) -> tuple[str, str, list[Rule]]:
    spec = _read_json(path)
    if not isinstance(spec, dict) or not isinstance(spec.get("rules"), list):
        raise ValidationError.for_field("rule_set_file", "must be an object with a 'rules' list")
    try:
        rules = [Rule(**rule) for rule in spec["rules"]]
    except TypeError as error:
        raise ValidationError.for_field("rule_set_file", f"bad rule: {error}") from None
    return str(spec.get("name", "")), str(spec.get("engine", "")), rules


@gov_app.command("validate")
def validate(
    records_file: FileArgument,
    rule_set: Annotated[str, typer.Option("--rule-set", "-r", help="The rule set.")],
    version: Annotated[int, typer.Option(help="Rule set version; 0 is the latest.")] = 0,
    target: TargetOption = DEFAULT_TARGET,
    as_json: JsonOption = False,
) -> None:
    """Validate the records of RECORDS_FILE against a rule set; exit 1 if any is invalid.

    RECORDS_FILE holds JSON Lines (one object per line), or one JSON array of objects when its
    name ends in `.json`.
    """
    records = list(_records(records_file))
    with SyncGovernanceClient(target) as gov:
        verdicts = gov.validate_many(rule_set, records, version=version)
    invalid = sum(not verdict.valid for verdict in verdicts)
    if as_json:
        typer.echo(json.dumps([asdict(verdict) for verdict in verdicts], indent=2))
    else:
        table = Table(title=f"{rule_set}: rules that did not pass", title_justify="left")
        for column in ("record", "valid", "rule", "outcome", "severity", "mode", "message"):
            table.add_column(column)
        for number, verdict in enumerate(verdicts, start=1):
            for result in verdict.problems:
                table.add_row(
                    str(number),
                    "yes" if verdict.valid else "no",
                    result.rule,
                    result.outcome,
                    result.severity,
                    result.mode,
                    result.message,
                )
        if table.row_count:
            Console().print(table)
        typer.echo(f"{len(verdicts) - invalid} of {len(verdicts)} records valid")
    if invalid:
        raise typer.Exit(1)


def _records(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix == ".json":
        loaded = _read_json(path)
        items = loaded if isinstance(loaded, list) else [loaded]
        for index, item in enumerate(items):
            yield _record(item, f"{path}[{index}]")
        return
    with path.open() as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValidationError.for_field(
                        "records_file", f"line {number} is not JSON: {error.msg}"
                    ) from None
                yield _record(item, f"line {number}")


def _record(item: object, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValidationError.for_field("records_file", f"{where} is not a JSON object")
    return item


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValidationError.for_field(
            str(path), f"is not JSON: line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None


def _print_lint(title: str, items: list[LintViolation]) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("path", "rule", "message"):
        table.add_column(column)
    for item in items:
        table.add_row(item.path, item.rule, item.message)
    Console().print(table)


def _print_incompatibilities(title: str, items: list[Incompatibility]) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("version", "direction", "path", "kind", "reason"):
        table.add_column(column)
    for item in items:
        table.add_row(str(item.against_version), item.direction, item.path, item.kind, item.reason)
    Console().print(table)


DatasetArgument = Annotated[
    str,
    typer.Argument(
        help="A CSV, JSON Lines or Parquet file as workers see it, or a PostgreSQL table as "
        "table:CONNECTION/[SCHEMA.]TABLE (a connection configured on the service and workers)."
    ),
]
VersionOption = Annotated[int, typer.Option(help="Contract version; 0 is the latest.")]
RuleSetOption = Annotated[str, typer.Option("--rule-set", "-r", help="Rule set to evaluate.")]
UniqueOption = Annotated[
    list[str] | None, typer.Option("--unique", help="A field that must not repeat.")
]
ReferenceOption = Annotated[
    list[str] | None,
    typer.Option("--reference", help="ENTITY=DATASET: the dataset of a referenced entity."),
]
FreshnessFieldOption = Annotated[str, typer.Option(help="Timestamp field to check.")]
FreshnessSlaOption = Annotated[float, typer.Option(help="Largest allowed age, seconds.")]
ChunkRowsOption = Annotated[int, typer.Option(help="Rows per chunk; 0: the default.")]


def dataset_source(text: str) -> str | GovTable:
    """Read a dataset argument: a file path, or `table:CONNECTION/[SCHEMA.]TABLE`.

    Raises:
        ValidationError: A `table:` form without a connection or a table (field `dataset`).

    """
    if not text.startswith("table:"):
        return text
    connection, _, qualified = text.removeprefix("table:").partition("/")
    schema, _, table = qualified.rpartition(".")
    if not connection or not table:
        raise ValidationError.for_field(
            "dataset", f"'{text}' is not table:CONNECTION/[SCHEMA.]TABLE"
        )
    return GovTable(connection, table, schema or "public")


def _scan_options(
    version: int,
    rule_set: str,
    unique: list[str] | None,
    reference: list[str] | None,
    freshness_field: str,
    freshness_sla_s: float,
    chunk_rows: int,
) -> dict[str, Any]:
    references: dict[str, str | GovTable] = {}
    for item in reference or []:
        entity, _, source = item.partition("=")
        if not entity or not source:
            raise ValidationError.for_field("reference", f"'{item}' is not ENTITY=DATASET")
        references[entity] = dataset_source(source)
    return {
        "version": version,
        "rule_set": rule_set,
        "unique_fields": unique or [],
        "references": references,
        "freshness_field": freshness_field,
        "freshness_sla_s": freshness_sla_s,
        "chunk_rows": chunk_rows,
    }


@scan_app.command("start")
def scan_start(
    subject: Annotated[str, typer.Argument(help="The contract subject.")],
    dataset: DatasetArgument,
    version: VersionOption = 0,
    rule_set: RuleSetOption = "",
    unique: UniqueOption = None,
    reference: ReferenceOption = None,
    freshness_field: FreshnessFieldOption = "",
    freshness_sla_s: FreshnessSlaOption = 0.0,
    chunk_rows: ChunkRowsOption = 0,
    wait: Annotated[bool, typer.Option(help="Show progress and the report.")] = True,
    target: TargetOption = DEFAULT_TARGET,
) -> None:
    """Start a scan of DATASET against SUBJECT's contract and print its id.

    With --wait (the default) a progress bar follows the scan, then the report is printed as
    tables. Exits 1 when the scan fails or finds failing rows.
    """
    options = _scan_options(
        version, rule_set, unique, reference, freshness_field, freshness_sla_s, chunk_rows
    )
    with SyncGovernanceClient(target) as gov:
        scan_id = gov.start_scan(subject, dataset_source(dataset), **options)
        typer.echo(f"scan {scan_id} started")
        if not wait:
            return
        scan = _follow(gov, scan_id)
    assert scan.report is not None  # a SUCCEEDED scan has its report
    _print_report(scan.report)
    if scan.report.failing_rows:
        raise typer.Exit(1)


@schedule_app.command("put")
def schedule_put(
    name: Annotated[str, typer.Argument(help="The schedule's name.")],
    subject: Annotated[str, typer.Argument(help="The contract subject.")],
    dataset: DatasetArgument,
    every_s: Annotated[float, typer.Option(help="Interval in seconds (at least 1).")],
    version: VersionOption = 0,
    rule_set: RuleSetOption = "",
    unique: UniqueOption = None,
    reference: ReferenceOption = None,
    freshness_field: FreshnessFieldOption = "",
    freshness_sla_s: FreshnessSlaOption = 0.0,
    chunk_rows: ChunkRowsOption = 0,
    target: TargetOption = DEFAULT_TARGET,
) -> None:
    """Have beat scan DATASET every --every-s seconds (create or replace schedule NAME)."""
    options = _scan_options(
        version, rule_set, unique, reference, freshness_field, freshness_sla_s, chunk_rows
    )
    with SyncGovernanceClient(target) as gov:
        schedule = gov.put_scan_schedule(name, every_s, subject, dataset_source(dataset), **options)
    typer.echo(
        f"schedule {schedule.name}: every {schedule.every_s:g} s, first run in "
        f"{max(0.0, schedule.next_run_at - time.time()):.0f} s"
    )


@schedule_app.command("ls")
def schedule_ls(target: TargetOption = DEFAULT_TARGET, as_json: JsonOption = False) -> None:
    """List the scan schedules with their last run."""
    with SyncGovernanceClient(target) as gov:
        schedules = gov.list_scan_schedules()
    if as_json:
        typer.echo(json.dumps([asdict(item) for item in schedules], indent=2))
        return
    table = Table(title="scan schedules", title_justify="left")
    for column in ("name", "subject", "dataset", "every s", "next run", "last scan", "error"):
        table.add_column(column)
    for item in schedules:
        table.add_row(
            item.name,
            item.subject,
            item.dataset,
            f"{item.every_s:g}",
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(item.next_run_at)),
            item.last_scan_id,
            item.last_error,
        )
    Console().print(table)


@schedule_app.command("rm")
def schedule_rm(
    name: Annotated[str, typer.Argument(help="The schedule's name.")],
    target: TargetOption = DEFAULT_TARGET,
) -> None:
    """Delete a scan schedule (scans it started stay); exit 1 if there was none."""
    with SyncGovernanceClient(target) as gov:
        deleted = gov.delete_scan_schedule(name)
    typer.echo(f"schedule {name} " + ("deleted" if deleted else "not found"))
    if not deleted:
        raise typer.Exit(1)


@scan_app.command("status")
def scan_status(
    scan_id: Annotated[str, typer.Argument(help="The scan id; omit to list every scan.")] = "",
    target: TargetOption = DEFAULT_TARGET,
) -> None:
    """Show a scan's state and progress, or every scan's."""
    with SyncGovernanceClient(target) as gov:
        scans = [gov.get_scan(scan_id)] if scan_id else gov.list_scans()
    table = Table(title="scans", title_justify="left")
    for column in ("scan", "state", "rows done", "attempt", "subject", "rule set", "dataset"):
        table.add_column(column)
    for scan in scans:
        resumed = f" (resumed at row {scan.resumed_from_row})" if scan.resumed_from_row else ""
        table.add_row(
            scan.scan_id,
            scan.state + (f": {scan.error}" if scan.error else ""),
            str(scan.rows_done),
            str(scan.attempt) + resumed,
            f"{scan.subject} v{scan.version}",
            f"{scan.rule_set} v{scan.rule_set_version}" if scan.rule_set else "",
            scan.dataset,
        )
    Console().print(table)


@scan_app.command("report")
def scan_report(
    scan_id: Annotated[str, typer.Argument(help="The scan id.")],
    target: TargetOption = DEFAULT_TARGET,
    as_json: JsonOption = False,
) -> None:
    """Print the report of a finished scan; exit 1 if it failed or found failing rows."""
    with SyncGovernanceClient(target) as gov:
        scan = gov.get_scan(scan_id)
    if scan.report is None:
        typer.echo(f"scan {scan_id} is {scan.state}" + (f": {scan.error}" if scan.error else ""))
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(asdict(scan.report), indent=2))
    else:
        _print_report(scan.report)
    if scan.report.failing_rows:
        raise typer.Exit(1)


def _follow(gov: SyncGovernanceClient, scan_id: str) -> Scan:
    columns = (
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(f"scan {scan_id[:8]}", total=None)
        try:
            return gov.wait_for_scan(
                scan_id, on_progress=lambda rows: progress.update(task, completed=rows)
            )
        except ScanFailedError as error:
            typer.echo(error.message)
            raise typer.Exit(1) from None


def _print_report(report: ScanReport) -> None:
    console = Console()
    console.print(
        f"{report.rows:,} rows, {report.failing_rows:,} failing, in {report.duration_s:.2f} s"
    )
    fields = Table(title="fields", title_justify="left")
    for column in ("field", "required", "nulls", "missing", "invalid", "duplicates"):
        fields.add_column(column)
    for item in report.fields:
        fields.add_row(
            item.field,
            "yes" if item.required else "",
            *(str(n) for n in (item.nulls, item.missing, item.invalid, item.duplicates)),
        )
    console.print(fields)
    if report.rules:
        rules = Table(title="rules", title_justify="left")
        for column in ("rule", "severity", "mode", "failed", "errored"):
            rules.add_column(column)
        for rule in report.rules:
            rules.add_row(rule.rule, rule.severity, rule.mode, str(rule.failed), str(rule.errored))
        console.print(rules)
    if report.references:
        references = Table(title="references", title_justify="left")
        for column in ("relationship", "fields", "parent", "violations", "duplicates"):
            references.add_column(column)
        for ref in report.references:
            references.add_row(
                ref.relationship,
                ", ".join(ref.child_fields),
                ref.parent_entity,
                str(ref.violations),
                str(ref.duplicates),
            )
        console.print(references)
    if report.freshness is not None:
        fresh = report.freshness
        verdict = "fresh" if fresh.fresh else "STALE"
        console.print(
            f"freshness of {fresh.field}: latest {fresh.latest or 'none'}, "
            f"{fresh.age_s:,.0f} s old, SLA {fresh.sla_s:,.0f} s: {verdict}"
        )
    if report.samples:
        samples = Table(title="failing rows (sample)", title_justify="left")
        for column in ("row", "problems", "record"):
            samples.add_column(column)
        for sample in report.samples:
            samples.add_row(str(sample.row), "\n".join(sample.problems), sample.record_json)
        console.print(samples)

import asyncio
import io
import json
import sys
import time
from pathlib import Path

import psutil
import pytest

# bench/ holds scripts, not an installed package: import them the way `python bench/x.py` does.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness
import smoke

CONTRACT_KEYS = {"case", "ops_per_s", "p50_ms", "p99_ms", "p999_ms", "baseline", "ratio"}


def result(case: str, ops_per_s: float) -> harness.CaseResult:
    return harness.CaseResult(
        case=case,
        ops_per_s=ops_per_s,
        p50_ms=1.0,
        p99_ms=2.0,
        p999_ms=3.0,
        samples=10,
        client_cpu=0.5,
    )


@pytest.mark.parametrize(
    ("q", "expected"),
    [(50, 50), (99, 99), (99.9, 100), (100, 100), (1, 1), (0.5, 1)],
)
def test_percentile_is_nearest_rank_of_1_to_100(q: float, expected: int) -> None:
    assert harness.percentile(list(range(1, 101)), q) == expected


def test_percentile_p999_rank_is_exact_where_float_math_would_round_up() -> None:
    # 0.999 * 3000 is 2997.0000000000005 in binary floating point; the rank must be 2997.
    samples = list(range(1, 3001))
    assert harness.percentile(samples, 99.9) == 2997


def test_percentile_of_one_sample_is_that_sample() -> None:
    assert harness.percentile([7], 50) == 7
    assert harness.percentile([7], 99.9) == 7


@pytest.mark.parametrize("q", [0, -1, 100.1])
def test_percentile_rejects_out_of_range(q: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        harness.percentile([1, 2, 3], q)


def test_percentile_rejects_no_samples() -> None:
    with pytest.raises(ValueError, match="no samples"):
        harness.percentile([], 50)


def test_summarize_counts_units_and_sorts_samples() -> None:
    # 1000 ops of 1..1000 ms in reverse order, 2 units each, over 4 s of wall time.
    latencies = [ms * 1_000_000 for ms in range(1000, 0, -1)]
    summary = harness.summarize(
        "case",
        latencies,
        elapsed_ns=4_000_000_000,
        units_per_op=2,
        client_cpu_s=2.0,
        server_cpu_s=0.5,
    )
    assert summary.ops_per_s == 500.0
    assert (summary.p50_ms, summary.p99_ms, summary.p999_ms) == (500.0, 990.0, 999.0)
    assert summary.samples == 1000
    assert summary.client_cpu == 0.5
    assert summary.server_cpu_us == 250.0  # 0.5 s over 2000 units


def test_summarize_rejects_empty_runs() -> None:
    with pytest.raises(ValueError, match="no operation"):
        harness.summarize("case", [], elapsed_ns=1)
    with pytest.raises(ValueError, match="positive"):
        harness.summarize("case", [1], elapsed_ns=0)


def test_record_with_baseline_has_contract_keys_and_ratio() -> None:
    record = harness.Comparison(result("ours", 750.0), result("bare", 1000.0)).to_record()
    assert record.keys() >= CONTRACT_KEYS
    assert record["baseline"] == {"case": "bare", "ops_per_s": 1000.0}
    assert record["ratio"] == 0.75
    assert record["server_cpu_us"] is None
    assert harness.validate_record(json.dumps(record)) == record


def test_record_without_baseline_has_null_baseline_and_ratio() -> None:
    record = harness.Comparison(result("ours", 750.0)).to_record()
    assert record["baseline"] is None
    assert record["ratio"] is None
    assert harness.validate_record(json.dumps(record)) == record


def test_report_json_prints_one_parsable_line_per_case() -> None:
    out = io.StringIO()
    comparisons = [harness.Comparison(result("a", 1.0)), harness.Comparison(result("b", 2.0))]
    harness.report(comparisons, harness.BenchOptions(json=True), out)
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["case"] for line in lines] == ["a", "b"]


def test_report_gives_each_baseline_one_row_of_its_own_before_its_first_case() -> None:
    out = io.StringIO()
    bare = result("bare", 1000.0)
    comparisons = [
        harness.Comparison(result("a", 500.0), bare),
        harness.Comparison(result("b", 250.0), bare),
    ]
    harness.report(comparisons, harness.BenchOptions(json=True), out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["case"], r["ratio"]) for r in records] == [
        ("bare", None),
        ("a", 0.5),
        ("b", 0.25),
    ]


def test_report_table_names_every_case_and_ratio() -> None:
    out = io.StringIO()
    comparison = harness.Comparison(result("unary_echo", 500.0), result("unary_echo_bare", 1000.0))
    harness.report([comparison], harness.BenchOptions(), out)
    text = out.getvalue()
    assert "unary_echo_bare" in text
    assert "0.50" in text


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("not json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"case": "a"}', "missing keys"),
        (
            '{"case": "a", "ops_per_s": "fast", "p50_ms": 1, "p99_ms": 1, "p999_ms": 1,'
            ' "baseline": null, "ratio": null}',
            "ops_per_s",
        ),
        (
            '{"case": "a", "ops_per_s": true, "p50_ms": 1, "p99_ms": 1, "p999_ms": 1,'
            ' "baseline": null, "ratio": null}',
            "ops_per_s",
        ),
        (
            '{"case": "a", "ops_per_s": 1, "p50_ms": 1, "p99_ms": 1, "p999_ms": 1,'
            ' "baseline": null, "ratio": 2}',
            "ratio without a baseline",
        ),
        (
            '{"case": "a", "ops_per_s": 1, "p50_ms": 1, "p99_ms": 1, "p999_ms": 1,'
            ' "baseline": {"ops_per_s": 1}, "ratio": 1}',
            "baseline must be",
        ),
        (
            '{"case": "", "ops_per_s": 1, "p50_ms": 1, "p99_ms": 1, "p999_ms": 1,'
            ' "baseline": null, "ratio": null}',
            "case must be",
        ),
    ],
)
def test_validate_record_rejects_contract_breaks(line: str, complaint: str) -> None:
    with pytest.raises(harness.RecordError, match=complaint):
        harness.validate_record(line)


def test_smoke_check_output_rejects_silence_and_returns_cases() -> None:
    with pytest.raises(harness.RecordError, match="no JSON line"):
        smoke.check_output("\n")
    record = json.dumps(harness.Comparison(result("a", 1.0)).to_record())
    assert smoke.check_output(record + "\n\n" + record) == ["a", "a"]


def test_smoke_finds_scripts_but_not_the_harness_or_private_modules() -> None:
    names = [path.name for path in smoke.benchmark_scripts()]
    assert "floor.py" in names
    assert not {"smoke.py", "harness.py", "_echo_server.py"} & set(names)


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("127.0.0.1:50051", harness.Endpoint("127.0.0.1", 50051)),
        ("localhost:1", harness.Endpoint("localhost", 1)),
        ("[::1]:8080", harness.Endpoint("::1", 8080)),
    ],
)
def test_endpoint_parse_round_trips(text: str, endpoint: harness.Endpoint) -> None:
    assert harness.Endpoint.parse(text) == endpoint
    assert str(endpoint) == text


@pytest.mark.parametrize("text", ["localhost", ":80", "host:", "host:0", "host:65536", "h:x"])
def test_endpoint_parse_rejects_bad_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        harness.Endpoint.parse(text)


def test_smoke_option_shortens_the_run() -> None:
    options = harness.parse_options("x", ["--smoke", "--duration", "60", "--concurrency", "3"])
    assert options.duration_s == harness.SMOKE_DURATION_S
    assert options.warmup_s == harness.SMOKE_WARMUP_S
    assert options.concurrency == 3
    assert options.smoke


@pytest.mark.parametrize("argv", [["--duration", "0"], ["--concurrency", "0"], ["--warmup", "-1"]])
def test_parse_options_rejects_nonsense(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        harness.parse_options("x", argv)


async def test_measure_times_every_op_of_every_worker() -> None:
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)

    options = harness.BenchOptions(duration_s=0.2, warmup_s=0.05, concurrency=4)
    started = time.perf_counter()
    summary = await harness.measure("sleep", op, options, units_per_op=3)
    assert time.perf_counter() - started >= 0.25
    assert summary.p50_ms >= 10.0
    # Warm-up calls are made but not recorded; about 4 workers x 20 ops were timed.
    assert 40 <= summary.samples < calls
    assert summary.ops_per_s == pytest.approx(summary.samples * 3 / 0.2, rel=0.25)


async def test_measure_fails_loudly_when_the_operation_raises() -> None:
    async def op() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ExceptionGroup) as caught:
        await harness.measure("broken", op, harness.BenchOptions(duration_s=0.1, warmup_s=0))
    assert caught.group_contains(ConnectionError)


async def test_server_process_waits_until_listening_and_stops_the_child() -> None:
    endpoint = harness.Endpoint("127.0.0.1", harness.free_port())
    argv = [sys.executable, "-m", "http.server", "--bind", endpoint.host, str(endpoint.port)]
    async with harness.server_process(argv, endpoint) as server:
        _, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        writer.close()
        await writer.wait_closed()
        assert server.cpu_seconds() > 0
        pid = server.pid
    # Stopped and reaped: the pid is gone.
    assert not psutil.pid_exists(pid)


async def test_server_process_reports_a_child_that_exits_with_its_stderr() -> None:
    endpoint = harness.Endpoint("127.0.0.1", harness.free_port())
    argv = [sys.executable, "-c", "import sys; sys.exit('no config file')"]
    with pytest.raises(harness.ServerStartError, match=r"(?s)status 1.*no config file"):
        async with harness.server_process(argv, endpoint):
            pytest.fail("a server that exited must not be yielded")

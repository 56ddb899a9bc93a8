"""The shared benchmark runner every script under bench/ is built on.

A benchmark script describes its cases and hands them to this module, which does the rest:

- the command line every script shares: ``--duration S --warmup S --concurrency N --json
  --target HOST:PORT --smoke`` (:func:`parse_options`);
- the measurement: a warm-up whose samples are thrown away, then N asyncio workers that each
  loop over one operation for a fixed duration and time every call with ``perf_counter_ns``
  (:func:`measure`);
- the figures: throughput and exact p50/p99/p99.9 latencies from every recorded sample
  (:func:`summarize`, :func:`percentile`);
- the comparison of a case with its baseline measured in the same run (:class:`Comparison`)
  and its output, one JSON object per line or a rich table (:func:`report`);
- a server in a child process, started and awaited until it accepts connections
  (:func:`server_process`), because a client and a server sharing one process and one GIL
  would measure each other's scheduling rather than the server.

The JSON record of one case (see docs/benchmarks.md)::

    {"case": str, "ops_per_s": float, "p50_ms": float, "p99_ms": float, "p999_ms": float,
     "baseline": {"case": str, "ops_per_s": float} | null, "ratio": float | null,
     "samples": int, "client_cpu": float, "server_cpu_us": float | null}

``ratio`` is ``ops_per_s`` divided by the baseline's (higher is better); ``baseline`` and
``ratio`` are null when the run had nothing to compare with (for example against ``--target``).
Latencies are per timed operation; for a case whose operation carries several units (a stream
of N messages) ``ops_per_s`` counts units while the latencies still time whole operations.
The last three keys go beyond the contract and say how far to trust the throughput:
``client_cpu`` is the CPU the benchmark process used per second of wall time (near 1.0, the
single client process is the bottleneck and ratios understate differences between servers);
``server_cpu_us`` is the server's CPU time per unit, in microseconds, when the harness started
the server (null otherwise), which compares servers even when the client saturates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Any, TextIO

import psutil
from rich.console import Console
from rich.table import Table

from tessera.core import grpc_transport_environment

#: Keys every JSON record must carry (the contract in DESIGN.md).
REQUIRED_KEYS = frozenset(
    {"case", "ops_per_s", "p50_ms", "p99_ms", "p999_ms", "baseline", "ratio"},
)

#: Durations used by ``--smoke``: long enough to exercise every code path, too short to mean
#: anything about speed.
SMOKE_DURATION_S = 0.5
SMOKE_WARMUP_S = 0.1

_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000


class ServerStartError(RuntimeError):
    """A benchmark server did not start listening (its stderr is in the message)."""


class RecordError(ValueError):
    """A JSON line does not follow the benchmark record contract."""


@dataclass(frozen=True)
class Endpoint:
    """A TCP address, as given to ``--target``."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse ``HOST:PORT`` (``[v6]:PORT`` for IPv6).

        Raises:
            ValueError: the text has no port or the port is not in 1..65535.

        """
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        return cls(host.removeprefix("[").removesuffix("]"), int(port_text))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class BenchOptions:
    """The options every benchmark script accepts.

    Attributes:
        duration_s: How long each case is measured.
        warmup_s: How long each case runs before measuring; those samples are discarded.
        concurrency: How many asyncio workers issue operations at once.
        json: Print JSON lines instead of a table.
        target: A running server to measure instead of starting one; cases that need a
            server of their own (baselines) are then skipped.
        smoke: A very short run that proves the script works and asserts nothing about speed.

    """

    duration_s: float = 5.0
    warmup_s: float = 1.0
    concurrency: int = 16
    json: bool = False
    target: Endpoint | None = None
    smoke: bool = False


def parse_options(description: str, argv: Sequence[str] | None = None) -> BenchOptions:
    """Parse the command line shared by every benchmark script.

    ``--smoke`` replaces the durations with :data:`SMOKE_DURATION_S` and
    :data:`SMOKE_WARMUP_S`.

    Raises:
        SystemExit: bad arguments (argparse prints the usage).

    """
    defaults = BenchOptions()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--duration",
        type=_positive_float,
        default=defaults.duration_s,
        metavar="S",
        help="seconds each case is measured (default %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=_non_negative_float,
        default=defaults.warmup_s,
        metavar="S",
        help="seconds each case runs unmeasured first (default %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=defaults.concurrency,
        metavar="N",
        help="concurrent workers (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per case")
    parser.add_argument(
        "--target",
        type=Endpoint.parse,
        metavar="HOST:PORT",
        help="measure this running server instead of starting one (no baseline then)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="very short run: proves the script works, says nothing of speed",
    )
    args = parser.parse_args(argv)
    return BenchOptions(
        duration_s=SMOKE_DURATION_S if args.smoke else args.duration,
        warmup_s=SMOKE_WARMUP_S if args.smoke else args.warmup,
        concurrency=args.concurrency,
        json=args.json,
        target=args.target,
        smoke=args.smoke,
    )


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


@dataclass(frozen=True)
class CaseResult:
    """The figures of one measured case.

    Attributes:
        case: The case name, e.g. ``unary_echo``.
        ops_per_s: Units completed per second of measured wall time.
        p50_ms: Median latency of one operation, in milliseconds.
        p99_ms: 99th percentile latency, in milliseconds.
        p999_ms: 99.9th percentile latency, in milliseconds.
        samples: How many operations were timed (p99.9 means little below a few thousand).
        client_cpu: CPU seconds the benchmark process used per second of measured wall time.
        server_cpu_us: Server CPU microseconds per unit, or None when the server is not ours.

    """

    case: str
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    samples: int
    client_cpu: float
    server_cpu_us: float | None = None


@dataclass(frozen=True)
class Comparison:
    """A case next to the baseline measured in the same run (or none)."""

    result: CaseResult
    baseline: CaseResult | None = None

    @property
    def ratio(self) -> float | None:
        """Our throughput divided by the baseline's (higher is better); None without one."""
        if self.baseline is None or self.baseline.ops_per_s == 0:
            return None
        return self.result.ops_per_s / self.baseline.ops_per_s

    def to_record(self) -> dict[str, Any]:
        """Return the JSON record described in the module docstring."""
        result = self.result
        ratio = self.ratio
        return {
            "case": result.case,
            "ops_per_s": round(result.ops_per_s, 1),
            "p50_ms": round(result.p50_ms, 4),
            "p99_ms": round(result.p99_ms, 4),
            "p999_ms": round(result.p999_ms, 4),
            "baseline": None
            if self.baseline is None
            else {
                "case": self.baseline.case,
                "ops_per_s": round(self.baseline.ops_per_s, 1),
            },
            "ratio": None if ratio is None else round(ratio, 3),
            "samples": result.samples,
            "client_cpu": round(result.client_cpu, 2),
            "server_cpu_us": None
            if result.server_cpu_us is None
            else round(result.server_cpu_us, 2),
        }


def percentile(sorted_samples: Sequence[int], q: float) -> int:
    """Return the exact q-th percentile of already sorted samples (nearest-rank method).

    The result is the smallest sample such that at least q% of the samples are <= it, so it is
    always a recorded value, never an interpolation. ``q`` is read as a decimal (99.9 means
    exactly 999/1000), so float rounding cannot shift the rank.

    Raises:
        ValueError: no samples, or q is not in (0, 100].

    """
    if not sorted_samples:
        raise ValueError("percentile of no samples")
    fraction = Fraction(str(q)) / 100
    if not 0 < fraction <= 1:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    rank = math.ceil(fraction * len(sorted_samples))
    return sorted_samples[rank - 1]


def summarize(
    case: str,
    latencies_ns: Sequence[int],
    elapsed_ns: int,
    *,
    units_per_op: int = 1,
    client_cpu_s: float = 0.0,
    server_cpu_s: float | None = None,
) -> CaseResult:
    """Turn the timed operations of one case into its figures.

    Args:
        case: The case name.
        latencies_ns: One duration per completed operation, in any order.
        elapsed_ns: Wall time of the measured phase.
        units_per_op: What one operation counts for in ``ops_per_s`` (messages per stream).
        client_cpu_s: CPU time the client process used during the measured phase.
        server_cpu_s: CPU time the server used during the measured phase, if known.

    Raises:
        ValueError: no operation completed, or elapsed_ns is not positive.

    """
    if elapsed_ns <= 0:
        raise ValueError(f"elapsed time must be positive, got {elapsed_ns} ns")
    ordered = sorted(latencies_ns)
    if not ordered:
        raise ValueError(f"case {case!r} completed no operation")
    units = len(ordered) * units_per_op
    return CaseResult(
        case=case,
        ops_per_s=units * _NS_PER_S / elapsed_ns,
        p50_ms=percentile(ordered, 50) / _NS_PER_MS,
        p99_ms=percentile(ordered, 99) / _NS_PER_MS,
        p999_ms=percentile(ordered, 99.9) / _NS_PER_MS,
        samples=len(ordered),
        client_cpu=client_cpu_s * _NS_PER_S / elapsed_ns,
        server_cpu_us=None if server_cpu_s is None else server_cpu_s * 1e6 / units,
    )


#: One operation of a case: awaited once per iteration of a worker loop.
Operation = Callable[[], Awaitable[object]]


async def measure(
    case: str,
    operation: Operation,
    options: BenchOptions,
    *,
    units_per_op: int = 1,
    server: ServerHandle | None = None,
) -> CaseResult:
    """Run one case: warm up, then time ``operation`` from N workers for the duration.

    Each of ``options.concurrency`` workers awaits ``operation()`` in a loop and records its
    ``perf_counter_ns`` duration; a worker starts no new operation once the duration is over,
    and the measured wall time runs until the last one finishes. The warm-up runs the same
    workers for ``options.warmup_s`` and discards their samples. The CPU time of this process,
    and of ``server`` when given, is read around the measured phase.

    Raises:
        Exception: whatever ``operation`` raises, unchanged; a benchmark that errors must fail
            loudly, not report the speed of its errors.

    """
    if options.warmup_s > 0:
        await _run_workers(operation, options.concurrency, options.warmup_s, [])
    samples: list[int] = []
    client_cpu_start = time.process_time()
    server_cpu_start = 0.0 if server is None else server.cpu_seconds()
    elapsed_ns = await _run_workers(operation, options.concurrency, options.duration_s, samples)
    return summarize(
        case,
        samples,
        elapsed_ns,
        units_per_op=units_per_op,
        client_cpu_s=time.process_time() - client_cpu_start,
        server_cpu_s=None if server is None else server.cpu_seconds() - server_cpu_start,
    )


async def _run_workers(
    operation: Operation, concurrency: int, duration_s: float, samples: list[int]
) -> int:
    """Run the workers for duration_s, appending latencies to samples; return elapsed ns."""
    start = time.perf_counter_ns()
    deadline = start + int(duration_s * _NS_PER_S)

    async def worker() -> None:
        # perf_counter_ns is read once per boundary: the end of one op doubles as the
        # deadline check for the next, so the loop adds no clock reads of its own.
        now = time.perf_counter_ns()
        while now < deadline:
            await operation()
            done = time.perf_counter_ns()
            samples.append(done - now)
            now = done

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return time.perf_counter_ns() - start


def report(comparisons: Sequence[Comparison], options: BenchOptions, out: TextIO) -> None:
    """Print the comparisons: one JSON record per line with ``--json``, else a rich table.

    Each baseline also gets a row of its own (with no baseline), before the first case
    compared with it, so its latencies are reported too.
    """
    comparisons = _with_baseline_rows(comparisons)
    if options.json:
        for comparison in comparisons:
            out.write(json.dumps(comparison.to_record()) + "\n")
        out.flush()
        return
    title = (
        f"{options.duration_s:g} s per case after {options.warmup_s:g} s warm-up, "
        f"concurrency {options.concurrency}"
        + (" (smoke: figures mean nothing)" if options.smoke else "")
    )
    table = Table(title=title)
    for header in (
        "case",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "samples",
        "client cpu",
        "server µs/op",
        "baseline",
        "ratio",
    ):
        table.add_column(
            header, justify="left" if header in ("case", "baseline") else "right", no_wrap=True
        )
    for comparison in comparisons:
        result, ratio = comparison.result, comparison.ratio
        table.add_row(
            result.case,
            f"{result.ops_per_s:,.0f}",
            f"{result.p50_ms:.3f}",
            f"{result.p99_ms:.3f}",
            f"{result.p999_ms:.3f}",
            f"{result.samples:,}",
            f"{result.client_cpu:.2f}",
            "-" if result.server_cpu_us is None else f"{result.server_cpu_us:.1f}",
            "-" if comparison.baseline is None else comparison.baseline.case,
            "-" if ratio is None else f"{ratio:.2f}",
        )
    # Off a terminal rich assumes 80 columns and would cut the case names.
    Console(file=out, width=None if out.isatty() else 160).print(table)


def _with_baseline_rows(comparisons: Sequence[Comparison]) -> list[Comparison]:
    rows: list[Comparison] = []
    reported: set[str] = {comparison.result.case for comparison in comparisons}
    for comparison in comparisons:
        baseline = comparison.baseline
        if baseline is not None and baseline.case not in reported:
            reported.add(baseline.case)
            rows.append(Comparison(baseline))
        rows.append(comparison)
    return rows


def validate_record(line: str) -> dict[str, Any]:
    """Parse one JSON line of a benchmark's output and check it against the contract.

    Returns:
        The parsed record.

    Raises:
        RecordError: not JSON, not an object, a required key missing, a figure that is not a
            non-negative number, or a baseline/ratio pair that does not match.

    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise RecordError(f"not JSON: {line!r}") from error
    if not isinstance(record, dict):
        raise RecordError(f"not a JSON object: {line!r}")
    missing = REQUIRED_KEYS - record.keys()
    if missing:
        raise RecordError(f"missing keys {sorted(missing)}: {line!r}")
    if not isinstance(record["case"], str) or not record["case"]:
        raise RecordError(f"case must be a non-empty string: {line!r}")
    for key in ("ops_per_s", "p50_ms", "p99_ms", "p999_ms"):
        _check_figure(record, key, line)
    baseline = record["baseline"]
    if baseline is None:
        if record["ratio"] is not None:
            raise RecordError(f"ratio without a baseline: {line!r}")
        return record
    if not isinstance(baseline, dict) or not isinstance(baseline.get("case"), str):
        raise RecordError(f"baseline must be null or {{case, ops_per_s}}: {line!r}")
    _check_figure(baseline, "ops_per_s", line)
    if record["ratio"] is not None:
        _check_figure(record, "ratio", line)
    return record


def _check_figure(record: Mapping[str, Any], key: str, line: str) -> None:
    value = record.get(key)
    # bool is an int subclass, and True is no throughput.
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise RecordError(f"{key} must be a non-negative number: {line!r}")


def run(
    description: str,
    bench: Callable[[BenchOptions], Coroutine[Any, Any, Sequence[Comparison]]],
    argv: Sequence[str] | None = None,
) -> int:
    """Run a benchmark script: parse the shared options, run ``bench``, print its report.

    This is what a script's ``if __name__ == "__main__"`` calls, as
    ``sys.exit(run(__doc__, bench))``. A script started without Tessera's gRPC transport settings
    (`tessera.core.GRPC_TRANSPORT_ENVIRONMENT`, which gRPC reads only at import) starts again
    with them, as `tessera dev up` and the container image start every process: clients, peers
    and the servers the script starts all run with them. Set ``GRPC_EXPERIMENTS`` (even empty)
    to measure with another value.

    Returns:
        The process exit status (0).

    """
    missing = grpc_transport_environment()
    if missing:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, **missing})
    options = parse_options(description, argv)
    comparisons = asyncio.run(bench(options))
    report(comparisons, options, sys.stdout)
    return 0


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class ServerHandle:
    """A server started by :func:`server_process`.

    Attributes:
        endpoint: Where it listens.
        pid: Its process id.

    """

    endpoint: Endpoint
    pid: int

    def cpu_seconds(self) -> float:
        """Return the user plus system CPU time the server process has used so far."""
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)


@contextlib.asynccontextmanager
async def server_process(
    argv: Sequence[str],
    endpoint: Endpoint,
    *,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 30.0,
    stop_timeout_s: float = 10.0,
) -> AsyncIterator[ServerHandle]:
    """Run a server in a child process and yield it once it accepts TCP connections.

    The child gets ``argv`` (use ``sys.executable`` as the first item to run Python), the
    parent's environment updated with ``env``, stdout discarded and stderr kept in a temporary
    file so a failure can show it. On exit the child gets SIGTERM, then SIGKILL after
    ``stop_timeout_s``.

    Raises:
        ServerStartError: the child exited, or did not accept connections within
            ``ready_timeout_s``.

    """
    with tempfile.TemporaryFile(prefix="tessera-bench-server-") as stderr:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, **(env or {})},
        )
        try:
            await _wait_until_listening(process, endpoint, ready_timeout_s, stderr)
            yield ServerHandle(endpoint, process.pid)
        finally:
            await _stop(process, stop_timeout_s)


async def _wait_until_listening(
    process: asyncio.subprocess.Process, endpoint: Endpoint, timeout_s: float, stderr: IO[bytes]
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.returncode is not None:
            raise ServerStartError(
                f"server {endpoint} exited with status {process.returncode}:\n" + _read_all(stderr)
            )
        try:
            _, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        except OSError:
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"server {endpoint} not listening after {timeout_s:g} s:\n" + _read_all(stderr)
                ) from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


def _read_all(stderr: IO[bytes]) -> str:
    stderr.seek(0)
    # The tail holds the traceback that explains the failure.
    return stderr.read().decode(errors="replace")[-4000:]


async def _stop(process: asyncio.subprocess.Process, timeout_s: float) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout_s)
        except TimeoutError:
            process.kill()
    await process.wait()

"""Every benchmark still runs: each module at a tiny size, as `make bench` would run it.

Benchmarks print figures and are not tests (docs/benchmarks.md); these only check that each
one starts its parts (PostgreSQL from dev_stack, the OXR sandbox, a Prefect server), runs its
pipeline calls (through benchmarks/run_pipeline.py) to the end, exits 0 and prints its figures.
A benchmark nothing runs rots unseen: bench_products failed on every run for a while.

Each runs in a subprocess from the repository root, without the suite's data folders or
Prefect settings. Costs on a quiet 2-core machine (`make bench-smoke` runs them): products
~55 s with the peers (the `bench` group) and ours beside a base tree, exchange rates ~4 s, run
guard (its cost part) ~16 s, bench_enqueue ~25-40 s and bench_latency ~55-60 s (a Prefect
server, a worker and deployments each; one cycle or round is their smallest meaningful size);
marked slow: the run guard's crash recovery, ~90 s (a rerun waits out a killed run's lease).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# each benchmark starts its parts (PostgreSQL, a Prefect server) in its own subprocess
pytestmark = pytest.mark.server
ROOT = Path(__file__).resolve().parent.parent
# what a user's shell (or another test) may have set that would point a benchmark elsewhere
ISOLATE = ("PREFECT_API_URL", "PREFECT_HOME", "DATA_PIPELINES_DATA_DIR", "PYTHONPATH")


def run_benchmark(module: str, *args: str, timeout: float) -> str:
    """`python -m benchmarks.<module> ARGS` from the repository root; its stdout."""
    env = {k: v for k, v in os.environ.items() if k not in ISOLATE and not k.startswith("DLT_")}
    env.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"})
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"{module} exited {result.returncode}\n--- stdout\n{result.stdout[-3000:]}"
        f"\n--- stderr\n{result.stderr[-5000:]}"
    )
    return result.stdout


def figure_lines(output: str, *starts: str) -> list[str]:
    """The lines of `output` starting with each of `starts` (after indentation), all present."""
    lines = [line.strip() for line in output.splitlines()]
    found = [next((line for line in lines if line.startswith(start)), None) for start in starts]
    missing = [start for start, line in zip(starts, found, strict=True) if line is None]
    assert not missing, f"no figure line for {missing} in:\n{output[-3000:]}"
    return [line for line in found if line is not None]


def test_bench_products() -> None:
    """1,000 rows, with this very tree as the `--base-tree` (the bench_commit path).

    The `sql_table` connectorx peer needs the `bench` dependency group (`make bench-smoke`
    installs it; `make test` does not): without it only `\\copy` and ours run (`--ours-only`).
    """
    try:
        import connectorx  # noqa: F401
    except ImportError:
        peers = False
    else:
        peers = True
    output = run_benchmark(
        "bench_products",
        *("--rows", "1000", "--rss-rows", "0"),
        *(() if peers else ("--ours-only",)),
        *("--base-python", sys.executable, "--base-tree", str(ROOT), "--base-label", "self"),
        timeout=400,
    )
    lines = figure_lines(
        output,
        "[1,000] psql \\copy",
        "[1,000] ours@self: first full load",
        "[1,000] ours: first full load",
        "[1,000] ours: full refresh (swap)",
        "[1,000] ours: incremental, 10 changes (1%)",
        "[1,000] ours@self: no new activity",
        "[1,000] ours: no new activity",
        "no new activity (fixed cost)",
        "no new rows, s",
        "peak RSS at 1,000 (full load), MiB",
    )
    assert " 1,000 " in lines[2]  # the first load loaded every row
    assert " 0 " in lines[6]  # the quiet run loaded none
    if peers:
        figure_lines(
            output,
            "[1,000] no dlt: ADBC -> DuckDB, one transaction",
            "[1,000] peer: sql_table pyarrow, first load",
            "[1,000] peer: sql_table connectorx, incremental 1%",
            "[1,000] floor: DuckDB postgres scanner, CTAS",
            "[1,000] floor: scanner incremental 1%",
            "1,000: incremental 1% / full",
        )


def test_bench_exchange_rates() -> None:
    output = run_benchmark(
        "bench_exchange_rates",
        "--days",
        "3",
        "--latency-ms",
        "10",
        "--binding-limit",
        "20",
        timeout=180,
    )
    figure_lines(
        output,
        "sequential day-by-day (tutorial)",
        "ours, 8 concurrent",
        "Target: ours <=",
        "Ours vs ideal",
        "Binding limit 20/s",
    )


def test_bench_run_guard_cost() -> None:
    output = run_benchmark("bench_run_guard", "--cycles", "3", "--no-crash-recovery", timeout=300)
    figure_lines(output, "run guard, acquire + release", "bare_request_median_s=")


@pytest.mark.slow
def test_bench_run_guard_crash_recovery() -> None:
    """~90 s: the rerun waits out the killed run's 60 s lease and the repossessor's pass."""
    output = run_benchmark("bench_run_guard", "--cycles", "2", "--days", "6", timeout=600)
    figure_lines(output, "bare_request_median_s=", "rerun_total_s=")


def test_bench_enqueue() -> None:
    """One cycle on the stack's server settings: a server, a pool, a worker, two runs."""
    output = run_benchmark(
        "bench_enqueue", "--cycles", "1", "--hold", "2", "--only", "stack", timeout=600
    )
    figure_lines(output, "queued run got the slot", "stack: slot after")


def test_bench_latency() -> None:
    """The whole local stack, the trivial floor and products-daily, once each after warm-up."""
    output = run_benchmark(
        "bench_latency",
        "--repeats",
        "1",
        "--deployments",
        "products-daily/production",
        timeout=900,
    )
    figure_lines(output, "bench-trivial/bench", "products-daily/production", "ratio =")

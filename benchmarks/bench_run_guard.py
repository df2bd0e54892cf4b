"""The run guard: what it costs every run, and how long a rerun waits after a crash.

    python -m benchmarks.bench_run_guard [--cycles 50] [--days 40] [--latency-ms 100]
        [--no-crash-recovery]

One real Prefect server (`prefect server start` on loopback with a throwaway PREFECT_HOME and
default settings, background services included, as in production: the test harness runs no
repossessor, so a dead holder's slot would never be freed there), the limits created by
`data-pipelines apply prefect`, and the OXR sandbox on loopback.

1. Cost per run: `--cycles` acquire + release of `dlt-pipeline:currencies` through
   `environments.run_guard.prefect_run_guard`, against a reference measured in the same run:
   one bare API request from a new client (`read_global_concurrency_limit_by_name`).
   Target: under 0.1 s per run.
2. Crash recovery: `exchange-rates-backfill` over `--days` days in a child process (its own
   working folder, a shared bucket folder), SIGKILLed once 5 days were fetched; a rerun from
   another working folder (another worker) is timed: its wait before the first request (the
   dead run's lease: 60 s, freed on the repossessor's next 15 s pass) and the work after it.
   That wait is most of this benchmark's minutes; `--no-crash-recovery` leaves part 2 out.

Figures, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from dev_stack.oxr_sandbox import DEFAULT_SANDBOX_APP_ID, OXRSandbox
from dev_stack.prefect_server import throwaway_prefect_server
from pipelines.environment import PROJECT_DIR

FIRST_DAY = date(2026, 1, 1)
KILL_AFTER_DAYS = 5


def backfill_flow_command(start: str, end: str) -> list[str]:
    """`exchange-rates-backfill` over `start..end` in a Python process of its own."""
    return [
        sys.executable,
        "-c",
        "from flows.exchange_rates import exchange_rates_backfill_flow as flow\n"
        f"flow(start_date={start!r}, end_date={end!r})\n",
    ]


def _env(api_url: str, sandbox: OXRSandbox, data: Path, bucket_url: str) -> dict[str, str]:
    """A worker of its own: its working folder `data`, the shared bucket, the pool's server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "DATA_PIPELINES_ENV": "local",
            "DATA_PIPELINES_DATA_DIR": str(data),
            "DATA_PIPELINES_BUCKET_URL": bucket_url,
            "SOURCES__OPEN_EXCHANGE_RATES__BASE_URL": sandbox.base_url,
            "SOURCES__OPEN_EXCHANGE_RATES__API_KEY": DEFAULT_SANDBOX_APP_ID,
            "SOURCES__OPEN_EXCHANGE_RATES__MAX_CONCURRENCY": "1",
            "SOURCES__OPEN_EXCHANGE_RATES__MAX_REQUESTS_PER_SECOND": "200",
        }
    )
    return env


def historical_request_times(sandbox: OXRSandbox, after: float = 0.0) -> list[float]:
    """Arrival times (epoch seconds) of `historical/*.json` requests since `after`."""
    return [
        e["time"]
        for e in sandbox.requests
        if e["path"].startswith("/api/historical/") and e["time"] >= after
    ]


def kill_mid_backfill(
    command: list[str], env: dict[str, str], sandbox: OXRSandbox, after_days: int
) -> None:
    """Start `command`; SIGKILL its whole process group once `after_days` days were requested."""
    doomed = subprocess.Popen(
        command,
        cwd=PROJECT_DIR,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 180
    while len(historical_request_times(sandbox)) < after_days:
        if doomed.poll() is not None or time.monotonic() > deadline:
            doomed.kill()
            raise RuntimeError("the backfill ended or stalled before it could be killed")
        time.sleep(0.05)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=30)


def run_to_end(
    command: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run `command` to its end (raises `subprocess.TimeoutExpired` past `timeout`)."""
    return subprocess.run(
        command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )


def crash_recovery(api_url: str, sandbox: OXRSandbox, days: int) -> dict[str, float]:
    sandbox.reset()
    start, end = FIRST_DAY.isoformat(), (FIRST_DAY + timedelta(days=days - 1)).isoformat()
    with tempfile.TemporaryDirectory(prefix="bench-guard-") as folder:
        bucket = (Path(folder) / "bucket").as_uri()
        first = _env(api_url, sandbox, Path(folder) / "worker-1", bucket)
        kill_mid_backfill(backfill_flow_command(start, end), first, sandbox, KILL_AFTER_DAYS)
        started = time.time()
        second = _env(api_url, sandbox, Path(folder) / "worker-2", bucket)
        rerun = run_to_end(backfill_flow_command(start, end), second, timeout=600)
        ended = time.time()
        if rerun.returncode != 0:
            raise RuntimeError(f"rerun failed:\n{rerun.stderr[-3000:]}")
        first_request = min(historical_request_times(sandbox, after=started))
    return {
        "rerun_total_s": round(ended - started, 1),
        "wait_before_first_request_s": round(first_request - started, 1),
        "work_after_first_request_s": round(ended - first_request, 1),
    }


def guard_cost(api_url: str, cycles: int) -> dict[str, float]:
    """Median seconds of one acquire + release, and of one bare API request (reference)."""
    from prefect.client.orchestration import get_client

    from environments.run_guard import prefect_run_guard

    def guarded() -> None:
        with prefect_run_guard("currencies", api_url=api_url):
            pass

    def reference() -> None:
        with get_client(sync_client=True) as client:
            client.read_global_concurrency_limit_by_name("dlt-pipeline:currencies")

    figures = {}
    for name, call in (("bare_request", reference), ("guard", guarded)):
        call()  # warm: imports, connection set-up
        times = []
        for _ in range(cycles):
            began = time.perf_counter()
            call()
            times.append(time.perf_counter() - began)
        figures[f"{name}_median_s"] = round(statistics.median(times), 4)
        figures[f"{name}_max_s"] = round(max(times), 4)
    figures["ratio"] = round(figures["guard_median_s"] / figures["bare_request_median_s"], 2)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_run_guard")
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument(
        "--crash-recovery",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="part 2, the rerun after a kill -9 (~75 s of waiting for the dead run's lease)",
    )
    args = parser.parse_args(argv)

    from prefect.settings import PREFECT_API_URL, temporary_settings

    from infra.prefect_setup import ensure_pipeline_concurrency_limits

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    with (
        OXRSandbox(port=0, latency_seconds=args.latency_ms / 1000) as sandbox,
        throwaway_prefect_server() as api_url,
        temporary_settings(updates={PREFECT_API_URL: api_url}),
    ):
        ensure_pipeline_concurrency_limits()
        cost = guard_cost(api_url, args.cycles)
        print(
            f"run guard, acquire + release on a local Prefect server ({args.cycles} cycles, "
            f"load average {os.getloadavg()[0]:.1f})"
        )
        print("  " + "  ".join(f"{k}={v}" for k, v in cost.items()))
        print("  target: guard_median_s < 0.1")
        if not args.crash_recovery:
            return 0
        recovery = crash_recovery(api_url, sandbox, args.days)
    print(f"rerun on another worker after kill -9 of a {args.days}-day backfill")
    print("  " + "  ".join(f"{k}={v}" for k, v in recovery.items()))
    print("  expected: wait about lease (60 s) + repossessor loop (<= 15 s) + one poll (~2 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

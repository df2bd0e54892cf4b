"""Crash recovery: how long a rerun waits after the previous run of its pipeline was killed.

    python -m benchmarks.bench_crash_recovery [--days 40] [--latency-ms 100]

One real Prefect server (`prefect server start` on loopback with a throwaway PREFECT_HOME and
default settings, background services included, as in production) and the OXR sandbox on
loopback. Not the test harness: its ephemeral server runs no repossessor, so there a dead
task's slot is never freed at all (a rerun was still Pending after 6 minutes).
Two scenarios, same run, same steps:
1. `tag-limit`: the `dlt-pipeline:exchange_rates` task concurrency limit (1) exists, as
   `data-pipelines apply prefect` created it before this change;
2. `run-lock`: the limit is retired (what `apply prefect` does now); the pipeline's file lock
   (pipelines/locks.py) is what keeps one run at a time.
Each scenario starts `exchange-rates-backfill` over `--days` days in a child process, SIGKILLs
its process group once 5 days were fetched, then times a rerun of the same range: the wait
before its first request (what the dead run still held) and the work after it.

Figures, not a pass/fail test. Expected: the tag-limit rerun waits about a minute (a 60 s
lease on the dead task's slot, freed on the repossessor's next 15 s pass, then the waiter's
retry delay); the run-lock rerun does not wait.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

from local_stack.oxr_sandbox import DEFAULT_SANDBOX_APP_ID, OXRSandbox
from local_stack.processes import free_port, http_ok, wait_until
from pipelines.environment import PROJECT_DIR

FIRST_DAY = date(2026, 1, 1)
KILL_AFTER_DAYS = 5
TAG = "dlt-pipeline:exchange_rates"


def backfill_flow_command(start: str, end: str) -> list[str]:
    """`exchange-rates-backfill` over `start..end` in a Python process of its own."""
    return [
        sys.executable,
        "-c",
        "from flows.exchange_rates import exchange_rates_backfill_flow as flow\n"
        f"flow(start_date={start!r}, end_date={end!r})\n",
    ]


def _env(api_url: str, sandbox: OXRSandbox, data: Path) -> dict[str, str]:
    (data / "dlt" / "local").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "DATA_PIPELINES_ENV": "local",
            "DATA_PIPELINES_DATA_DIR": str(data),
            "DLT_DATA_DIR": str(data / "dlt"),
            "DLT_LOCAL_DIR": str(data / "dlt" / "local"),
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


def _set_tag_limit(present: bool) -> None:
    from prefect.client.orchestration import get_client

    from infra.prefect_setup import retire_pipeline_concurrency_limits

    if present:
        with get_client(sync_client=True) as client:
            client.create_concurrency_limit(tag=TAG, concurrency_limit=1)
    else:
        retire_pipeline_concurrency_limits()


def scenario(
    name: str, *, tag_limit: bool, api_url: str, sandbox: OXRSandbox, days: int
) -> dict[str, float]:
    _set_tag_limit(tag_limit)
    sandbox.reset()
    start, end = FIRST_DAY.isoformat(), (FIRST_DAY + timedelta(days=days - 1)).isoformat()
    with tempfile.TemporaryDirectory(prefix=f"bench-crash-{name}-") as folder:
        env = _env(api_url, sandbox, Path(folder))
        kill_mid_backfill(backfill_flow_command(start, end), env, sandbox, KILL_AFTER_DAYS)

        started = time.time()
        rerun = run_to_end(backfill_flow_command(start, end), env, timeout=600)
        ended = time.time()
        if rerun.returncode != 0:
            raise RuntimeError(f"{name}: rerun failed:\n{rerun.stderr[-3000:]}")
        first_request = min(historical_request_times(sandbox, after=started))
    return {
        "rerun_total_s": round(ended - started, 1),
        "wait_before_first_request_s": round(first_request - started, 1),
        "work_after_first_request_s": round(ended - first_request, 1),
    }


@contextmanager
def _prefect_server() -> Iterator[str]:
    """`prefect server start` on a free loopback port and a new database; yields its API URL."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-crash-prefect-") as home:
        env = {**os.environ, "PREFECT_HOME": home, "PREFECT_UI_ENABLED": "false"}
        env.pop("PREFECT_API_URL", None)
        log = Path(home) / "server.log"
        with open(log, "w") as out:
            server = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("prefect")),
                    *("server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        api_url = f"http://127.0.0.1:{port}/api"
        try:
            wait_until(lambda: http_ok(f"{api_url}/health"), "prefect server", 240, log)
            yield api_url
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_crash_recovery")
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--latency-ms", type=float, default=100)
    args = parser.parse_args(argv)

    from prefect.settings import PREFECT_API_URL, temporary_settings

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    with (
        OXRSandbox(port=0, latency_seconds=args.latency_ms / 1000) as sandbox,
        _prefect_server() as api_url,
        temporary_settings(updates={PREFECT_API_URL: api_url}),
    ):
        results = {
            name: scenario(
                name, tag_limit=tag_limit, api_url=api_url, sandbox=sandbox, days=args.days
            )
            for name, tag_limit in (("tag-limit", True), ("run-lock", False))
        }
    print(f"rerun after kill -9 of a {args.days}-day backfill ({args.latency_ms:g} ms/request)")
    for name, figures in results.items():
        print(f"  {name:10s} " + "  ".join(f"{k}={v}" for k, v in figures.items()))
    before, after = results["tag-limit"], results["run-lock"]
    ratio = after["rerun_total_s"] / before["rerun_total_s"]
    print(f"  run-lock / tag-limit rerun time: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

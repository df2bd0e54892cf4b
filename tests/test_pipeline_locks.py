"""One run per dlt pipeline, whatever the entry point: real processes, the real sandbox.

Two `python -m pipelines.exchange_rates` runs used to share dlt's working folder at once and
one died with `FileNotFoundError: .../normalize/extracted/<load id>/new_jobs`. Here they run
side by side for real: the later ones wait (and say so), nobody's packages are touched, every
day lands once. A run killed with SIGKILL leaves nothing that makes the next one wait.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dlt
import duckdb
import pytest

from dev_stack.oxr_sandbox import OXRSandbox
from local_runtime.snowpipe import USER_VIEW
from pipelines.environment import PROJECT_DIR
from pipelines.exchange_rates import PIPELINE_NAME
from pipelines.locks import (
    RUN_LOCK_MAX_WAIT_VAR,
    LockWaitTimeout,
    file_lock,
    pipeline_run_lock,
    run_lock_path,
)

WAITED = f"Waiting for the {PIPELINE_NAME} pipeline"
DAYS = [f"2026-01-{d:02d}" for d in range(1, 21)]


def start(call: str) -> subprocess.Popen[str]:
    """`pipelines.exchange_rates.<call>` in a Python process of its own, without Prefect (as a
    script or notebook would run it), with this test's environment (sandbox, data dir)."""
    script = (
        "import logging, sys\n"
        "from environments import load_environment\n"
        "from pipelines import exchange_rates\n"
        "from sources.exchange_rate_dates import DateRange\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "environment = load_environment()\n"
        f"exchange_rates.{call}\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


BACKFILL = f"backfill(environment, DateRange.parse({DAYS[0]!r}, {DAYS[-1]!r}))"
LATEST = "run_latest(environment)"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.05)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    _, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stderr


def historical_requests(sandbox: OXRSandbox) -> list[str]:
    return sorted(sandbox.historical_dates_requested(counted_only=True))


def view_days(data_dir: Path) -> list[str]:
    with duckdb.connect(str(data_dir / "warehouse" / "snowpipe.duckdb"), read_only=True) as con:
        return [r[0] for r in con.sql(f"select rate_date::varchar from {USER_VIEW}").fetchall()]


def pending_packages(data_dir: Path) -> list[str]:
    """Load packages left unfinished in the pipeline's working folder (extracted or normalized)."""
    pipeline = dlt.attach(PIPELINE_NAME, pipelines_dir=str(data_dir / "dlt" / "pipelines"))
    return [*pipeline.list_extracted_load_packages(), *pipeline.list_normalized_load_packages()]


@pytest.fixture
def sandbox_env(oxr_sandbox: OXRSandbox, monkeypatch: pytest.MonkeyPatch) -> OXRSandbox:
    """One request at a time, so a backfill lasts as long as the sandbox's latency says."""
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_CONCURRENCY", "1")
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_REQUESTS_PER_SECOND", "200")
    monkeypatch.setattr(oxr_sandbox, "latency_seconds", 0.0)
    return oxr_sandbox


def test_concurrent_runs_of_one_pipeline_wait_and_never_corrupt_each_other(
    sandbox_env: OXRSandbox, data_dir: Path
) -> None:
    sandbox_env.latency_seconds = 0.5  # the first backfill is slow until the others queue
    first = start(BACKFILL)
    wait_until(lambda: sandbox_env.historical_dates_requested(), "the first backfill fetches")
    second = start(BACKFILL)
    latest = start(LATEST)

    # Both later runs reach the lock while the first holds it (or, were there no lock, one
    # of them is already done); then let the first finish.
    wait_until(
        lambda: _both_waiting() or second.poll() is not None or latest.poll() is not None,
        "both later runs wait",
    )
    assert first.poll() is None, "the first backfill ended before the others started"
    sandbox_env.latency_seconds = 0.0
    results = {name: finish(p) for name, p in (("first", first), ("second", second))}
    results["latest"] = finish(latest)

    for name, (code, stderr) in results.items():
        assert code == 0, f"{name} run failed:\n{stderr[-3000:]}"
        assert "FileNotFoundError" not in stderr
    # The second backfill ran after the first and found every day there: nothing fetched twice.
    assert historical_requests(sandbox_env) == DAYS
    assert sandbox_env.request_count("/api/latest.json") == 1
    assert len(view_days(data_dir)) == len(DAYS) + 1  # 20 final days + today's snapshot
    assert pending_packages(data_dir) == []
    assert WAITED not in results["first"][1]
    assert WAITED in results["second"][1] and WAITED in results["latest"][1]
    assert f"{run_lock_path(PIPELINE_NAME)}" in results["second"][1], "the log names the lock"


def _both_waiting() -> bool:
    """Whether two processes wait on the run lock: the lock file is open by three processes."""
    lock = str(run_lock_path(PIPELINE_NAME))
    holders = 0
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            holders += any(os.readlink(fd) == lock for fd in fd_dir.iterdir())
        except OSError:
            continue
    return holders >= 3


def test_killed_run_releases_its_lock_at_once_and_the_rerun_completes(
    sandbox_env: OXRSandbox, data_dir: Path
) -> None:
    sandbox_env.latency_seconds = 0.2
    doomed = start(BACKFILL)
    wait_until(lambda: len(historical_requests(sandbox_env)) >= 3, "the backfill is under way")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    sandbox_env.latency_seconds = 0.0

    # The kernel dropped the dead run's lock: a bounded, non-blocking try gets it at once.
    with pipeline_run_lock(PIPELINE_NAME, max_wait=0):
        pass
    code, stderr = finish(start(BACKFILL))
    assert code == 0, stderr[-3000:]
    assert WAITED not in stderr
    assert sorted(view_days(data_dir)) == DAYS
    assert pending_packages(data_dir) == []


def test_bounded_wait_fails_with_the_cause_and_the_fix_first(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pipelines.locks import pipeline_run_lock\n"
            f"with pipeline_run_lock({PIPELINE_NAME!r}):\n"
            "    print('held', flush=True); time.sleep(60)\n",
        ],
        cwd=PROJECT_DIR,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setenv(RUN_LOCK_MAX_WAIT_VAR, "0.5")
        started = time.monotonic()
        with pytest.raises(LockWaitTimeout) as raised, pipeline_run_lock(PIPELINE_NAME):
            pytest.fail("the lock was granted while another process held it")
        assert time.monotonic() - started < 10
        first_line = str(raised.value).splitlines()[0]
        assert first_line.startswith(f"the {PIPELINE_NAME} pipeline")
        assert f"pid {holder.pid}" in first_line and "run again" in first_line
    finally:
        holder.kill()
        holder.wait(timeout=10)
    with pipeline_run_lock(PIPELINE_NAME, max_wait=5):  # the holder died: free again
        pass


def test_file_lock_is_reentrant_for_its_thread_and_shared_locks_coexist(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with file_lock(path), file_lock(path, max_wait=0):  # run + audit in one flow task
        pass
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nfrom pipelines.locks import file_lock\n"
            f"with file_lock({str(path)!r}, shared=True):\n"
            "    print('reading', flush=True); time.sleep(60)\n",
        ],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "reading"
        with file_lock(path, shared=True, max_wait=0):
            pass
        with pytest.raises(LockWaitTimeout), file_lock(path, max_wait=0.3):
            pass
    finally:
        reader.kill()
        reader.wait(timeout=10)

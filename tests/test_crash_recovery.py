"""Crash recovery under a real Prefect server: a killed run holds nothing the next run waits on.

Before, `dlt-pipeline:<name>` task concurrency limits kept one task per pipeline; a task killed
with SIGKILL kept its slot on a 60 s lease (Prefect 3.8.8's task engine), freed on the server's
next 15 s repossessor pass, so a rerun waited about a minute for a dead process. The run lock
(pipelines/locks.py) is the kernel's and dies with its holder.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from benchmarks.bench_crash_recovery import (
    backfill_flow_command,
    historical_request_times,
    kill_mid_backfill,
    run_to_end,
)
from infra.prefect_setup import retire_pipeline_concurrency_limits
from local_stack.oxr_sandbox import OXRSandbox
from pipelines.names import DLT_PIPELINES

pytestmark = pytest.mark.usefixtures("prefect_server")

START, END = "2026-01-01", "2026-01-30"
# Prefect 3.8.8 task_engine: `_concurrency(..., lease_duration=60)`, renewed at 3/4 of it.
LEASE_RENEWAL_SECONDS = 45
RERUN_BOUND_SECONDS = 120


def test_apply_retires_the_pipeline_tag_limits() -> None:
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="dlt-pipeline:exchange_rates", concurrency_limit=1)
    first = retire_pipeline_concurrency_limits()
    assert "'dlt-pipeline:exchange_rates' deleted" in "\n".join(first)
    with get_client(sync_client=True) as client:
        for name in DLT_PIPELINES:
            with pytest.raises(ObjectNotFound):
                client.read_concurrency_limit_by_tag(f"dlt-pipeline:{name}")
    again = retire_pipeline_concurrency_limits()  # idempotent
    assert all("absent" in line for line in again)


def test_rerun_after_a_killed_flow_run_does_not_wait_for_what_the_dead_run_held(
    oxr_sandbox: OXRSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    retire_pipeline_concurrency_limits()  # the platform as `apply prefect` leaves it
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_CONCURRENCY", "1")
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_REQUESTS_PER_SECOND", "200")
    monkeypatch.setattr(oxr_sandbox, "latency_seconds", 0.2)
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    # The flow-run process dies holding the pipeline, three days into the range.
    kill_mid_backfill(backfill_flow_command(START, END), env, oxr_sandbox, after_days=3)
    # The dead task took whatever it held just before its first request.
    dead_run_took_its_slot_by = min(historical_request_times(oxr_sandbox))
    killed_at = time.time()
    oxr_sandbox.latency_seconds = 0.0

    # In a process of its own and bounded: this test server (ephemeral, no repossessor) never
    # frees a dead task's tag slot, so a rerun that waited for one would wait forever.
    try:
        rerun = run_to_end(backfill_flow_command(START, END), env, RERUN_BOUND_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the rerun was still waiting {RERUN_BOUND_SECONDS} s after the kill")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert sorted(set(oxr_sandbox.historical_dates_requested(counted_only=True))) == [
        f"2026-01-{d:02d}" for d in range(1, 31)
    ]
    rerun_started_work = min(historical_request_times(oxr_sandbox, after=killed_at))
    # Had the rerun waited for the dead task's slot, its first request could not come before
    # that slot's lease (60 s, renewed at 45 s) expired.
    assert rerun_started_work < dead_run_took_its_slot_by + LEASE_RENEWAL_SECONDS, (
        f"the rerun waited {rerun_started_work - killed_at:.0f} s after the kill before working"
    )

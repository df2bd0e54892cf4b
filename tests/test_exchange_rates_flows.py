"""The exchange-rate flows under a real Prefect server: results, retries, failures, logs."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler

from dev_stack.oxr_sandbox import OXRSandbox
from flows.exchange_rates import (
    backfill_exchange_rates,
    exchange_rates_backfill_flow,
    exchange_rates_daily_flow,
    load_exchange_rates,
)
from local_runtime.snowpipe import USER_VIEW
from sources.exchange_rate_dates import InvalidDateError

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(autouse=True)
def fast_backfill(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_CONCURRENCY", "4")
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_REQUESTS_PER_SECOND", "200")


def user_rows(data_dir: Path) -> list[str]:
    with duckdb.connect(str(data_dir / "warehouse" / "snowpipe.duckdb"), read_only=True) as con:
        return [
            r[0]
            for r in con.sql(f"select rate_date::varchar from {USER_VIEW} order by 1").fetchall()
        ]


def run_logs(state: Any) -> list[str]:
    APILogHandler().flush()

    async def read() -> list[str]:
        async with get_client() as client:
            logs = await client.read_logs(
                log_filter=LogFilter(
                    flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])
                )
            )
        return [log.message for log in logs]

    return asyncio.run(read())


def progress_of(state: Any) -> float | None:
    """The run's progress artifact's value (percent of the range's days in the bucket)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    values = [float(a.data) for a in artifacts if a.type == "progress"]
    return values[-1] if values else None


# dlt's own line format, "2026-11-24 05:15:21,943|[INFO]|2735|...": never inside Prefect's
NESTED_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}\|\[")


@pytest.mark.parametrize("flow", ["exchange-rates-backfill", "currencies-weekly"])
def test_run_logs_have_one_format_for_ours_prefects_and_dlts(
    flow: str, oxr_sandbox: OXRSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.currencies import currencies_weekly_flow

    # dlt at INFO, so it has lines to show: the config for a process whose dlt is not set up
    # yet, the logger's level for one where an earlier test did (dlt sets it up once)
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "INFO")
    dlt_logger = logging.getLogger("dlt")
    level = dlt_logger.level
    dlt_logger.setLevel(logging.INFO)
    try:
        if flow == "currencies-weekly":
            state = currencies_weekly_flow(return_state=True)
        else:
            state = exchange_rates_backfill_flow(
                start_date="2026-01-01", end_date="2026-01-02", return_state=True
            )
    finally:
        dlt_logger.setLevel(level)
    assert state.is_completed()
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    by_logger = {log.name.split(".")[0] for log in logs}
    assert {"prefect", "dlt"} <= by_logger, by_logger
    nested = [log.message for log in logs if NESTED_FORMAT.search(log.message)]
    assert not nested, nested[:3]


def test_daily_flow_lands_latest(oxr_sandbox: OXRSandbox, data_dir: Path) -> None:
    result = exchange_rates_daily_flow()
    assert result["status"] == "success"
    latest, final_rates = result["load_info"]
    assert latest["rows"] == {"latest": 1}
    assert final_rates["rows"] == {"historical": 1}
    assert len(user_rows(data_dir)) == 2  # today's snapshot and yesterday's final rates


def test_backfill_flow_reports_days_and_logs_progress(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    state = exchange_rates_backfill_flow(
        start_date="2026-01-01", end_date="2026-01-03", return_state=True
    )
    assert state.is_completed()
    result = state.result()
    assert result["status"] == "success"
    assert result["load_info"]["rows"] == {"historical": 3}
    assert result["load_info"]["backfill"]["days_requested"] == 3
    assert user_rows(data_dir) == ["2026-01-01", "2026-01-02", "2026-01-03"]

    logs = "\n".join(run_logs(state))
    assert "3/3 days" in logs, "progress from the pipeline module did not reach the run's logs"
    assert "0 skipped" in logs and "3 requested, 3 loaded" in logs
    assert progress_of(state) == 100.0

    again = exchange_rates_backfill_flow(start_date="2026-01-01", end_date="2026-01-03")
    assert again["load_info"]["backfill"]["days_skipped"] == 3
    assert user_rows(data_dir) == ["2026-01-01", "2026-01-02", "2026-01-03"]


def test_malformed_date_refuses_the_run_at_once(oxr_sandbox: OXRSandbox, data_dir: Path) -> None:
    state = exchange_rates_backfill_flow(start_date="2026-02-30", return_state=True)
    # Failed, named Refused: alerts Slack, never counts toward a page (tests/test_alerting.py)
    assert state.is_failed() and state.name == "Refused"
    assert state.message == (
        "start_date='2026-02-30' is not a valid date: use YYYY-MM-DD, for example 2026-01-01"
    )
    assert oxr_sandbox.request_count() == 0
    with pytest.raises(InvalidDateError):  # a caller of the flow gets the error itself
        exchange_rates_backfill_flow(start_date="2026-02-30")


def test_transient_day_failure_is_retried_by_the_task_and_resumes(
    oxr_sandbox: OXRSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One worker, so the faults hit the first day: dlt's 4 HTTP attempts all fail, the task
    # fails transiently, Prefect retries it, and the retry asks only for what is missing.
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_CONCURRENCY", "1")
    oxr_sandbox.inject_faults("503", count=4)
    state = exchange_rates_backfill_flow(
        start_date="2026-01-01", end_date="2026-01-03", return_state=True
    )
    assert state.is_completed()
    assert oxr_sandbox.historical_dates_requested() == ["2026-01-01"] * 5 + [
        "2026-01-02",
        "2026-01-03",
    ]
    assert user_rows(data_dir) == ["2026-01-01", "2026-01-02", "2026-01-03"]


def test_bad_key_fails_the_flow_after_one_request(
    oxr_sandbox: OXRSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__API_KEY", "wrong-key")
    state = exchange_rates_backfill_flow(
        start_date="2026-01-01", end_date="2026-01-07", return_state=True
    )
    assert state.is_failed()
    # the client's one-line cause and fix, not dlt's "PipelineStepFailed: ..." wrapper
    # (OXR's own description, quoted, sits between the code and our fix)
    assert state.message.startswith(
        "Open Exchange Rates usage.json: HTTP 401 invalid_app_id (OXR: "
    ), state.message
    assert "): the app id was rejected" in state.message, state.message
    assert oxr_sandbox.request_count() == 1


def test_tasks_carry_the_shared_retry_policy() -> None:
    from flows.retry_policy import RETRIES, RETRY_JITTER_FACTOR, retry_delays, should_retry

    for task in (load_exchange_rates, backfill_exchange_rates):
        assert task.retries == RETRIES
        assert task.retry_delay_seconds == retry_delays()
        assert task.retry_jitter_factor == RETRY_JITTER_FACTOR
        assert task.retry_condition_fn is should_retry
    assert load_exchange_rates.name == "load-exchange-rates"
    assert backfill_exchange_rates.name == "backfill-exchange-rates"


# ---- the data contract and missing days, under Prefect --------------------------------------


def test_refused_day_fails_the_flow_without_retries_and_keeps_the_good_days(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    oxr_sandbox.inject_faults("patch", path="/api/historical/2026-01-02.json", rates={"EUR": -0.9})
    state = exchange_rates_backfill_flow(
        start_date="2026-01-01", end_date="2026-01-03", return_state=True
    )
    assert state.is_failed()
    assert state.message.startswith(
        "Open Exchange Rates historical/2026-01-02.json (day 2026-01-02): field `rates.EUR` is "
        "-0.9, not a positive finite number; refused, nothing written. Fix: "
    )
    # a Prefect retry would ask for the day again: permanent means asked once
    assert oxr_sandbox.historical_dates_requested().count("2026-01-02") == 1
    assert user_rows(data_dir) == ["2026-01-01", "2026-01-03"]


def test_missing_days_are_skipped_and_listed_in_the_run_report(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    oxr_sandbox.inject_faults(
        "error_body", path="/api/historical/2026-01-02.json", status=404, message="not_found"
    )
    state = exchange_rates_backfill_flow(
        start_date="2026-01-01", end_date="2026-01-03", return_state=True
    )
    assert state.is_completed()
    backfill = state.result()["load_info"]["backfill"]
    assert backfill["days_not_available"] == ["2026-01-02"] and backfill["days_loaded"] == 2
    assert user_rows(data_dir) == ["2026-01-01", "2026-01-03"]
    logs = "\n".join(run_logs(state))
    assert "OXR has no rates for 1 day(s), skipped: 2026-01-02" in logs

    async def report() -> Any:
        async with get_client() as client:
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
                )
            )
        (artifact,) = [a for a in artifacts if a.type == "table"]  # not the progress one
        return artifact

    artifact = asyncio.run(report())
    assert "no rates at OXR, skipped: 2026-01-02" in artifact.description
    assert '"days_not_available": "2026-01-02"' in str(artifact.data).replace("'", '"')


def test_404_on_every_day_fails_the_flow_once(oxr_sandbox: OXRSandbox, data_dir: Path) -> None:
    for day in ("2026-01-01", "2026-01-02"):
        oxr_sandbox.inject_faults(
            "error_body", path=f"/api/historical/{day}.json", status=404, message="not_found"
        )
    state = exchange_rates_backfill_flow(
        start_date="2026-01-01", end_date="2026-01-02", return_state=True
    )
    assert state.is_failed() and "all 2 requested days answered 404" in state.message
    assert sorted(oxr_sandbox.historical_dates_requested()) == ["2026-01-01", "2026-01-02"]


def test_a_half_written_day_file_is_quarantined_refetched_and_reported(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    folder = data_dir / "bucket" / "exchange-rates" / "historical"
    folder.mkdir(parents=True)
    (folder / "2026-01-02.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00half")  # a crash mid-copy
    state = exchange_rates_backfill_flow(
        start_date="2026-01-01", end_date="2026-01-02", return_state=True
    )
    assert state.is_completed()
    assert len(state.result()["load_info"]["backfill"]["quarantined"]) == 1
    assert user_rows(data_dir) == ["2026-01-01", "2026-01-02"]
    logs = "\n".join(run_logs(state))
    assert "historical/2026-01-02.jsonl.gz does not read back whole" in logs
    assert "the day will be fetched again" in logs

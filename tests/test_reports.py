"""Run reports: one table artifact per flow run, the audit tables, dlt's logs in the run's logs."""

# Fixtures are imported from tests.fixtures.postgres and requested by name (F811).
# ruff: noqa: F811

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import duckdb
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from dev_stack.oxr_sandbox import OXRSandbox
from dev_stack.oxr_sandbox import currencies as sandbox_currencies
from dev_stack.products_data import seed, simulate_day
from flows.application_tables import products_daily_flow
from flows.currencies import currencies_weekly_flow
from flows.exchange_rates import exchange_rates_backfill_flow
from flows.reporting import report_key, report_rows
from pipelines.pipeline_run import RunSummary
from tests.conftest import SANDBOX_APP_ID
from tests.fixtures.postgres import (  # noqa: F401
    ProductsDatabase,
    postgres_cluster,
    products_database,
)

pytestmark = pytest.mark.usefixtures("prefect_server")

SEED_ROWS = 300


def run_artifacts(flow_run_id: UUID) -> list[Any]:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def report_of(state: Any) -> tuple[Any, list[dict[str, Any]]]:
    """The one report artifact of the flow run that ended in `state`, and its table rows."""
    # (a backfill also publishes a progress artifact)
    (artifact,) = [a for a in run_artifacts(state.state_details.flow_run_id) if a.type == "table"]
    data = artifact.data if isinstance(artifact.data, list) else json.loads(artifact.data)
    return artifact, data


def warehouse(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(data_dir / "warehouse" / "dlt.duckdb"), read_only=True) as con:
        return con.sql(sql).fetchall()


def test_currencies_report_counts_rows_files_and_the_new_table(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    expected = len(sandbox_currencies())
    first = currencies_weekly_flow(return_state=True)
    artifact, rows = report_of(first)
    assert artifact.key == "currencies-weekly-report" and artifact.type == "table"
    assert rows == [
        {
            "pipeline": "currencies",
            "table": "currencies",
            "rows_loaded": expected,
            "files_written": 1,
            "schema_changes": rows[0]["schema_changes"],
            "duration_s": rows[0]["duration_s"],
        }
    ]
    assert rows[0]["schema_changes"].startswith("new table (")
    assert rows[0]["duration_s"] > 0
    assert "**currencies-weekly** run report" in artifact.description
    assert f"{expected} row(s)" in artifact.description

    second = currencies_weekly_flow(return_state=True)
    _, rows = report_of(second)
    assert rows[0]["rows_loaded"] == expected and rows[0]["schema_changes"] == ""

    # the audit, the dlt way: one `_load_info` and one `_trace` row per run, next to the data
    loads = warehouse(
        data_dir,
        "select count(*), count(distinct _dlt_load_id) from DLT.OPEN_EXCHANGE_RATES._load_info",
    )
    assert loads == [(2, 2)]
    (trace,) = warehouse(
        data_dir,
        "select pipeline_name, steps::varchar, resolved_config_values::varchar "
        "from DLT.OPEN_EXCHANGE_RATES._trace order by started_at desc limit 1",
    )
    assert trace[0] == "currencies" and '"load"' in trace[1]
    assert SANDBOX_APP_ID not in json.dumps(
        warehouse(data_dir, "select * from DLT.OPEN_EXCHANGE_RATES._trace"), default=str
    )


def test_backfill_report_adds_days_requested_skipped_loaded(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    first = exchange_rates_backfill_flow(
        start_date="2026-01-01", end_date="2026-01-03", return_state=True
    )
    artifact, rows = report_of(first)
    assert artifact.key == "exchange-rates-backfill-report"
    (row,) = rows
    assert row["table"] == "historical" and row["rows_loaded"] == 3
    assert row["files_written"] == 3  # one file per rate date
    assert (row["days_requested"], row["days_skipped"], row["days_loaded"]) == (3, 0, 3)
    assert "3 day(s) requested, 0 skipped" in artifact.description

    again = exchange_rates_backfill_flow(
        start_date="2026-01-01", end_date="2026-01-04", return_state=True
    )
    (row,) = report_of(again)[1]
    assert (row["days_requested"], row["days_skipped"], row["days_loaded"]) == (1, 3, 1)

    # audit files beside dlt's state, never under the prefix Snowpipe watches
    bucket = data_dir / "bucket"
    audit = sorted(p.relative_to(bucket).parts[:2] for p in bucket.rglob("*.jsonl*"))
    assert ("_dlt_exchange_rates_audit", "_load_info") in audit
    assert ("_dlt_exchange_rates_audit", "_trace") in audit
    watched = bucket / "exchange-rates"
    assert {p.relative_to(watched).parts[0] for p in watched.rglob("*.*")} == {"historical"}


def test_products_report_and_audit_next_to_the_merged_table(
    products_database: ProductsDatabase, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(products_database.dsn, SEED_ROWS)
    monkeypatch.setenv("SOURCES__PRODUCTS__CREDENTIALS", products_database.dsn)
    _, rows = report_of(products_daily_flow(return_state=True))
    assert [(r["table"], r["rows_loaded"]) for r in rows] == [("products", SEED_ROWS)]
    activity = simulate_day(products_database.dsn)
    _, rows = report_of(products_daily_flow(return_state=True))
    assert [(r["table"], r["rows_loaded"]) for r in rows] == [("products", activity["total"])]
    assert warehouse(data_dir, "select count(*) from DLT.APPLICATION_DATA._load_info") == [(2,)]
    # no new activity: nothing loaded, so no load id and no audit row; the report says so
    _, rows = report_of(products_daily_flow(return_state=True))
    assert [(r["table"], r["rows_loaded"]) for r in rows] == [("nothing new", 0)]
    assert warehouse(data_dir, "select count(*) from DLT.APPLICATION_DATA._load_info") == [(2,)]
    password = products_database.dsn.split(":")[2].split("@")[0]
    assert password not in json.dumps(
        warehouse(data_dir, "select * from DLT.APPLICATION_DATA._trace"), default=str
    )


def test_report_rows_name_new_columns() -> None:
    summary = RunSummary(
        pipeline="products",
        rows={"products": 5},
        files={"products": 2},
        schema_changes={"products": ["discount_pct"]},
        new_tables=[],
        duration_seconds=1.5,
    )
    assert report_rows(summary)[0]["schema_changes"] == "new columns: discount_pct"
    assert report_key("exchange_rates-daily") == "exchange-rates-daily-report"


def test_dlt_log_lines_reach_the_flow_run_logs() -> None:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    @flow(name="dlt-logging-probe")
    def probe() -> None:
        from dlt.common import logger as dlt_logger

        dlt_logger.warning("dlt says: probe warning")

    state = probe(return_state=True)
    run_id = state.state_details.flow_run_id
    deadline = time.monotonic() + 15  # logs are shipped to the API in batches
    dlt_lines: list[Any] = []
    while not dlt_lines and time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
            )
        dlt_lines = [log for log in logs if log.name == "dlt"]
        time.sleep(0.3)
    # one line (not two: the worker's PREFECT_LOGGING_EXTRA_LOGGERS=dlt is the only route), in
    # Prefect's one format: dlt formats a handler of its own (flows/pipeline_flow.py), not the
    # API handler, so no second timestamp sits inside the message
    assert len(dlt_lines) == 1
    assert dlt_lines[0].message == "dlt says: probe warning"
    assert dlt_lines[0].level == logging.WARNING


def test_backfill_description_names_missing_days_quarantine_warnings_and_pipe_failures() -> None:
    from datetime import date

    from flows.reporting import describe, report_rows
    from pipelines.exchange_rates import BackfillResult

    result = BackfillResult(
        start_date=date(2026, 1, 1),
        end_date=date(2026, 1, 4),
        days_total=4,
        days_skipped=0,
        days_requested=4,
        days_loaded=2,
        days_not_available=[date(2026, 1, 2), date(2026, 1, 3)],
        quarantined=["/b/_quarantine/exchange-rates/t/historical/2026-01-04.jsonl.gz"],
        rate_warnings=["2026-01-04 EUR 0.9 -> 5"],
        local_pipe={"failed": [{"file": "latest/x.jsonl.gz", "error": "EOFError"}]},
    )
    summary = result.summarize(RunSummary(pipeline="exchange_rates"))
    text = describe("exchange-rates-backfill", [summary])
    assert "no rates at OXR, skipped: 2026-01-02, 2026-01-03" in text
    assert "1 broken file(s) moved to quarantine" in text
    assert "1 rate move(s) over 50% (kept, see logs)" in text
    assert "the pipe could not load: latest/x.jsonl.gz" in text
    (row,) = report_rows(summary)
    assert row["days_not_available"] == "2026-01-02, 2026-01-03"

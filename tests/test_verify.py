"""`data-pipelines verify` on a freshly loaded local warehouse, then made stale or duplicated.

The warehouse is loaded by the real pipelines: currencies and exchange rates from the OXR
sandbox (latest.json -> bucket -> local pipe), products from a real PostgreSQL database.
Production-only checks (pipe status, COPY_HISTORY) are tested on their SQL and their judgement:
fakesnow cannot run `SYSTEM$PIPE_STATUS` or `COPY_HISTORY`.
"""

# Fixtures are imported from tests.fixtures.postgres and requested by name (F811).
# ruff: noqa: F811

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
import sqlglot

import verify
from data_pipelines_cli.main import main
from dev_stack.oxr_sandbox import OXRSandbox
from dev_stack.products_data import seed
from environments import load_environment
from pipelines import currencies, exchange_rates, products
from pipelines.registry import application_tables
from tests.fixtures.postgres import (  # noqa: F401
    ProductsDatabase,
    postgres_cluster,
    products_database,
)

SEED_ROWS = 200


def LOCAL() -> Any:
    """The local environment, as a flow or the CLI builds it and hands it down."""
    return load_environment("local")


@pytest.fixture
def loaded(
    oxr_sandbox: OXRSandbox,
    data_dir: Path,
    products_database: ProductsDatabase,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """A local warehouse freshly loaded by the three pipelines."""
    seed(products_database.dsn, SEED_ROWS)
    monkeypatch.setenv("SOURCES__PRODUCTS__CREDENTIALS", products_database.dsn)
    monkeypatch.setenv("SOURCES__PRODUCTS__LOOKBACK", "0")
    currencies.run(LOCAL())
    products.run(LOCAL())
    exchange_rates.run_latest(LOCAL())  # today's rates, then the local pipe
    return data_dir


def execute(data_dir: Path, database: str, sql: str) -> None:
    with duckdb.connect(str(data_dir / "warehouse" / f"{database}.duckdb")) as con:
        con.execute(sql)


def failed(report: verify.VerifyReport) -> set[tuple[str, str]]:
    return {(c.check, c.target) for c in report.failures}


def test_verify_passes_on_a_freshly_loaded_stack(
    loaded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = verify.verify(LOCAL())
    assert report.ok, report.render()
    assert {c.check for c in report.checks} == {
        "rows",
        "freshness",
        "duplicates",
        "reconcile",
        "columns",
    }
    assert len(report.checks) == 4 + 2 + 3 + 2
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert "OK: all 11 checks passed." in out
    assert "DLT.APPLICATION_DATA.PRODUCTS" in out and "200 rows" in out
    print(out)  # the readable report, for the record (pytest -s)


def test_stale_data_fails_naming_the_tables(
    loaded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # products: the warehouse's newest audit rows are three days behind the source's
    execute(
        loaded, "dlt", "update application_data.products set valid_ts = valid_ts - interval 3 day"
    )
    # exchange rates: the newest day users can read is five days old
    execute(
        loaded,
        "snowpipe",
        "update open_exchange_rates.exchange_rates set rate_date = rate_date - interval 5 day",
    )
    report = verify.verify(LOCAL())
    assert failed(report) == {
        ("freshness", "DLT.APPLICATION_DATA.PRODUCTS"),
        ("freshness", "SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_LATEST"),
        # the shifted rows no longer sit on the days the source has them
        ("reconcile", "DLT.APPLICATION_DATA.PRODUCTS"),
    }
    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: 3 of 11 checks:" in out
    assert "  - freshness DLT.APPLICATION_DATA.PRODUCTS: latest valid_ts" in out
    assert "72.0 h behind the source's" in out
    assert (
        "  - freshness SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_LATEST: latest rate_date" in out
    )
    print(out)


def test_duplicate_keys_where_users_read_fail_naming_the_table(
    loaded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    execute(
        loaded,
        "dlt",
        "insert into application_data.products select * from application_data.products "
        "where audit_id = (select min(audit_id) from application_data.products)",
    )
    report = verify.verify(LOCAL())
    # (the copied row is older than the reconciliation window, so only the key check sees it)
    assert failed(report) == {("duplicates", "DLT.APPLICATION_DATA.PRODUCTS")}
    (failure,) = report.failures
    assert failure.detail.startswith("duplicate (audit_id): (")
    assert main(["verify", "--json"]) == 1
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert [c["target"] for c in checks if c["ok"] == "FAILED"] == ["DLT.APPLICATION_DATA.PRODUCTS"]


def test_a_missing_table_fails_and_skips_its_other_checks(
    oxr_sandbox: OXRSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    currencies.run(LOCAL())
    report = verify.check_warehouse(
        LOCAL().warehouse_query(),
        environment="local",
        monitors_snowpipe=False,
        tables=application_tables(),
        sources={"products": verify.TableSourceReader(latest=lambda: None)},
    )
    assert failed(report) == {
        ("rows", "DLT.APPLICATION_DATA.PRODUCTS"),
        ("rows", "SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES"),
        ("rows", "SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_LATEST"),
    }
    assert {c.check for c in report.checks if c.target == verify.PRODUCTS} == {"rows"}


@pytest.mark.usefixtures("prefect_server")
def test_data_freshness_flow_fails_with_the_failures_as_its_message(loaded: Path) -> None:
    from flows.data_freshness import data_freshness_flow

    assert data_freshness_flow(return_state=True).is_completed()
    execute(
        loaded, "dlt", "update application_data.products set valid_ts = valid_ts - interval 3 day"
    )
    state = data_freshness_flow(return_state=True)
    assert state.is_failed()
    # one line (it is the Slack alert's message), the checks joined by "; "
    assert state.message.startswith(
        "2 check(s) failed: freshness DLT.APPLICATION_DATA.PRODUCTS: latest valid_ts"
    )
    assert "; reconcile DLT.APPLICATION_DATA.PRODUCTS: row counts differ" in state.message


# ---- production-only checks: SQL and judgement -------------------------------------------------


def test_production_sql_is_valid_snowflake() -> None:
    assert verify.pipe_status_sql() == (
        "select SYSTEM$PIPE_STATUS('SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_PIPE')"
    )
    copy = verify.copy_errors_sql(verify.EXCHANGE_RATES, 24)
    assert "from table(SNOWPIPE.INFORMATION_SCHEMA.COPY_HISTORY(" in copy
    assert "TABLE_NAME => 'SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES'" in copy
    assert "START_TIME => DATEADD(hours, -24, CURRENT_TIMESTAMP())" in copy
    assert "where status <> 'Loaded' or error_count > 0" in copy
    for sql in (
        copy,
        verify.pipe_status_sql(),
        verify.duplicates_sql(verify.EXCHANGE_RATES_LATEST, ("rate_date", "base")),
        verify.latest_rate_date_sql(),
        verify.warehouse_columns_sql(verify.PRODUCTS),
        verify.count_between_sql(
            verify.PRODUCTS,
            "valid_ts",
            datetime(2026, 11, 1, tzinfo=UTC),
            datetime(2026, 11, 2, tzinfo=UTC),
        ),
        verify.latest_cursor_sql(verify.PRODUCTS, "valid_ts"),
    ):
        sqlglot.parse_one(sql, read="snowflake")  # raises on a syntax error


def test_pipe_status_judgement() -> None:
    running = verify.pipe_status_check(
        json.dumps(
            {
                "executionState": "RUNNING",
                "pendingFileCount": 0,
                "lastIngestedTimestamp": "2026-11-24T09:01:02.000Z",
            }
        )
    )
    assert running.ok and "pendingFileCount 0" in running.detail
    paused = verify.pipe_status_check(
        json.dumps({"executionState": "PAUSED", "pendingFileCount": 3})
    )
    assert not paused.ok and "PAUSED" in paused.detail
    stalled = verify.pipe_status_check(
        json.dumps({"executionState": "STOPPED_STAGE_ALTERED", "error": "stage changed"})
    )
    assert not stalled.ok and "stage changed" in stalled.detail


def test_production_report_includes_pipe_and_copy_history() -> None:
    """The production branch with a scripted Snowflake (the answers Snowflake would give)."""
    today = datetime.now(UTC)

    def snowflake(sql: str) -> list[tuple[Any, ...]]:
        if sql.startswith("select count(*)"):
            return [(10,)]
        if "SYSTEM$PIPE_STATUS" in sql:
            return [(json.dumps({"executionState": "RUNNING", "pendingFileCount": 0}),)]
        if "COPY_HISTORY" in sql:
            return [("historical/2026-11-20.jsonl.gz", "Load failed", "Error parsing JSON", today)]
        if "max(rate_date)" in sql:
            return [(today.date(),)]
        if "max(valid_ts)" in sql:
            return [(today,)]
        return []  # no duplicates

    report = verify.check_warehouse(
        snowflake,
        environment="production",
        monitors_snowpipe=True,
        tables=application_tables(),
        sources={"products": verify.TableSourceReader(latest=lambda: today)},
    )
    assert failed(report) == {("copy errors", "SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES")}
    assert "historical/2026-11-20.jsonl.gz Load failed: Error parsing JSON" in (
        report.failure_summary()
    )
    assert ("pipe status", verify.EXCHANGE_RATES_PIPE) in {
        (c.check, c.target) for c in report.checks if c.ok
    }


def test_late_audit_rows_beyond_the_lookback_show_as_a_gap_with_the_fix(
    loaded: Path, products_database: ProductsDatabase
) -> None:
    """A row committed after the load with a valid_ts older than the lookback never arrives:
    the daily run's cursor is past it. Reconciliation counts it missing and says what to do."""
    with psycopg.connect(products_database.dsn) as conn:
        conn.execute(
            "INSERT INTO raw_data.products (audit_id, product_id, product_name, price_usd, "
            "operation, valid_ts) SELECT max(audit_id) + 1, 1, 'late', 1.0, 'UPDATE', "
            "max(valid_ts) - interval '2 days' FROM raw_data.products"
        )
    products.run(LOCAL())  # lookback 0: the late row is behind the cursor
    report = verify.verify(LOCAL())
    assert failed(report) == {("reconcile", "DLT.APPLICATION_DATA.PRODUCTS")}
    (gap,) = report.failures
    assert "warehouse" in gap.detail and "products-full-refresh" in gap.detail
    assert "lookback" in gap.detail
    products.run(LOCAL(), full_refresh=True)  # the documented fix
    assert verify.verify(LOCAL()).ok


def test_a_column_dropped_in_the_source_is_reported(
    loaded: Path, products_database: ProductsDatabase
) -> None:
    with psycopg.connect(products_database.dsn) as conn:
        conn.execute("ALTER TABLE raw_data.products DROP COLUMN product_name")
    report = verify.verify(LOCAL())
    assert failed(report) == {("columns", "DLT.APPLICATION_DATA.PRODUCTS")}
    (dropped,) = report.failures
    assert dropped.detail.startswith("dropped in the source, NULL in every new row: product_name")

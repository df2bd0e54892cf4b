"""The versioned Snowflake SQL: a stable dry run, and the parts fakesnow can execute do execute."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infra import snowflake as snowflake_ddl

# Statement kinds fakesnow (0.11) implements; roles, grants, users, warehouses, stages,
# integrations and pipes are Snowflake-only and are checked by review, not here.
FAKESNOW_HOLDS = (
    "CREATE DATABASE",
    "CREATE SCHEMA",
    "CREATE TABLE",
    "CREATE OR REPLACE TABLE",
    "CREATE VIEW",
    "CREATE OR REPLACE VIEW",
    "CREATE FILE FORMAT",
    "CREATE OR REPLACE FILE FORMAT",
)


def test_dry_run_is_stable_and_complete() -> None:
    first = snowflake_ddl.render(strict=False)
    assert first == snowflake_ddl.render(strict=False)
    statements = snowflake_ddl.split_statements(first)
    assert (
        "CREATE DATABASE IF NOT EXISTS DLT COMMENT = 'Loaded by dlt pipelines (data-pipelines)'"
        in statements
    )
    for expected in (
        "CREATE SCHEMA IF NOT EXISTS DLT.OPEN_EXCHANGE_RATES",
        "CREATE SCHEMA IF NOT EXISTS DLT.APPLICATION_DATA",
        "CREATE SCHEMA IF NOT EXISTS SNOWPIPE.OPEN_EXCHANGE_RATES",
        "CREATE ROLE IF NOT EXISTS SVC_DLT COMMENT = 'dlt loader for data-pipelines'",
        "GRANT USAGE ON WAREHOUSE LOADING TO ROLE SVC_DLT",
    ):
        assert expected in statements
    # least privilege: the loader writes DLT and only reads SNOWPIPE
    snowpipe_grants = [s for s in statements if "SNOWPIPE" in s and s.startswith("GRANT")]
    assert snowpipe_grants and all(
        s.startswith(("GRANT USAGE", "GRANT SELECT")) for s in snowpipe_grants
    )
    # files apply in version order
    assert first.index("010_foundation.sql") < first.index("020_")


def test_missing_setting_names_it() -> None:
    with pytest.raises(snowflake_ddl.MissingSetting, match="SVC_DLT_RSA_PUBLIC_KEY"):
        snowflake_ddl.render(settings=lambda name: None)


def test_cli_dry_run_prints_the_sql() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("data-pipelines")), "apply", "snowflake", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == snowflake_ddl.render(strict=False).strip()


def test_supported_statements_execute_on_fakesnow() -> None:
    import fakesnow
    import snowflake.connector

    rendered = snowflake_ddl.render(settings=lambda name: f"test-{name.lower()}")
    runnable = [
        s for s in snowflake_ddl.split_statements(rendered) if s.upper().startswith(FAKESNOW_HOLDS)
    ]
    assert len(runnable) >= 5
    with fakesnow.patch():
        connection = snowflake.connector.connect()
        assert snowflake_ddl.execute(runnable, connection) == len(runnable)
        cursor = connection.cursor()
        cursor.execute("SHOW SCHEMAS IN DATABASE DLT")
        dlt_schemas = {row[1].upper() for row in cursor.fetchall()}
        cursor.execute("SHOW SCHEMAS IN DATABASE SNOWPIPE")
        snowpipe_schemas = {row[1].upper() for row in cursor.fetchall()}
    assert {"OPEN_EXCHANGE_RATES", "APPLICATION_DATA"} <= dlt_schemas
    assert "OPEN_EXCHANGE_RATES" in snowpipe_schemas

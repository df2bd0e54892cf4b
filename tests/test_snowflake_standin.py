"""The Snowflake stand-in in its own environment: it serves, or it says in seconds why not.

fakesnow (and the sqlglot, duckdb and connector versions it pins) lives in `.venv-standin`, never
in the project's environment; a stand-in that cannot serve must not leave a client retrying
HTTP 500s for minutes (`data-pipelines apply snowflake` once hung 300 s on fakesnow 0.12.1).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from dev_stack import processes
from rehearsal import standin_process
from tests.fixtures.snowflake_standin import SnowflakeStandIn, snowflake_standin  # noqa: F401

PROJECT_DIR = Path(__file__).resolve().parent.parent


def _locked_packages(lock: Path) -> dict[str, str]:
    return {p["name"]: p.get("version", "") for p in tomllib.loads(lock.read_text())["package"]}


def test_fakesnow_is_not_in_the_production_resolution() -> None:
    project = _locked_packages(PROJECT_DIR / "uv.lock")
    standin = _locked_packages(standin_process.ENV_PROJECT / "uv.lock")
    assert "fakesnow" not in project
    assert "fakesnow" in standin
    with pytest.raises(ImportError):
        __import__("fakesnow")


def test_the_standin_environment_passes_its_self_test() -> None:
    result = subprocess.run(
        [*standin_process.argv(0), "--self-test"],
        cwd=standin_process.cwd(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "can serve [fakesnow 0.11.20" in result.stdout


@pytest.mark.server  # starts the stand-in (with an interpreter it cannot serve from)
def test_a_standin_that_cannot_serve_fails_in_seconds_with_one_line(tmp_path: Path) -> None:
    """The project's own interpreter has no fakesnow: the stand-in exits before it listens
    and the launcher raises with the stand-in's own line naming the cause."""
    port = processes.free_port()
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(standin_process.PYTHON_VAR, sys.executable)
        with pytest.raises(standin_process.StandInFailed) as failure:
            standin_process.start(port, [], tmp_path / "standin.log")
    elapsed = time.monotonic() - started
    message = str(failure.value)
    assert elapsed < 15, elapsed
    assert "\n" not in message
    assert message.startswith("Snowflake stand-in cannot serve: ModuleNotFoundError: ")
    assert "fakesnow" in message and "(exit 3)" in message
    assert "scripts/setup.sh" in message
    assert processes.port_is_free(port)


def test_a_missing_standin_environment_is_named(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(standin_process.PYTHON_VAR, str(tmp_path / "no-venv" / "bin" / "python"))
        with pytest.raises(standin_process.StandInFailed, match=r"environment .* is missing"):
            standin_process.argv(1)


def test_an_internal_error_is_a_sql_error_at_once_not_an_http_500(
    snowflake_standin: SnowflakeStandIn,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A statement the stand-in's own code fails on (here: a COPY naming a file the stage
    does not hold) reaches the client as one SQL error naming the cause, in seconds; fakesnow
    alone answers HTTP 500 and the connector retries it for minutes."""
    import snowflake.connector

    stage_dir = tmp_path / "stage"
    stage_dir.mkdir()
    database = snowflake_standin.fresh_database("STANDIN")
    with snowflake_standin.connect(database=database, schema="S") as con:
        cur = con.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {database}.S")
        cur.execute(f"CREATE TABLE {database}.S.T (D DATE)")
        cur.execute(f"CREATE STAGE {database}.S.FILES URL = '{stage_dir.as_uri()}/'")
        started = time.monotonic()
        with pytest.raises(snowflake.connector.errors.ProgrammingError) as failure:
            cur.execute(
                f"COPY INTO {database}.S.T (D) FROM (SELECT $1:d::DATE FROM @{database}.S.FILES) "
                "FILES = ('missing.jsonl') FILE_FORMAT = (TYPE = JSON)"
            )
        elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed
    assert "Snowflake stand-in cannot serve this statement: " in str(failure.value)
    assert "missing.jsonl" in str(failure.value)


@pytest.mark.server  # starts a stand-in of its own
def test_the_self_test_leaves_the_servers_own_settings_in_force(tmp_path: Path) -> None:
    """The start-up self-test patches fakesnow too; `--mirror` (and the test hooks) must still
    hold for what the server then serves: an S3 stage reads from the mirror folder."""
    port = processes.free_port()
    mirror = tmp_path / "mirror"
    server = standin_process.start(port, ["--mirror", str(mirror)], tmp_path / "standin.log")
    try:
        with SnowflakeStandIn(port).connect() as con:
            cur = con.cursor()
            cur.execute("CREATE DATABASE IF NOT EXISTS MIRRORED")
            cur.execute("CREATE SCHEMA IF NOT EXISTS MIRRORED.S")
            cur.execute("CREATE STAGE MIRRORED.S.FILES URL = 's3://bucket/exchange-rates/'")
            cur.execute("SHOW STAGES IN SCHEMA MIRRORED.S")
            urls = [row[4] for row in cur.fetchall()]
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert urls == [f"{(mirror / 'bucket' / 'exchange-rates').as_uri()}/"]


def test_a_connector_with_its_defaults_logs_no_telemetry_warning(
    snowflake_standin: SnowflakeStandIn,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The stand-in has no telemetry endpoint; connector 5 logged "Failed to export telemetry"
    (a WARNING) for every batch it could not send, in every production run of the rehearsal.
    Its login answer switches telemetry off (`snowflake_standin.LOGIN_PARAMETERS`), so a
    connection with the connector's defaults, as dlt opens one, stays quiet."""
    import snowflake.connector

    caplog.set_level(logging.WARNING, logger="snowflake.connector")
    connection = snowflake.connector.connect(
        user="TEST",
        password="test",
        account="standin",
        host="127.0.0.1",
        port=snowflake_standin.port,
        protocol="http",
    )
    try:
        cursor = connection.cursor()
        for statement in ("select 1", "select 2", "show databases"):
            cursor.execute(statement).fetchall()
    finally:
        connection.close()
    telemetry = [r.getMessage() for r in caplog.records if "telemetry" in r.getMessage().lower()]
    assert not telemetry, telemetry

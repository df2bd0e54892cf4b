"""The versioned Snowflake SQL: a stable dry run, and the parts fakesnow can execute do execute."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infra import snowflake as snowflake_ddl
from tests.fixtures.snowflake_standin import SnowflakeStandIn, snowflake_standin  # noqa: F401

# Statement kinds fakesnow (0.11) implements; roles, grants, users, warehouses, integrations
# and pipes are Snowflake-only and are checked by the structural tests below and by review.
FAKESNOW_HOLDS = (
    "USE ROLE",
    "CREATE STAGE",
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
    # least privilege: the loader writes DLT and only reads SNOWPIPE (and the pipe's status)
    snowpipe_grants = [
        s for s in statements if "SNOWPIPE" in s and s.startswith("GRANT") and "SVC_DLT" in s
    ]
    assert snowpipe_grants and all(
        s.startswith(("GRANT USAGE", "GRANT SELECT", "GRANT MONITOR ON PIPE"))
        for s in snowpipe_grants
    )
    # files apply in version order
    assert first.index("010_foundation.sql") < first.index("020_")


def test_split_keeps_semicolons_inside_comments_strings_and_dollar_bodies() -> None:
    """`;` in a `/* */` or `--` comment, a string or a `$$ ... $$` body ends nothing."""
    sql = """
-- header; with a semicolon
USE ROLE SYSADMIN;
/* a block comment; it says
   two things; on two lines */
CREATE TABLE IF NOT EXISTS DLT.A.T (note VARCHAR DEFAULT 'a;b');
CREATE OR REPLACE PROCEDURE DLT.A.P()
  RETURNS VARCHAR
  LANGUAGE SQL
  AS
$$
BEGIN
  INSERT INTO DLT.A.T VALUES ('x');  -- inside the body; still the body
  RETURN 'done; really';
END;
$$;
SELECT 1 /* inline; */ + 2
"""
    statements = snowflake_ddl.split_statements(sql)
    assert len(statements) == 4, statements
    assert statements[0] == "USE ROLE SYSADMIN"
    assert statements[1] == "CREATE TABLE IF NOT EXISTS DLT.A.T (note VARCHAR DEFAULT 'a;b')"
    assert statements[2].startswith("CREATE OR REPLACE PROCEDURE DLT.A.P()")
    assert "RETURN 'done; really';" in statements[2]
    assert statements[2].endswith("$$")
    assert " ".join(statements[3].split()) == "SELECT 1 + 2"
    assert not any("block comment" in s or "header" in s for s in statements)


def test_missing_setting_names_it() -> None:
    with pytest.raises(snowflake_ddl.MissingSetting, match="SVC_DLT_RSA_PUBLIC_KEY"):
        snowflake_ddl.render(settings=lambda name: None)


PRODUCTION_SETTINGS = {
    "DATA_PIPELINES_BUCKET_URL": "s3://acme-raw",
    "SNOWFLAKE_ADMIN__AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/snowflake-exchange-rates",
    "SNOWFLAKE_ADMIN__SVC_DLT_RSA_PUBLIC_KEY": "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
}


@pytest.fixture
def production_settings(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The DDL's settings as an operator sets them: dlt config (here its environment form)."""
    for name, value in PRODUCTION_SETTINGS.items():
        monkeypatch.setenv(name, value)
    return PRODUCTION_SETTINGS


def test_every_placeholder_is_rendered_from_dlt_config(production_settings: dict) -> None:
    rendered = snowflake_ddl.render()
    for syntax in ("{{", "}}", "&{", "<%"):
        assert syntax not in rendered
    assert "URL = 's3://acme-raw/exchange-rates/'" in rendered
    assert "STORAGE_ALLOWED_LOCATIONS = ('s3://acme-raw/exchange-rates/')" in rendered
    assert f"STORAGE_AWS_ROLE_ARN = '{production_settings['SNOWFLAKE_ADMIN__AWS_ROLE_ARN']}'" in (
        rendered
    )


def test_a_local_bucket_is_not_a_snowpipe_bucket(
    production_settings: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_PIPELINES_BUCKET_URL", "file:///tmp/bucket")
    with pytest.raises(snowflake_ddl.MissingSetting, match=r"needs BUCKET_URL: .*s3://<bucket>"):
        snowflake_ddl.render()


@pytest.mark.parametrize("leftover", ["&{bucket}", "<% bucket %>", "{{ bucket }}"])
def test_sql_with_any_other_placeholder_syntax_is_refused(tmp_path: Path, leftover: str) -> None:
    sql = tmp_path / "030_extra.sql"
    sql.write_text(f"USE ROLE SYSADMIN;\nCREATE STAGE S URL = 's3://{leftover}/x/';\n")
    with pytest.raises(snowflake_ddl.MissingSetting, match=r"030_extra.sql line 2 still holds"):
        snowflake_ddl.render(files=[sql], settings=lambda name: "value")
    # the dry run shows it as written
    assert leftover in snowflake_ddl.render(files=[sql], settings=lambda n: "v", strict=False)


def _active_roles(sql_file: Path) -> list[tuple[str | None, str]]:
    """(role in effect, statement) for each statement of one file applied on its own."""
    role, out = None, []
    text = snowflake_ddl.render(files=[sql_file], settings=lambda name: f"x-{name.lower()}")
    for statement in snowflake_ddl.split_statements(text):
        flat = " ".join(statement.split()).upper()
        if flat.startswith("USE ROLE "):
            role = flat.removeprefix("USE ROLE ").strip()
        out.append((role, flat))
    return out


@pytest.mark.parametrize("sql_file", snowflake_ddl.sql_files(), ids=lambda p: p.name)
def test_each_part_sets_its_role_first(sql_file: Path) -> None:
    statements = _active_roles(sql_file)
    # never the role an earlier file (or the admin user's default) left active
    assert statements[0][1].startswith("USE ROLE ")
    expected = {
        "CREATE DATABASE": "SYSADMIN",
        "CREATE WAREHOUSE": "SYSADMIN",
        "CREATE ROLE": "SECURITYADMIN",
        "CREATE USER": "SECURITYADMIN",
        "CREATE STORAGE INTEGRATION": "ACCOUNTADMIN",
        "CREATE STAGE": "SYSADMIN",
        "CREATE PIPE": "SYSADMIN",
        "CREATE TABLE": "SYSADMIN",
        "CREATE OR REPLACE VIEW": "SYSADMIN",
    }
    for role, statement in statements:
        for kind, wanted in expected.items():
            if statement.startswith(kind):
                assert role == wanted, f"{statement[:60]} runs as {role}, expected {wanted}"


def test_the_loader_role_can_monitor_the_pipe() -> None:
    from verify import EXCHANGE_RATES_PIPE

    statements = [s for f in snowflake_ddl.sql_files() for s in _active_roles(f)]
    pipe_owner = next(r for r, s in statements if s.startswith("CREATE PIPE IF NOT EXISTS "))
    grant = f"GRANT MONITOR ON PIPE {EXCHANGE_RATES_PIPE} TO ROLE SVC_DLT"
    # granted by the pipe's owner, after the pipe exists
    created_at = next(i for i, (_, s) in enumerate(statements) if s.startswith("CREATE PIPE"))
    granted_at = next(i for i, (_, s) in enumerate(statements) if s == grant)
    assert granted_at > created_at
    assert statements[granted_at][0] == pipe_owner


def test_cli_dry_run_prints_the_sql() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("data-pipelines")), "apply", "snowflake", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == snowflake_ddl.render(strict=False).strip()


def test_supported_statements_execute_on_the_standin(snowflake_standin: SnowflakeStandIn) -> None:  # noqa: F811
    """Over the wire, with the project's own connector, on fakesnow's server (its own env)."""
    rendered = snowflake_ddl.render(
        settings=lambda name: "s3://test-bucket" if name == "BUCKET_URL" else f"test-{name}"
    )
    runnable = [
        s for s in snowflake_ddl.split_statements(rendered) if s.upper().startswith(FAKESNOW_HOLDS)
    ]
    assert len(runnable) >= 5
    with snowflake_standin.connect() as connection:
        assert snowflake_ddl.execute(runnable, connection) == len(runnable)
        cursor = connection.cursor()
        cursor.execute("SHOW SCHEMAS IN DATABASE DLT")
        dlt_schemas = {row[1].upper() for row in cursor.fetchall()}
        cursor.execute("SHOW SCHEMAS IN DATABASE SNOWPIPE")
        snowpipe_schemas = {row[1].upper() for row in cursor.fetchall()}
    assert {"OPEN_EXCHANGE_RATES", "APPLICATION_DATA"} <= dlt_schemas
    assert "OPEN_EXCHANGE_RATES" in snowpipe_schemas

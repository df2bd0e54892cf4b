"""The environment switch: one variable picks where data lands; names match production."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.currencies import DATASET_NAME, PIPELINE_NAME
from pipelines.environment import (
    ConfigurationError,
    current_environment,
    pipelines_dir,
    warehouse_path,
)
from pipelines.runner import make_pipeline


def test_local_is_the_default_and_stays_in_the_data_folder(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATA_PIPELINES_ENV")
    env = current_environment()
    assert env.name == "local"
    assert warehouse_path("DLT") == data_dir / "warehouse" / "dlt.duckdb"
    assert env.exchange_rates_url() == (data_dir / "bucket").as_uri() + "/exchange-rates"
    assert Path(pipelines_dir()).is_relative_to(data_dir)
    pipeline = make_pipeline(PIPELINE_NAME, env.warehouse(), DATASET_NAME)
    assert Path(pipeline.working_dir).is_relative_to(data_dir)
    assert pipeline.destination.destination_name == "duckdb"


def test_production_resolves_snowflake_database_dlt_schema_open_exchange_rates(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_PIPELINES_ENV", "production")
    monkeypatch.setenv("DESTINATION__SNOWFLAKE__CREDENTIALS__HOST", "acme-xy123")
    monkeypatch.setenv("DESTINATION__SNOWFLAKE__CREDENTIALS__USERNAME", "SVC_DLT")
    monkeypatch.setenv("DESTINATION__SNOWFLAKE__CREDENTIALS__PASSWORD", "not-used")
    monkeypatch.setenv("DESTINATION__SNOWFLAKE__CREDENTIALS__WAREHOUSE", "LOADING")
    pipeline = make_pipeline(PIPELINE_NAME, current_environment().warehouse(), DATASET_NAME)
    client = pipeline.destination_client()
    assert client.config.credentials.database == "DLT"
    # Snowflake qualifies the schema by the connection's database: DLT.OPEN_EXCHANGE_RATES
    assert client.sql_client.fully_qualified_dataset_name() == '"OPEN_EXCHANGE_RATES"'
    assert client.sql_client.credentials.database == "DLT"
    # and the password never shows in what dlt displays
    assert "not-used" not in str(client.config.credentials)


def test_production_requires_a_bucket(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_PIPELINES_ENV", "production")
    with pytest.raises(ConfigurationError, match="DATA_PIPELINES_BUCKET_URL"):
        current_environment().exchange_rates_url()
    monkeypatch.setenv("DATA_PIPELINES_BUCKET_URL", "s3://acme-raw/")
    assert current_environment().exchange_rates_url() == "s3://acme-raw/exchange-rates"


def test_unknown_environment_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_PIPELINES_ENV", "staging")
    with pytest.raises(ConfigurationError, match=r"local.*production"):
        current_environment()

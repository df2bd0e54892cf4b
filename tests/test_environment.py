"""The environment: chosen once from one variable, handed down; names match production."""

from __future__ import annotations

from pathlib import Path

import pytest

from environments import load_environment
from local_runtime.warehouse import warehouse_path
from pipelines.currencies import DATASET_NAME, PIPELINE_NAME
from pipelines.environment import ConfigurationError, pipelines_dir
from pipelines.runner import make_pipeline


def test_local_is_the_default_and_stays_in_the_data_folder(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATA_PIPELINES_ENV")
    env = load_environment()
    assert env.name == "local"
    assert warehouse_path("DLT") == data_dir / "warehouse" / "dlt.duckdb"
    assert env.exchange_rates_url() == (data_dir / "bucket").as_uri() + "/exchange-rates"
    assert Path(pipelines_dir()).is_relative_to(data_dir)
    pipeline = make_pipeline(PIPELINE_NAME, env.warehouse(), DATASET_NAME)
    assert Path(pipeline.working_dir).is_relative_to(data_dir)
    # the named destination of .dlt/config.toml, so dlt's CLI attaches to the same one
    assert pipeline.destination.destination_name == "dlt"
    assert pipeline.destination.destination_type == "dlt.destinations.duckdb"
    with pipeline.destination_client() as client:
        assert Path(client.config.credentials.database) == data_dir / "warehouse" / "dlt.duckdb"


def test_production_resolves_snowflake_database_dlt_schema_open_exchange_rates(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESTINATION__SNOWFLAKE__CREDENTIALS__HOST", "acme-xy123")
    monkeypatch.setenv("DESTINATION__SNOWFLAKE__CREDENTIALS__USERNAME", "SVC_DLT")
    monkeypatch.setenv("DESTINATION__SNOWFLAKE__CREDENTIALS__PASSWORD", "not-used")
    monkeypatch.setenv("DESTINATION__SNOWFLAKE__CREDENTIALS__WAREHOUSE", "LOADING")
    environment = load_environment("production")
    pipeline = make_pipeline(PIPELINE_NAME, environment.warehouse(), DATASET_NAME)
    client = pipeline.destination_client()
    assert client.config.credentials.database == "DLT"
    # Snowflake qualifies the schema by the connection's database: DLT.OPEN_EXCHANGE_RATES
    assert client.sql_client.fully_qualified_dataset_name() == '"OPEN_EXCHANGE_RATES"'
    assert client.sql_client.credentials.database == "DLT"
    # and the password never shows in what dlt displays
    assert "not-used" not in str(client.config.credentials)
    assert environment.monitors_snowpipe
    assert environment.after_files_land("s3://acme-raw/exchange-rates") is None


def test_production_requires_a_bucket(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = load_environment("production")
    with pytest.raises(ConfigurationError, match="DATA_PIPELINES_BUCKET_URL"):
        environment.exchange_rates_url()
    monkeypatch.setenv("DATA_PIPELINES_BUCKET_URL", "s3://acme-raw/")
    assert environment.exchange_rates_url() == "s3://acme-raw/exchange-rates"


def test_the_variable_picks_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_PIPELINES_ENV", "Production ")
    assert load_environment().name == "production"
    monkeypatch.setenv("DATA_PIPELINES_ENV", "staging")
    with pytest.raises(ConfigurationError, match=r"local, production"):
        load_environment()

"""`production`: Snowflake (database `DLT`) and an S3 bucket watched by Snowpipe.

Credentials come from dlt's own configuration (environment, `.dlt/secrets.toml`, AWS Secrets
Manager); nothing here starts or imports anything of the local stack.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from environments.run_guard import pipeline_guard
from pipelines.environment import (
    BUCKET_URL_VAR,
    ConfigurationError,
    Environment,
    Query,
    TableQuery,
    configured_bucket_url,
)
from pipelines.names import WAREHOUSE_DATABASE
from pipelines.runner import atomic_swap_options, make_pipeline


def _warehouse(**options: Any) -> Any:
    import dlt

    # Credentials (account, user, key or password, warehouse, role) resolve from dlt config
    # under [destination.snowflake.credentials]; the database is fixed by our design.
    return dlt.destinations.snowflake(
        credentials={"database": WAREHOUSE_DATABASE}, **atomic_swap_options(**options)
    )


def _bucket_url() -> str:
    configured = configured_bucket_url()
    if not configured:
        raise ConfigurationError(
            "No bucket configured for production: set [data_pipelines] bucket_url = "
            f'"s3://<bucket>" in .dlt/config.toml or export {BUCKET_URL_VAR}=s3://<bucket>.'
        )
    return configured


def _after_files_land(exchange_rates_url: str) -> None:
    """Nothing to do: S3 notifies Snowpipe, which loads the new files (AUTO_INGEST)."""
    return None


def _sql_pipeline() -> Any:
    """A dlt pipeline whose SQL client reaches Snowflake (credentials from dlt config, as the
    loads use). Its client is built here, which resolves the credentials: without them this
    raises dlt's `ConfigFieldMissingException` once (naming the setting and where dlt looked),
    before any check or query, instead of once per check."""
    pipeline = make_pipeline("verify", _warehouse(), "open_exchange_rates")
    pipeline.sql_client()  # resolves the configuration; connects only when opened
    return pipeline


def _warehouse_query() -> Query:
    """SQL through dlt's Snowflake client: one string -> its rows."""
    pipeline = _sql_pipeline()

    def run(sql: str) -> list[tuple[Any, ...]]:
        with pipeline.sql_client() as client:
            return [tuple(row) for row in client.execute_sql(sql) or []]

    return run


def _warehouse_table_query() -> TableQuery:
    """SQL through dlt's Snowflake client: one string -> column names and rows."""
    pipeline = _sql_pipeline()

    def run(sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        with pipeline.sql_client() as client, client.execute_query(sql) as cursor:
            description = cursor.description or []
            rows = cursor.fetchall() if description else []
            return [str(column[0]) for column in description], [tuple(row) for row in rows]

    return run


def production_environment() -> Environment:
    return Environment(
        name="production",
        warehouse=_warehouse,
        bucket_url=_bucket_url,
        after_files_land=_after_files_land,
        warehouse_query=_warehouse_query,
        warehouse_table_query=_warehouse_table_query,
        # production reads the DSN from dlt config only ([sources.products] credentials)
        application_db_dsn_fallback=lambda: None,
        # Snowflake takes concurrent loads; each is one transaction
        warehouse_lock=nullcontext,
        serialized_loads=False,
        # the pool's runs meet only on the Prefect server: required
        run_guard=lambda name: pipeline_guard(name, required=True),
        monitors_snowpipe=True,
    )

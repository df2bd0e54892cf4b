"""`local`: the embedded default. DuckDB files named after the production databases, a bucket
folder, the local pipe standing in for Snowpipe, the local PostgreSQL cluster as the products
fallback. Everything stays in the data folder (`DATA_PIPELINES_DATA_DIR`, default `./.data`).
"""

from __future__ import annotations

from typing import Any

from environments.run_guard import pipeline_guard
from local_runtime.warehouse import local_bucket_url, warehouse_write_lock
from pipelines.environment import Environment, Query, TableQuery
from pipelines.names import WAREHOUSE_DATABASE
from pipelines.runner import atomic_swap_options

# Named destination in .dlt/config.toml: dlt's own CLI (`dlt pipeline NAME info`, `drop`)
# attaches to it by this name (kept in the pipeline state) and finds the same DuckDB file.
LOCAL_WAREHOUSE_DESTINATION = "dlt"


def _warehouse(**options: Any) -> Any:
    from dlt.common.destination import Destination
    from dlt.common.destination.configuration import ParquetFormatConfiguration

    return Destination.from_reference(
        LOCAL_WAREHOUSE_DESTINATION,
        # Load files live seconds on the local disk, next to the warehouse: compressing
        # them costs more than it saves (products 1M rows: extract 0.94 -> 0.78 s).
        parquet_format=ParquetFormatConfiguration(compression="none"),
        **atomic_swap_options(**options),
    )


def _after_files_land(exchange_rates_url: str) -> dict[str, Any]:
    """Play Snowpipe: load the new files under the prefix into the local SNOWPIPE database."""
    from local_runtime.snowpipe import ingest

    return ingest(exchange_rates_url).as_dict()


def _warehouse_query() -> Query:
    from local_runtime.warehouse import query

    return lambda sql: query(sql)[1]


def _warehouse_table_query() -> TableQuery:
    from local_runtime.warehouse import query

    return query


def _application_db_dsn_fallback() -> str | None:
    from local_runtime.cluster import recorded

    cluster = recorded()
    return cluster.dsn if cluster is not None else None


def local_environment() -> Environment:
    return Environment(
        name="local",
        warehouse=_warehouse,
        bucket_url=local_bucket_url,
        after_files_land=_after_files_land,
        warehouse_query=_warehouse_query,
        warehouse_table_query=_warehouse_table_query,
        application_db_dsn_fallback=_application_db_dsn_fallback,
        warehouse_lock=lambda: warehouse_write_lock(WAREHOUSE_DATABASE),
        serialized_loads=True,
        # the stack's Prefect server when there is one (its runs meet there), else the file lock
        run_guard=lambda name: pipeline_guard(name, required=False),
        monitors_snowpipe=False,
    )

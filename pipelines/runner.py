"""What every pipeline does the same way: where its state lives and how it loads."""

from __future__ import annotations

from typing import Any

import dlt
from dlt.common.pipeline import LoadInfo

from pipelines.environment import (
    WAREHOUSE_DATABASE,
    configure_runtime,
    pipelines_dir,
    warehouse_lock,
)


def make_pipeline(
    pipeline_name: str, destination: Any, dataset_name: str, **kwargs: Any
) -> dlt.Pipeline:
    """A dlt pipeline whose working folder and state stay in the project data folder."""
    configure_runtime()
    return dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=destination,
        dataset_name=dataset_name,
        pipelines_dir=pipelines_dir(),
        **kwargs,
    )


def extract_normalize_load(
    pipeline: dlt.Pipeline,
    data: Any,
    *,
    lock_database: str | None = WAREHOUSE_DATABASE,
    **extract_kwargs: Any,
) -> LoadInfo:
    """`pipeline.run`, split so that only the load step holds the local warehouse lock.

    Extraction (API calls, database reads) runs in parallel across flows; the short load into
    a local DuckDB file is serialised because DuckDB allows one writing process per file.
    Pass `lock_database=None` for destinations that are not the local warehouse.
    """
    pipeline.extract(data, **extract_kwargs)
    pipeline.normalize()
    if lock_database is None:
        return pipeline.load()
    with warehouse_lock(lock_database):
        return pipeline.load()


def load_summary(load_info: LoadInfo) -> dict[str, Any]:
    """A small, JSON-safe account of one run: rows per table, where they went, schema changes.

    Flows log it and publish it; it never contains credentials (dlt redacts them in
    `destination_displayable_credentials`, and we do not include that field at all).
    """
    pipeline = load_info.pipeline
    trace = pipeline.last_trace if pipeline is not None else None
    rows: dict[str, int] = {}
    if trace is not None and trace.last_normalize_info is not None:
        rows = {
            table: count
            for table, count in trace.last_normalize_info.row_counts.items()
            if not table.startswith("_dlt")
        }
    new_columns: dict[str, list[str]] = {}
    for package in load_info.load_packages:
        for table_name, table in package.schema_update.items():
            if table_name.startswith("_dlt"):
                continue
            columns = [c for c in table.get("columns", {}) if not c.startswith("_dlt")]
            if columns:
                new_columns.setdefault(table_name, []).extend(columns)
    started = load_info.started_at
    finished = load_info.finished_at
    return {
        "pipeline": load_info.pipeline.pipeline_name if pipeline is not None else None,
        "destination": load_info.destination_name,
        "dataset": load_info.dataset_name,
        "rows": rows,
        "load_ids": list(load_info.loads_ids),
        "schema_changes": new_columns,
        "duration_seconds": round((finished - started).total_seconds(), 3)
        if started and finished
        else None,
        "has_failed_jobs": load_info.has_failed_jobs,
    }

"""What every pipeline does the same way: where its state lives and how it loads."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import dlt
import pyarrow
from dlt.common.pipeline import LoadInfo

from pipelines import dlt_patches
from pipelines.environment import configure_runtime, pipelines_dir
from pipelines.locks import pipeline_run_lock

# Held around a load step; an environment's `warehouse_lock`, or nothing.
LoadLock = Callable[[], AbstractContextManager[Any]]

REPLACE_STRATEGY = "insert-from-staging"


def atomic_swap_options(**options: Any) -> dict[str, Any]:
    """dlt destination factory options (plus `options`) so readers never see a half or empty table.

    `replace` loads into the staging dataset and swaps in; dlt runs the staging -> table SQL
    (DELETE + INSERT for replace and merge) in one transaction only when
    `supports_transactions` is set, and neither the duckdb nor the snowflake factory sets it
    (dlt 1.31): a failing INSERT then left an EMPTY table behind (tests/test_products.py
    proves the fix). Both engines support transactions. Both are public keyword arguments of
    every dlt destination factory (a destination setting and a capability); `options` win.
    """
    return {"replace_strategy": REPLACE_STRATEGY, "supports_transactions": True, **options}


def make_pipeline(
    pipeline_name: str, destination: Any, dataset_name: str, **kwargs: Any
) -> dlt.Pipeline:
    """A dlt pipeline whose working folder and state stay in the project data folder."""
    configure_runtime()
    dlt_patches.parquet_without_dictionaries()
    return dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=dlt_patches.capabilities_resolved_once(destination),
        dataset_name=dataset_name,
        pipelines_dir=pipelines_dir(),
        **kwargs,
    )


def start_from_destination(
    pipeline: dlt.Pipeline, load_lock: LoadLock = nullcontext
) -> dlt.Pipeline:
    """Begin a run as on a fresh machine: dlt's working folder is scratch.

    A production run may start on any worker of the pool, in a new folder, so nothing a later
    run relies on may live on worker disk. The local folder is emptied and the state and
    schemas of the last completed load are restored from the destination (dlt does this only
    inside `pipeline.run()`, which our split steps do not call), so a shared local folder and a
    fresh pod start from the same place.
    """
    pipeline.drop()
    pipeline.activate()
    with load_lock():  # reads the destination (a local DuckDB file admits one process)
        pipeline.sync_destination()
    return pipeline


def extract_normalize_load(
    pipeline: dlt.Pipeline,
    data: Any,
    *,
    load_lock: LoadLock = nullcontext,
    load_destination: Any = None,
    **extract_kwargs: Any,
) -> LoadInfo:
    """`pipeline.run`, split so that only the load step holds the environment's load lock.

    Extraction (API calls, database reads) runs in parallel across flows; the short load into
    a local DuckDB file is serialised because DuckDB allows one writing process per file.
    `load_destination`, if given, is the destination factory the load step uses from now on
    (dlt's `pipeline.load(destination=...)`): the same destination with other options.
    """
    pipeline.extract(data, **extract_kwargs)
    # Arrow's allocator keeps the extract's freed buffers; give them back before the load
    # step's DuckDB allocates its own (10M rows: peak RSS -25 to -35 MiB)
    pyarrow.default_memory_pool().release_unused()
    pipeline.normalize()
    with load_lock():
        if load_destination is None:
            return pipeline.load()
        return pipeline.load(destination=dlt_patches.capabilities_resolved_once(load_destination))


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
    files: dict[str, int] = {}
    for package in load_info.load_packages:
        # one completed job = one data file loaded; `sql` jobs are dlt's follow-up statements
        # (replace/merge from staging), not files written
        for job in package.jobs.get("completed_jobs", []):
            table_name = job.job_file_info.table_name
            if not table_name.startswith("_dlt") and job.job_file_info.file_format != "sql":
                files[table_name] = files.get(table_name, 0) + 1
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
        "new_tables": _new_tables(pipeline, new_columns),
        "files": files,
        "duration_seconds": round((finished - started).total_seconds(), 3)
        if started and finished
        else None,
        "has_failed_jobs": load_info.has_failed_jobs,
    }


def _new_tables(pipeline: dlt.Pipeline | None, new_columns: dict[str, list[str]]) -> list[str]:
    """Tables this run created: every data column of the table arrived in this run's update."""
    if pipeline is None or pipeline.default_schema_name is None:
        return []
    created = []
    for table_name, columns in new_columns.items():
        schema = next(
            (s for s in pipeline.schemas.values() if table_name in s.tables),
            pipeline.default_schema,
        )
        known = [c for c in schema.get_table_columns(table_name) if not c.startswith("_dlt")]
        if known and set(known) <= set(columns):
            created.append(table_name)
    return sorted(created)


# dlt's own tables for the audit of runs ("Inspect the load info and trace" in dlt's docs).
LOAD_INFO_TABLE = "_load_info"
TRACE_TABLE = "_trace"


def persist_run_audit(
    load_info: LoadInfo,
    *,
    pipeline: dlt.Pipeline | None = None,
    load_lock: LoadLock = nullcontext,
) -> LoadInfo:
    """Load this run's LoadInfo and trace into `_load_info` / `_trace` of the same dataset.

    Call it right after a successful run, before anything else uses the pipeline: the trace is
    `pipeline.last_trace`, which the audit load itself replaces. `pipeline` defaults to the one
    that produced `load_info`; a destination whose layout cannot take these tables (the
    exchange-rates bucket) passes a sibling pipeline on the same destination instead.

    Both tables keep one row per run with nested parts as JSON (`max_table_nesting=0`): two
    tables per dataset instead of ~30 child tables, queryable with the warehouse's JSON
    functions. Secrets are not in them: dlt's trace keeps only non-secret config values and
    `destination_displayable_credentials` is redacted by dlt.
    """
    source_pipeline = load_info.pipeline
    trace = source_pipeline.last_trace if source_pipeline is not None else None
    target = pipeline or source_pipeline
    if target is None:
        raise ValueError("load_info has no pipeline; pass the pipeline to persist into")
    resources = [dlt.resource([load_info], name=LOAD_INFO_TABLE, max_table_nesting=0)]
    if trace is not None:
        resources.append(dlt.resource([trace], name=TRACE_TABLE, max_table_nesting=0))
    # dlt warns about every all-null field of these documents on each run; the audit's own
    # schema is not the operator's business, so only its errors reach the logs.
    dlt_logger = logging.getLogger("dlt")
    previous = dlt_logger.level
    dlt_logger.setLevel(logging.ERROR)
    try:
        # evolve: a pipeline's data contract (products freezes data types) is for its data,
        # not for the shape of dlt's bookkeeping documents. The audit load uses the pipeline's
        # working folder too, so it takes the folder's lock like a run does (the callers hold
        # the run guard across run and audit).
        with pipeline_run_lock(target.pipeline_name):
            return extract_normalize_load(
                target, resources, load_lock=load_lock, schema_contract="evolve"
            )
    finally:
        dlt_logger.setLevel(previous)

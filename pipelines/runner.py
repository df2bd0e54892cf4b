"""What every pipeline does the same way: one function owns a run's lifecycle (`execute`).

A pipeline declares a `PipelineSpec` (pipelines/spec.py); `execute(environment, spec, **params)`
takes the guard, the fence, the state from the destination, runs the spec's extract and load,
builds the summary and writes the audit, in that order, for every pipeline. Flows, the CLI,
benchmarks and tests all run pipelines through it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import dlt
import pyarrow
from dlt.common.pipeline import LoadInfo

from pipelines import dlt_patches, fencing
from pipelines.environment import Environment, configure_runtime, pipelines_dir
from pipelines.fencing import Fence
from pipelines.pipeline_run import PipelineRun, RunSummary
from pipelines.spec import PipelineSpec

logger = logging.getLogger(__name__)

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
    configure_runtime()  # also switches the process-wide library patches on
    return dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=dlt_patches.capabilities_resolved_once(destination),
        dataset_name=dataset_name,
        pipelines_dir=pipelines_dir(),
        **kwargs,
    )


def start_from_destination(pipeline: dlt.Pipeline) -> dlt.Pipeline:
    """Begin a run as on a fresh machine: dlt's working folder is scratch.

    A production run may start on any worker of the pool, in a new folder, so nothing a later
    run relies on may live on worker disk. The local folder is emptied and the state and
    schemas of the last completed load are restored from the destination (dlt does this only
    inside `pipeline.run()`, which our split steps do not call), so a shared local folder and a
    fresh pod start from the same place. dlt restores only the state of completed loads: a
    failed or fenced load never moves a cursor.
    """
    pipeline.drop()
    pipeline.activate()
    pipeline.sync_destination()
    return pipeline


@dataclass
class RunContext:
    """One run in progress, as a pipeline's `extract_load` hook sees it.

    `load(data, ...)` is the only way a pipeline loads: extract, normalize, then the load step
    under the environment's warehouse lock with the fence checked first and inside every
    commit. `locked()` is the same lock for a pipeline's own reads of the warehouse.
    """

    environment: Environment
    spec: PipelineSpec
    pipeline: dlt.Pipeline
    fence: Fence | None = None
    load_infos: list[LoadInfo] = field(default_factory=list)

    def locked(self) -> AbstractContextManager[Any]:
        """The warehouse lock (DuckDB admits one writing process per file); nothing for the
        bucket."""
        return self.environment.warehouse_lock() if self.spec.in_warehouse else nullcontext()

    def load(
        self,
        data: Any,
        *,
        destination_options: dict[str, Any] | None = None,
        before_load: Callable[[Any], None] | None = None,
        bookkeeping: bool = False,
        **extract_kwargs: Any,
    ) -> LoadInfo:
        """`pipeline.run(data)`, split so that only the load step holds the warehouse lock.

        Extraction (API calls, database reads) runs in parallel across pipelines; the short
        load into a local DuckDB file is serialised because DuckDB allows one writing process
        per file. `destination_options` are more options of the spec's destination factory for
        this load (`replace_strategy=`); `before_load(normalize_info)` runs between normalize
        and load (the bucket names its files from the normalized data). `bookkeeping=True` is
        the run's own audit: appends through the destination the data load left the pipeline
        with, not fenced (docs/production.md, "Fencing"), kept out of the run's summary.
        """
        pipeline = self.pipeline
        pipeline.extract(data, **extract_kwargs)
        # Arrow's allocator keeps the extract's freed buffers; give them back before the load
        # step's DuckDB allocates its own (10M rows: peak RSS -25 to -35 MiB)
        pyarrow.default_memory_pool().release_unused()
        normalized = pipeline.normalize()
        if before_load is not None:
            before_load(normalized)
        options = dict(destination_options or {})
        if self.fence is not None:
            options["staging_dataset_name_layout"] = self.fence.staging_layout()
        load_ids = list(pipeline.list_normalized_load_packages())
        with self.locked():
            if not load_ids or bookkeeping:  # the pipeline's destination as the last load left it
                info = pipeline.load()
            elif self.fence is None:
                info = _load(self, options)
            else:
                fencing.check_now(pipeline, self.fence)
                with fencing.fenced_loads(self.fence, load_ids):
                    info = _load(self, options)
        if not bookkeeping:
            self.load_infos.append(info)
        return info

    def combined_load_info(self) -> LoadInfo | None:
        """One LoadInfo covering every package this run loaded (None when none was loaded)."""
        if not self.load_infos:
            return None
        first, last = self.load_infos[0], self.load_infos[-1]
        if len(self.load_infos) == 1:
            return first
        return last._replace(
            loads_ids=[i for info in self.load_infos for i in info.loads_ids],
            load_packages=[p for info in self.load_infos for p in info.load_packages],
            metrics={k: v for info in self.load_infos for k, v in info.metrics.items()},
            first_run=first.first_run,
        )


def _load(context: RunContext, options: dict[str, Any]) -> LoadInfo:
    if not options:
        return context.pipeline.load()
    destination = context.spec.destination(context.environment, **options)
    return context.pipeline.load(destination=dlt_patches.capabilities_resolved_once(destination))


def execute(environment: Environment, spec: PipelineSpec, **params: Any) -> PipelineRun:
    """Run one pipeline whole. The one place a run's lifecycle is written, in its order:

    1. resolve the run's inputs (`spec.prepare`), before anything is held or written;
    2. take the guard, once (`environment.run_guard`: one run per pipeline, pool-wide);
    3. take the warehouse fence (a newer token makes every earlier holder's commit fail);
    4. restore state and schemas from the destination (the working folder is scratch);
    5. extract, normalize, load (`spec.extract_load` through `RunContext.load`);
    6. build the summary (`load_summary`, then `spec.summarize`);
    7. write the audit (`_load_info` / `_trace`), if anything was loaded;
    8. release the guard.
    """
    if spec.prepare is not None:
        params = spec.prepare(environment, **params)
    steps: list[str] = []
    started = time.monotonic()
    with environment.run_guard(spec.name):
        steps.append("guard")
        pipeline = make_pipeline(spec.name, spec.destination(environment), spec.dataset)
        context = RunContext(environment, spec, pipeline)
        with context.locked():
            if spec.in_warehouse:
                context.fence = fencing.take_fence(pipeline)
                steps.append("fence")
            start_from_destination(pipeline)
        steps.append("restore")
        try:
            details = spec.extract_load(context, **params)
        except Exception as error:
            _abort_unfinished(context)
            fenced = _fenced_out_instead(context, error)
            if fenced is None:
                raise
            raise fenced from None  # one line: the run's own error was its consequence
        steps.append("load")
        load_info = context.combined_load_info()
        summary = load_summary(load_info, pipeline_name=spec.name)
        summary = summary.with_(duration_seconds=round(time.monotonic() - started, 3))
        if spec.summarize is not None:
            summary = spec.summarize(context, summary, details)
        steps.append("summary")
        audited = load_info is not None and bool(load_info.loads_ids) and _audit(context, load_info)
        if audited:
            steps.append("audit")
    steps.append("release")
    return PipelineRun(load_info, summary, details, audited=audited, steps=tuple(steps))


def _abort_unfinished(context: RunContext) -> None:
    """Abort a failed run's pending packages (dlt's abort rewinds this process's state too);
    the next run starts from the warehouse either way."""
    try:
        if context.pipeline.has_pending_data:
            with context.locked():  # finishing an abort opens the destination
                context.pipeline.abort_packages()
    except Exception as error:  # never hide the run's own failure
        logger.warning("Could not drop the failed run's pending load packages: %s", error)


def _fenced_out_instead(context: RunContext, error: Exception) -> fencing.FencedOut | None:
    """`FencedOut` when a newer run took the pipeline meanwhile (else None: the run's own
    failure stands).

    A newer run drops the stale run's staging dataset, so the stale run may fail on a missing
    table before it reaches a fence check: asking the fence tells the two apart.
    """
    fence = context.fence
    if fence is None:
        return None
    found = fencing.fenced_out(error, fence)
    if found is not None:
        return found
    try:
        with context.locked():
            fencing.check_now(context.pipeline, fence)
    except fencing.FencedOut as fenced:
        return fenced
    except Exception as check_error:  # the run's own failure is the one to report
        logger.debug("Could not check the fence after a failure: %s", check_error)
    return None


def _audit(context: RunContext, load_info: LoadInfo) -> bool:
    """Write the run's load info and trace; never fail a load that landed (a warning)."""
    try:
        if context.spec.audit is not None:
            context.spec.audit(context.environment, load_info)
        else:
            persist_run_audit(load_info, context)
        return True
    except Exception as error:  # reported, deliberately not raised
        logger.warning("Could not persist the load info and trace for audit: %s", error)
        return False


def load_summary(load_info: LoadInfo | None, *, pipeline_name: str | None = None) -> RunSummary:
    """A small, JSON-safe account of one run: rows per table, where they went, schema changes.

    Flows log it and publish it; it never contains credentials (dlt redacts them in
    `destination_displayable_credentials`, and we do not include that field at all).
    """
    pipeline = load_info.pipeline if load_info is not None else None
    name = pipeline.pipeline_name if pipeline is not None else pipeline_name
    if load_info is None:
        return RunSummary(pipeline=str(name))
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
    return RunSummary(
        pipeline=str(name),
        destination=load_info.destination_name,
        dataset=load_info.dataset_name,
        rows=rows,
        load_ids=list(load_info.loads_ids),
        schema_changes=new_columns,
        new_tables=_new_tables(pipeline, new_columns),
        files=files,
        duration_seconds=round((finished - started).total_seconds(), 3)
        if started and finished
        else None,
        has_failed_jobs=load_info.has_failed_jobs,
    )


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


def persist_run_audit(load_info: LoadInfo, context: RunContext) -> LoadInfo:
    """Load this run's LoadInfo and trace into `_load_info` / `_trace` of the run's dataset.

    Called by `execute` right after the run's loads: the trace is `pipeline.last_trace`, which
    the audit load itself replaces. A destination whose layout cannot take these tables (the
    exchange-rates bucket) has its spec's own `audit` instead.

    Both tables keep one row per run with nested parts as JSON (`max_table_nesting=0`): two
    tables per dataset instead of ~30 child tables, queryable with the warehouse's JSON
    functions. Secrets are not in them: dlt's trace keeps only non-secret config values and
    `destination_displayable_credentials` is redacted by dlt.
    """
    with quiet_audit_schema():
        return context.load(
            audit_resources(load_info),
            bookkeeping=True,
            # a pipeline's data contract (products freezes data types) is for its data, not
            # for the shape of dlt's bookkeeping documents
            schema_contract="evolve",
        )


def audit_resources(load_info: LoadInfo) -> list[Any]:
    """The `_load_info` and `_trace` documents of a run, as dlt resources (one row each)."""
    pipeline = load_info.pipeline
    trace = pipeline.last_trace if pipeline is not None else None
    resources = [dlt.resource([load_info], name=LOAD_INFO_TABLE, max_table_nesting=0)]
    if trace is not None:
        resources.append(dlt.resource([trace], name=TRACE_TABLE, max_table_nesting=0))
    return resources


@contextmanager
def quiet_audit_schema() -> Iterator[None]:
    """dlt warns about every all-null field of the audit documents on each run; the audit's
    own schema is not the operator's business, so only its errors reach the logs."""
    dlt_logger = logging.getLogger("dlt")
    previous = dlt_logger.level
    dlt_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        dlt_logger.setLevel(previous)

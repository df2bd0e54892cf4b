"""Run reports: what a flow run loaded, where the operator looks (the Prefect UI, Artifacts).

Each flow run publishes one table artifact, keyed `<flow-name>-report` (so the Artifacts page
keeps the history of each flow under one key), with one row per table per pipeline run:

| pipeline | table | rows_loaded | files_written | schema_changes | duration_s |

A pipeline adds columns and notes of its own through its typed summary (`RunSummary`:
`report_columns`, `notes`; a backfill's day counts), which this module shows without knowing
them. The description repeats the essentials in one line and names the dlt load ids (the key
into `_dlt_loads`, `_load_info` and `_trace` in the warehouse). Only the run's `RunSummary`
goes in: no credentials, no data values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact

from flows import schema_events
from pipelines.errors import SchemaContractViolation, exception_chain
from pipelines.names import NOTHING_NEW
from pipelines.pipeline_run import PipelineRun, RunSummary


def where_loaded(summary: RunSummary) -> str:
    """E.g. "filesystem `_dlt_exchange_rates`", or whatever part is known; never "None"."""
    destination, dataset = summary.destination, summary.dataset
    parts = [str(destination) if destination else "", f"`{dataset}`" if dataset else ""]
    return " ".join(part for part in parts if part) or "its destination"


def report_key(flow_name: str) -> str:
    """`currencies-weekly` -> `currencies-weekly-report` (artifact keys: a-z, 0-9, dashes)."""
    return f"{flow_name}-report".lower().replace("_", "-")


def _schema_change(summary: RunSummary, table: str) -> str:
    columns = summary.schema_changes.get(table) or []
    dropped = summary.dropped_columns.get(table) or []
    changes = []
    if columns and table in summary.new_tables:
        changes.append(f"new table ({len(columns)} columns)")
    elif columns:
        changes.append("new columns: " + ", ".join(columns))
    if dropped:
        changes.append("dropped in the source (NULL from now on): " + ", ".join(dropped))
    return "; ".join(changes)


def report_rows(summary: RunSummary) -> list[dict[str, Any]]:
    """The artifact rows of one pipeline run (one per table it touched)."""
    tables = sorted(set(summary.rows) | set(summary.files) | set(summary.schema_changes))
    result = []
    for table in tables or [NOTHING_NEW]:
        row: dict[str, Any] = {
            "pipeline": summary.pipeline,
            "table": table,
            "rows_loaded": summary.rows.get(table, 0),
            "files_written": summary.files.get(table, 0),
            "schema_changes": _schema_change(summary, table),
            "duration_s": summary.duration_seconds,
            **summary.report_columns,
        }
        result.append(row)
    return result


def describe(flow_name: str, summaries: Sequence[RunSummary]) -> str:
    """The artifact's markdown description: one line per pipeline run."""
    lines = [f"**{flow_name}** run report"]
    for summary in summaries:
        parts = [
            f"- `{summary.pipeline}` -> {where_loaded(summary)}: {summary.total_rows} row(s) in "
            f"{summary.duration_seconds} s",
            *summary.notes,
        ]
        if summary.load_ids:
            parts.append(f"load ids {', '.join(summary.load_ids)}")
        lines.append("; ".join(parts))
    return "\n".join(lines)


def publish_run_report(flow_name: str, summaries: Sequence[RunSummary]) -> UUID:
    """Create this flow run's report artifact (call once per flow run) and log its lines."""
    table = [row for summary in summaries for row in report_rows(summary)]
    description = describe(flow_name, summaries)
    artifact_id = create_table_artifact(
        table=table, key=report_key(flow_name), description=description
    )
    logger = get_run_logger()
    for row in table:
        logger.info(
            "Report: %s",
            ", ".join(f"{k}={v}" for k, v in row.items() if v not in ("", None)),
        )
    return artifact_id


def run_pipeline(action: str, run: Callable[[], PipelineRun]) -> RunSummary:
    """The one way a task runs a pipeline: run (guard to audit: `runner.execute`) -> log.

    `run` is a pipeline's `run(environment, **params)`, its arguments bound.
    """
    logger = get_run_logger()
    logger.info(action)
    try:
        result = run()
    except Exception as error:
        violation = next(
            (e for e in exception_chain(error) if isinstance(e, SchemaContractViolation)), None
        )
        if violation is not None:  # the run's failure alert carries it to Slack
            schema_events.emit(schema_events.retyped(violation))
        raise
    summary = result.summary
    rows = ", ".join(f"{table}={count}" for table, count in summary.rows.items()) or "none"
    logger.info(
        "Loaded rows %s into %s in %ss", rows, where_loaded(summary), summary.duration_seconds
    )
    if summary.schema_changes:
        logger.info("Schema changes: %s", summary.schema_changes)
    # new, dropped columns: a Prefect event each, which the alerting sends to Slack
    schema_events.emit_schema_changes(summary)
    return summary


def finish_flow(flow_name: str, summaries: Sequence[RunSummary]) -> dict[str, Any]:
    """Publish the run report and return what every pipeline flow returns."""
    publish_run_report(flow_name, summaries)
    accounts = [summary.as_dict() for summary in summaries]
    return {"status": "success", "load_info": accounts[0] if len(accounts) == 1 else accounts}

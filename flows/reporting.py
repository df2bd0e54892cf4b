"""Run reports: what a flow run loaded, where the operator looks (the Prefect UI, Artifacts).

Each flow run publishes one table artifact, keyed `<flow-name>-report` (so the Artifacts page
keeps the history of each flow under one key), with one row per table per pipeline run:

| pipeline | table | rows_loaded | files_written | schema_changes | duration_s |

The backfill adds `days_requested`, `days_skipped` and `days_loaded`, the days OXR has no data
for (`days_not_available`, skipped) and the broken bucket files moved to quarantine. The
description repeats the essentials in one line and names the dlt load ids (the key into
`_dlt_loads`, `_load_info` and `_trace` in the warehouse). Only the summary produced by
`pipelines.runner.load_summary` goes in: no credentials, no data values.
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
from pipelines.pipeline_run import PipelineRun

BACKFILL_COLUMNS = (
    "days_requested",
    "days_skipped",
    "days_loaded",
    "days_not_available",
    "quarantined",
)


def where_loaded(summary: dict[str, Any]) -> str:
    """E.g. "filesystem `_dlt_exchange_rates`", or whatever part is known; never "None"."""
    destination, dataset = summary.get("destination"), summary.get("dataset")
    parts = [str(destination) if destination else "", f"`{dataset}`" if dataset else ""]
    return " ".join(part for part in parts if part) or "its destination"


def report_key(flow_name: str) -> str:
    """`currencies-weekly` -> `currencies-weekly-report` (artifact keys: a-z, 0-9, dashes)."""
    return f"{flow_name}-report".lower().replace("_", "-")


def _schema_change(summary: dict[str, Any], table: str) -> str:
    columns = summary.get("schema_changes", {}).get(table) or []
    dropped = (summary.get("dropped_columns") or {}).get(table) or []
    changes = []
    if columns and table in (summary.get("new_tables") or []):
        changes.append(f"new table ({len(columns)} columns)")
    elif columns:
        changes.append("new columns: " + ", ".join(columns))
    if dropped:
        changes.append("dropped in the source (NULL from now on): " + ", ".join(dropped))
    return "; ".join(changes)


def _cell(value: Any) -> Any:
    """Lists (days, files) as one readable table cell."""
    return ", ".join(str(item) for item in value) if isinstance(value, list) else value


def report_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The artifact rows of one pipeline run (one per table it touched)."""
    rows = summary.get("rows") or {}
    files = summary.get("files") or {}
    changes = summary.get("schema_changes") or {}
    tables = sorted(set(rows) | set(files) | set(changes))
    backfill = summary.get("backfill")
    result = []
    for table in tables or [NOTHING_NEW]:
        row: dict[str, Any] = {
            "pipeline": summary.get("pipeline"),
            "table": table,
            "rows_loaded": rows.get(table, 0),
            "files_written": files.get(table, 0),
            "schema_changes": _schema_change(summary, table),
            "duration_s": summary.get("duration_seconds"),
        }
        if backfill is not None:
            row.update({column: _cell(backfill.get(column)) for column in BACKFILL_COLUMNS})
        result.append(row)
    return result


def describe(flow_name: str, summaries: Sequence[dict[str, Any]]) -> str:
    """The artifact's markdown description: one line per pipeline run."""
    lines = [f"**{flow_name}** run report"]
    for summary in summaries:
        total = sum((summary.get("rows") or {}).values())
        line = (
            f"- `{summary.get('pipeline')}` -> {where_loaded(summary)}: {total} row(s) in "
            f"{summary.get('duration_seconds')} s"
        )
        backfill = summary.get("backfill")
        if backfill is not None:
            line += (
                f"; backfill {backfill['start_date']}..{backfill['end_date']}: "
                f"{backfill['days_requested']} day(s) requested, {backfill['days_skipped']} "
                f"skipped (already in the bucket), {backfill['days_loaded']} loaded"
            )
            if backfill.get("days_not_available"):
                line += "; no rates at OXR, skipped: " + ", ".join(backfill["days_not_available"])
            if backfill.get("quarantined"):
                line += f"; {len(backfill['quarantined'])} broken file(s) moved to quarantine"
            if backfill.get("rate_warnings"):
                line += f"; {len(backfill['rate_warnings'])} rate move(s) over 50% (kept, see logs)"
        failed = (summary.get("local_pipe") or {}).get("failed") or []
        if failed:
            line += "; the pipe could not load: " + ", ".join(f["file"] for f in failed)
        load_ids = summary.get("load_ids") or []
        if load_ids:
            line += f"; load ids {', '.join(load_ids)}"
        lines.append(line)
    return "\n".join(lines)


def publish_run_report(flow_name: str, summaries: Sequence[dict[str, Any]]) -> UUID:
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


def persist_audit(run: PipelineRun) -> None:
    """Write the run's load info and trace for audit; never fail a load that landed.

    The data is in by now: a failing audit write is logged as a warning (the next load would
    surface a broken warehouse anyway) instead of failing, and so retrying, the whole load.
    """
    try:
        run.persist_audit()
    except Exception as error:  # reported, deliberately not raised
        get_run_logger().warning("Could not persist the load info and trace for audit: %s", error)


def run_pipeline(action: str, run: Callable[[], PipelineRun]) -> dict[str, Any]:
    """The one way a task runs a pipeline: run -> audit -> log; returns the run's summary.

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
    # a run that loaded nothing has no load id (no `_dlt_loads` row) to audit; its run
    # report still records it (saves a second dlt load, ~0.2 s, on every quiet run)
    persist_audit(result)
    rows = ", ".join(f"{table}={count}" for table, count in summary["rows"].items()) or "none"
    logger.info(
        "Loaded rows %s into %s in %ss",
        rows,
        where_loaded(summary),
        summary.get("duration_seconds"),
    )
    if summary.get("schema_changes"):
        logger.info("Schema changes: %s", summary["schema_changes"])
    # new, dropped columns: a Prefect event each, which the alerting sends to Slack
    schema_events.emit_schema_changes(summary)
    return summary


def finish_flow(flow_name: str, summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Publish the run report and return what every pipeline flow returns."""
    publish_run_report(flow_name, summaries)
    return {
        "status": "success",
        "load_info": summaries[0] if len(summaries) == 1 else list(summaries),
    }

"""Schema changes reach a human: one Prefect event per changed table, Slack through alerting.

A run's summary (`pipelines.runner.load_summary`, and the products run's dropped columns) says
which columns appeared in or disappeared from a table that already existed; a run that failed
on a retyped column raises `pipelines.errors.SchemaContractViolation`. Each becomes one event:

- `data-pipelines.schema.columns-added`: new columns in an existing table (loaded from now
  on); Slack through the schema-change automation;
- `data-pipelines.schema.columns-dropped`: columns the source no longer has (NULL from now
  on); Slack through the schema-change automation;
- `data-pipelines.schema.column-retyped`: a column changed type, the contract froze it and
  the run failed; Slack through the failed-run alert, whose message names table, column and
  fix (so not twice).

The event's resource is the table (`data-pipelines.table.<pipeline>.<dataset>.<table>`), its
related resources the flow run and its tags (so the automation matches `dlt`-tagged runs, as
the other alerts do), and its payload the table, the columns, the fix and the Slack `subject`
and `body` the automation sends (`infra/alerting.py`, never PagerDuty). A table the run created
is not a schema change: its columns are the table's first shape.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipelines.errors import SchemaContractViolation
from pipelines.names import (
    COLUMN_RETYPED,
    COLUMNS_ADDED,
    COLUMNS_DROPPED,
    TABLE_RESOURCE_PREFIX,
)
from pipelines.pipeline_run import RunSummary

logger = logging.getLogger(__name__)


_ADDED_FIX = (
    "Nothing to do if the column is wanted: it is loaded from now on (earlier rows hold NULL). "
    "If it is not, stop selecting it in the source, then drop it in the warehouse "
    "(docs/operations.md, 'Schema changes')."
)
_DROPPED_FIX = (
    "Every new row holds NULL there. Restore the column in the source, or drop it in the "
    "warehouse deliberately (docs/operations.md, 'Schema changes')."
)


@dataclass(frozen=True)
class SchemaChange:
    """Columns of one table that appeared, disappeared or changed type in one run."""

    event: str
    pipeline: str
    dataset: str
    table: str
    columns: tuple[str, ...]
    fix: str

    @property
    def what(self) -> str:
        return {
            COLUMNS_ADDED: "new column(s)",
            COLUMNS_DROPPED: "column(s) dropped in the source",
            COLUMN_RETYPED: "column changed data type",
        }[self.event]

    @property
    def qualified_table(self) -> str:
        return f"{self.dataset}.{self.table}" if self.dataset else self.table

    def subject(self) -> str:
        return f"[data-pipelines] Schema change: {self.qualified_table}: {self.what}"

    def line(self) -> str:
        """One line for logs: table, columns, fix."""
        return (
            f"Schema change in {self.qualified_table} (pipeline {self.pipeline}): {self.what} "
            f"{', '.join(self.columns)}. {self.fix}"
        )

    def slack_body(self) -> str:
        def esc(text: str) -> str:
            return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

        return (
            f"*Table:* {esc(self.qualified_table)} (pipeline {esc(self.pipeline)})\n"
            f"*Change:* {self.what}: {esc(', '.join(self.columns))}\n"
            f"*Fix:* {esc(self.fix)}"
        )


def changes_in(summary: RunSummary) -> list[SchemaChange]:
    """The schema changes a run summary records (new tables are not changes)."""
    pipeline = summary.pipeline or ""
    dataset = summary.dataset or ""
    new_tables = set(summary.new_tables)
    changes = []
    for table, columns in sorted(summary.schema_changes.items()):
        if columns and table not in new_tables:
            changes.append(
                SchemaChange(COLUMNS_ADDED, pipeline, dataset, table, tuple(columns), _ADDED_FIX)
            )
    for table, columns in sorted(summary.dropped_columns.items()):
        if columns:
            changes.append(
                SchemaChange(
                    COLUMNS_DROPPED, pipeline, dataset, table, tuple(columns), _DROPPED_FIX
                )
            )
    return changes


def retyped(violation: SchemaContractViolation) -> SchemaChange:
    return SchemaChange(
        COLUMN_RETYPED,
        violation.pipeline,
        violation.dataset,
        violation.table,
        (violation.column,),
        violation.fix,
    )


def _run_context_related() -> list[dict[str, str]]:
    """The flow run, its flow and deployment, and its tags, as the event's related resources."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return []
    run = context.flow_run
    related = [
        {
            "prefect.resource.id": f"prefect.flow-run.{run.id}",
            "prefect.resource.role": "flow-run",
            "prefect.resource.name": str(run.name),
        }
    ]
    if run.deployment_id is not None:
        related.append(
            {
                "prefect.resource.id": f"prefect.deployment.{run.deployment_id}",
                "prefect.resource.role": "deployment",
            }
        )
    related += [
        {"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}
        for tag in sorted(run.tags or [])
    ]
    return related


def emit(change: SchemaChange) -> None:
    """One Prefect event for one changed table (logged as well)."""
    from prefect.events import emit_event

    logger.warning("%s", change.line())
    emit_event(
        event=change.event,
        resource={
            "prefect.resource.id": (
                f"{TABLE_RESOURCE_PREFIX}{change.pipeline}.{change.qualified_table}"
            ),
            "prefect.resource.name": change.qualified_table,
        },
        related=_run_context_related(),
        payload={
            "pipeline": change.pipeline,
            "table": change.qualified_table,
            "columns": list(change.columns),
            "fix": change.fix,
            "subject": change.subject(),
            "body": change.slack_body(),
        },
    )


def emit_schema_changes(summary: RunSummary) -> list[SchemaChange]:
    """An event for every schema change the summary records; what was emitted."""
    changes = changes_in(summary)
    for change in changes:
        emit(change)
    return changes

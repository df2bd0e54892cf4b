"""What a run of any pipeline returns (`runner.execute`): its load info and a typed summary.

A flow task reports `summary` and never needs to know which pipeline it ran
(`flows/reporting.py`): a pipeline's own figures travel as report columns and notes, which the
report shows without knowing their names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dlt.common.pipeline import LoadInfo


@dataclass(frozen=True)
class RunSummary:
    """A small, JSON-safe account of one run: rows per table, where they went, schema changes.

    It never holds credentials (dlt redacts them in `destination_displayable_credentials`, and
    that field is not read at all) nor data values.

    The pipeline's own parts:
    - `dropped_columns`: warehouse columns the source no longer has, per table (NULL from now);
    - `report_columns`: more columns for each row of the run report (a backfill's day counts);
    - `notes`: more phrases for the report's one-line description;
    - `details`: more keys of the JSON account a flow returns (a backfill's `backfill`).
    """

    pipeline: str
    destination: str | None = None
    dataset: str | None = None
    rows: dict[str, int] = field(default_factory=dict)
    load_ids: list[str] = field(default_factory=list)
    schema_changes: dict[str, list[str]] = field(default_factory=dict)
    new_tables: list[str] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)
    duration_seconds: float | None = None
    has_failed_jobs: bool = False
    dropped_columns: dict[str, list[str]] = field(default_factory=dict)
    report_columns: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def with_(self, **changes: Any) -> RunSummary:
        """A copy with `changes` (the pipeline's own parts, added by its spec)."""
        return replace(self, **changes)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def as_dict(self) -> dict[str, Any]:
        """The JSON account a flow returns (and the CLI prints): every field, details inlined."""
        account = asdict(self)
        details = account.pop("details")
        return {**account, **details}


@dataclass(frozen=True)
class PipelineRun:
    """What a pipeline run did.

    `load_info`: dlt's account of the load, every package of the run combined (None only when
    no load step ran). `summary`: what the flow reports. `details`: the pipeline's own typed
    account for code that wants more than the summary (a backfill's `BackfillResult`), else
    None. `audited`: whether the run's load info and trace reached `_load_info` / `_trace`.
    `steps`: the lifecycle steps the runner took, in order (what the registry tests check).
    """

    load_info: LoadInfo | None
    summary: RunSummary
    details: Any = None
    audited: bool = False
    steps: tuple[str, ...] = ()

    @property
    def loaded_anything(self) -> bool:
        """Whether a load package landed: a run that loaded nothing has no load id to audit."""
        return self.load_info is not None and bool(self.load_info.loads_ids)

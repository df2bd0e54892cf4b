"""The one shape every pipeline's `run(environment, **params)` returns.

A flow task runs a pipeline, reports `summary`, and writes the audit with `persist_audit()`;
it never needs to know which pipeline it ran (`flows/reporting.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlt.common.pipeline import LoadInfo


@dataclass(frozen=True)
class PipelineRun:
    """What a pipeline run did.

    `load_info`: dlt's account of the load (None only when no load step ran).
    `summary`: what the flow reports: `runner.load_summary(load_info)` plus the pipeline's own
    keys (products: `dropped_columns`; a backfill: `backfill`, `local_pipe`); JSON-safe.
    `audit`: writes a LoadInfo and its trace where this pipeline keeps its audit.
    `details`: the pipeline's own typed account for code that wants more than the summary
    (a backfill's `BackfillResult`), else None.
    """

    load_info: LoadInfo | None
    summary: dict[str, Any]
    audit: Callable[[LoadInfo], Any]
    details: Any = None

    @property
    def loaded_anything(self) -> bool:
        """Whether a load package landed: a run that loaded nothing has no load id to audit."""
        return self.load_info is not None and bool(self.load_info.loads_ids)

    def persist_audit(self) -> None:
        """This run's load info and trace into the pipeline's `_load_info` / `_trace`.

        Call it right after the run, under the same run guard (the trace is the pipeline's
        last one). Nothing to write when nothing loaded.
        """
        if self.load_info is not None and self.loaded_anything:
            self.audit(self.load_info)

"""The daily latest rates: `latest.json` as one file, and what its run adds to the summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.exchange_rates.bucket import Bucket
from pipelines.pipeline_run import RunSummary
from sources.exchange_rates import ExchangeRatesSettings, latest_resource, make_client


@dataclass
class Latest:
    """What a `latest` run adds to its summary: the local pipe's report, if any."""

    local_pipe: dict[str, Any] | None

    def summarize(self, summary: RunSummary) -> RunSummary:
        return with_local_pipe(summary, self.local_pipe)


def with_local_pipe(summary: RunSummary, local_pipe: dict[str, Any] | None) -> RunSummary:
    if local_pipe is None:
        return summary
    notes = list(summary.notes)
    if local_pipe["failed"]:
        notes.append(
            "the pipe could not load: " + ", ".join(f["file"] for f in local_pipe["failed"])
        )
    return summary.with_(notes=notes, details={**summary.details, "local_pipe": local_pipe})


def load_latest(bucket: Bucket, settings: ExchangeRatesSettings) -> Latest:
    """`latest.json` -> `exchange-rates/latest/<publication>.jsonl.gz` (then the pipe)."""
    bucket.load(latest_resource(make_client(settings)))
    return Latest(bucket.local_pipe)

"""Exchange rates: OXR latest / historical -> JSONL files under the bucket's `exchange-rates/`.

Production: `s3://<bucket>/exchange-rates/`, watched by Snowpipe, which loads every new file into
`SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES`. Local: the bucket folder of the data folder, and
the environment's `after_files_land` (the local pipe) loads them after each load.

One pipeline, two kinds of run, one file each: the daily latest rates (`latest.py`), a backfill
of historical days with its chunking (`backfill.py`); the bucket they write to (`bucket.py`)
and the audit files beside it (`audit.py`). This module is the spec and its entry points.
Bucket layout and file names: `pipelines/bucket_layout.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dlt.common.pipeline import LoadInfo

from pipelines.environment import Environment
from pipelines.exchange_rates.audit import AUDIT_DATASET, AUDIT_PIPELINE_NAME, persist_audit
from pipelines.exchange_rates.backfill import BackfillResult, last_complete_day, load_days
from pipelines.exchange_rates.bucket import Bucket, check_bucket, days_in_bucket, destination
from pipelines.exchange_rates.latest import Latest, load_latest
from pipelines.names import EXCHANGE_RATES_PIPELINE
from pipelines.pipeline_run import PipelineRun, RunSummary
from pipelines.runner import RunContext, execute
from pipelines.spec import FlowSpec, PipelineSpec
from sources.exchange_rate_dates import DateRange
from sources.exchange_rates import ExchangeRatesSettings, check_configured_key, resolve_settings

__all__ = [
    "AUDIT_DATASET",
    "AUDIT_PIPELINE_NAME",
    "PIPELINE_NAME",
    "SPEC",
    "STATE_DATASET",
    "BackfillResult",
    "backfill",
    "check_bucket",
    "days_in_bucket",
    "last_complete_day",
    "persist_audit",
    "run",
    "run_latest",
]

PIPELINE_NAME = EXCHANGE_RATES_PIPELINE
# dlt's bookkeeping folder, a sibling of the watched prefix (never inside it).
STATE_DATASET = "_dlt_exchange_rates"


def run(
    environment: Environment,
    *,
    days: DateRange | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    settings: ExchangeRatesSettings | None = None,
) -> PipelineRun:
    """The latest rates (no `days`), or the historical rates of `days` (a backfill).

    A backfill's `BackfillResult` is the run's `details`; `on_progress` is the backfill's.
    """
    return execute(environment, SPEC, days=days, on_progress=on_progress, settings=settings)


def _prepare(environment: Environment, **params: Any) -> dict[str, Any]:
    """OXR's settings (the app id among them), resolved before the guard is taken."""
    return {**params, "settings": params.get("settings") or resolve_settings()}


def _extract_load(
    context: RunContext,
    *,
    settings: ExchangeRatesSettings,
    days: DateRange | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Latest | BackfillResult:
    bucket = Bucket(context)
    if days is None:
        return load_latest(bucket, settings)
    return load_days(bucket, days, settings, on_progress)


def _summarize(
    context: RunContext, summary: RunSummary, details: Latest | BackfillResult
) -> RunSummary:
    return details.summarize(summary)


def run_latest(environment: Environment) -> LoadInfo:
    """`latest.json` -> `exchange-rates/latest/<publication>.jsonl.gz` (then the pipe)."""
    load_info = run(environment).load_info
    assert load_info is not None  # a latest run always loads one package
    return load_info


def backfill(
    environment: Environment,
    days: DateRange,
    *,
    settings: ExchangeRatesSettings | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> BackfillResult:
    """Historical rates for the days of `days` (inclusive): `run(environment, days=days)`."""
    result = run(environment, days=days, settings=settings, on_progress=on_progress).details
    assert isinstance(result, BackfillResult)
    return result


SPEC = PipelineSpec(
    name=PIPELINE_NAME,
    dataset=STATE_DATASET,
    extract_load=_extract_load,
    destination=destination,
    # whole files named by their content's day or publication: a second writer rewrites the
    # same bytes under the same name, and Snowpipe loads a name once
    in_warehouse=False,
    prepare=_prepare,
    summarize=_summarize,
    audit=persist_audit,
    check=lambda environment: check_configured_key(),
    task_timeouts={"load_exchange_rates": 600, "backfill_exchange_rates": 7200},
    flows=(
        # latest.json, then yesterday's final rates: one historical day, one request like latest
        FlowSpec(
            "exchange-rates-daily",
            "OXR latest.json, and yesterday's final historical rates when missing, to the "
            "bucket under exchange-rates/ (Snowpipe auto-ingests)",
            ("load_exchange_rates", "load_exchange_rates"),
            command="run",
        ),
        FlowSpec(
            "exchange-rates-backfill",
            "OXR historical rates for an inclusive date range (quota-checked, resumable)",
            ("backfill_exchange_rates",),
            command="backfill",
        ),
    ),
)

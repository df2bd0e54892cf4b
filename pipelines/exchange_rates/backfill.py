"""A backfill: historical days for a date range, chunked into load packages as they arrive.

Days already in the bucket (whole and valid) are skipped, the quota is checked before any
counted request, days are fetched with bounded parallelism and written in chunks
(`CHUNK_MAX_DAYS` / `CHUNK_MAX_SECONDS`), so a crash costs little to resume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from dlt.common.pipeline import LoadInfo

from pipelines.exchange_rates.bucket import Bucket, check_bucket
from pipelines.exchange_rates.latest import with_local_pipe
from pipelines.names import EXCHANGE_RATES_PIPELINE as PIPELINE_NAME
from pipelines.pipeline_run import RunSummary
from pipelines.runner import load_summary
from sources.exchange_rate_dates import DateRange
from sources.exchange_rates import (
    HISTORICAL_TABLE,
    DayProblems,
    ExchangeRatesSettings,
    FetchedDay,
    check_quota,
    fetch_historical_days,
    historical_resource,
    make_client,
    utc_today,
)
from sources.open_exchange_rates.contract import rate_jumps

logger = logging.getLogger(__name__)

# Persist fetched days at least this often, so a crash costs little to resume.
CHUNK_MAX_DAYS = 100
CHUNK_MAX_SECONDS = 1.5


@dataclass
class BackfillResult:
    """What a backfill did, beyond dlt's LoadInfo."""

    start_date: date
    end_date: date
    days_total: int
    days_skipped: int  # already in the bucket
    days_requested: int  # missing, so fetched
    days_loaded: int = 0
    # OXR has no rates for these (400 not_available, or 404): skipped, listed in report and logs
    days_not_available: list[date] = field(default_factory=list)
    # answers refused by the data contract: nothing written, the run fails after saving the rest
    days_refused: list[date] = field(default_factory=list)
    # broken files found in the bucket, moved aside (and their days fetched again)
    quarantined: list[str] = field(default_factory=list)
    # day-on-day moves over 50% within the fetched days: kept, only warned about
    rate_warnings: list[str] = field(default_factory=list)
    quota_remaining_before: int | None = None  # None = unlimited
    # where the files go (dlt destination and dataset), named even when nothing was loaded
    destination: str | None = None
    dataset: str | None = None
    load_info: LoadInfo | None = None
    local_pipe: dict[str, Any] | None = None
    seconds: float = 0.0

    def summarize(self, base: RunSummary) -> RunSummary:
        """The run's typed summary: rows are days loaded (all chunks), the backfill's own
        figures as report columns and notes, its JSON account under `backfill`."""
        # a run with nothing to load has a LoadInfo that names no destination: name ours
        summary = base.with_(
            destination=base.destination or self.destination,
            dataset=base.dataset or self.dataset,
            rows={HISTORICAL_TABLE: self.days_loaded},
            duration_seconds=self.seconds,
        )
        account = {
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
            "days_total": self.days_total,
            "days_skipped": self.days_skipped,
            "days_requested": self.days_requested,
            "days_loaded": self.days_loaded,
            "days_not_available": [day.isoformat() for day in self.days_not_available],
            "days_refused": [day.isoformat() for day in self.days_refused],
            "quarantined": self.quarantined,
            "rate_warnings": self.rate_warnings,
            "quota_remaining_before": self.quota_remaining_before,
        }
        notes = [
            f"backfill {account['start_date']}..{account['end_date']}: "
            f"{self.days_requested} day(s) requested, {self.days_skipped} skipped (already in "
            f"the bucket), {self.days_loaded} loaded"
        ]
        if self.days_not_available:
            notes.append("no rates at OXR, skipped: " + ", ".join(account["days_not_available"]))
        if self.quarantined:
            notes.append(f"{len(self.quarantined)} broken file(s) moved to quarantine")
        if self.rate_warnings:
            notes.append(f"{len(self.rate_warnings)} rate move(s) over 50% (kept, see logs)")
        summary = summary.with_(
            report_columns={
                "days_requested": self.days_requested,
                "days_skipped": self.days_skipped,
                "days_loaded": self.days_loaded,
                "days_not_available": ", ".join(account["days_not_available"]),
                "quarantined": ", ".join(self.quarantined),
            },
            notes=notes,
            details={"backfill": account},
        )
        return with_local_pipe(summary, self.local_pipe)

    def summary(self) -> dict[str, Any]:
        """The JSON account of the run (what a flow returns), built from its LoadInfo."""
        return self.summarize(load_summary(self.load_info, pipeline_name=PIPELINE_NAME)).as_dict()


def load_days(
    bucket: Bucket,
    days: DateRange,
    settings: ExchangeRatesSettings,
    on_progress: Callable[[int, int], None] | None,
) -> BackfillResult:
    """The backfill's extract and load, under the runner's guard:

    1. `days` was parsed and validated at the edge (`DateRange.parse`): nothing to refuse here.
    2. Skip days whose file is already in the bucket, whole and valid: a rerun after a crash asks
       only for the rest; a broken file is moved to quarantine and its day fetched again.
    3. Read `usage.json` (free) and refuse a range the remaining quota cannot cover.
    4. Fetch the missing days with bounded parallelism under a request-rate limit, persisting
       them in chunks as they arrive; the first failure cancels the rest, the days already
       fetched are still written, and the classified error is raised.
    5. A day OXR has no data for (400 `not_available`, or 404) is skipped and listed, and the
       range completes without it; a day whose answer is refused by
       the data contract is not written, the other days are, then the run fails permanently
       naming it. A 404 on every requested day is a permanent configuration error.

    `on_progress(days_done, days_total)` is called once the days already present are known and
    after each chunk lands (a flow passes one that publishes a progress artifact).
    """
    started = time.monotonic()
    start, end = days.start, days.end
    wanted = days.days()
    bucket_days = check_bucket(bucket.pipeline, bucket.exchange_rates_url, within=wanted)
    missing = [day for day in wanted if day not in bucket_days.present]
    result = BackfillResult(
        start_date=start,
        end_date=end,
        days_total=len(wanted),
        days_skipped=len(wanted) - len(missing),
        days_requested=len(missing),
        quarantined=bucket_days.quarantined,
        destination=bucket.pipeline.destination.destination_name,
        dataset=bucket.pipeline.dataset_name,
    )
    report_progress = on_progress or (lambda done, total: None)
    report_progress(result.days_skipped, result.days_total)
    logger.info(
        "Backfill %s..%s: %d days, %d already in the bucket, %d to fetch "
        "(max %d concurrent, %.3g requests/s)",
        start,
        end,
        result.days_total,
        result.days_skipped,
        result.days_requested,
        settings.max_concurrency,
        settings.max_requests_per_second,
    )
    if missing:
        client = make_client(settings)
        result.quota_remaining_before = check_quota(
            client,
            len(missing),
            what=f"the backfill {start}..{end} ({len(missing)} missing days)",
        )
        problems = DayProblems()
        try:
            result.days_loaded = _fetch_and_load(
                bucket,
                client,
                missing,
                settings,
                problems,
                on_loaded=lambda done: report_progress(result.days_skipped + done, len(wanted)),
            )
        finally:
            result.days_not_available = problems.not_available
            result.days_refused = sorted(e.day for e in problems.refused if e.day is not None)
            result.rate_warnings = problems.rate_warnings
        if problems.not_available:
            logger.warning(
                "Backfill %s..%s: OXR has no rates for %d day(s), skipped: %s",
                start,
                end,
                len(problems.not_available),
                ", ".join(day.isoformat() for day in problems.not_available),
            )
        problems.raise_if_fatal(len(missing), client.base_url)
    else:
        bucket.run_local_pipe()  # nothing to fetch; still ingest any file not loaded yet
    # Nothing missing is still a load step (an empty one), so callers always get a LoadInfo.
    if not bucket.context.load_infos:
        bucket.context.load_infos.append(bucket.pipeline.load())
    result.load_info = bucket.context.combined_load_info()
    result.local_pipe = bucket.local_pipe
    result.seconds = round(time.monotonic() - started, 3)
    logger.info(
        "Backfill %s..%s done: %d/%d days loaded, %d skipped, in %.1fs",
        start,
        end,
        result.days_loaded,
        result.days_requested,
        result.days_skipped,
        result.seconds,
    )
    return result


@dataclass
class _Chunks:
    """Fetched days buffered and written to the bucket in chunks (one load package each)."""

    runner: Bucket
    problems: DayProblems
    total: int
    on_loaded: Callable[[int], None]
    loaded: int = 0
    buffer: list[FetchedDay] = field(default_factory=list)
    last_flush: float = field(default_factory=time.monotonic)

    def add(self, fetched: FetchedDay) -> None:
        self.buffer.append(fetched)
        if (
            len(self.buffer) >= CHUNK_MAX_DAYS
            or time.monotonic() - self.last_flush >= CHUNK_MAX_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            chunk = sorted(self.buffer, key=lambda fetched: fetched.day)
            self.buffer.clear()
            jumps = rate_jumps([(fetched.day, fetched.payload["rates"]) for fetched in chunk])
            self.problems.rate_warnings.extend(jumps)
            self.runner.load(historical_resource(chunk))
            self.loaded += len(chunk)
            logger.info("Backfill progress: %d/%d days in the bucket", self.loaded, self.total)
            self.on_loaded(self.loaded)
        self.last_flush = time.monotonic()


def _fetch_and_load(
    runner: Bucket,
    client: Any,
    missing: list[date],
    settings: ExchangeRatesSettings,
    problems: DayProblems,
    on_loaded: Callable[[int], None],
) -> int:
    log_every = max(1, len(missing) // 10)
    chunks = _Chunks(runner, problems, len(missing), on_loaded)

    def progress(done: int, of: int) -> None:
        if done == of or done % log_every == 0:
            logger.info("Backfill progress: %d/%d days fetched", done, of)

    try:
        for fetched in fetch_historical_days(
            client,
            missing,
            max_concurrency=settings.max_concurrency,
            max_requests_per_second=settings.max_requests_per_second,
            on_progress=progress,
            problems=problems,
        ):
            chunks.add(fetched)
    except BaseException:
        # Keep what was fetched before the failure: the rerun will not pay for it again.
        # A failure while saving must not hide the error that stopped the backfill.
        if chunks.buffer:
            logger.info("Saving %d fetched day(s) before stopping", len(chunks.buffer))
            try:
                chunks.flush()
            except Exception:
                logger.exception("Could not save the fetched days; the rerun will fetch them")
        raise
    chunks.flush()
    return chunks.loaded


def last_complete_day() -> date:
    """Yesterday, UTC: the newest day whose end-of-day (final) rates OXR publishes.

    The daily run fetches it with `backfill(environment, DateRange(day, day))`: one counted
    request when its file is not in the bucket yet (quota-checked like any backfill), none when
    it is.
    """
    return utc_today() - timedelta(days=1)

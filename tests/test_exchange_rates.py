"""Exchange rates end to end on real parts: OXR sandbox -> dlt files -> (local) Snowpipe -> DuckDB.

What users read is `SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_LATEST`; the raw table and the
bucket listing are checked too, because "no duplicates" must hold at each level it can.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dev_stack.oxr_sandbox import OXRSandbox, rates_for
from environments import load_environment
from local_runtime.snowpipe import (
    RAW_TABLE,
    USER_VIEW,
    copy_mapping,
    copy_select_for_duckdb,
    ddl_statements,
    ingest,
)
from pipelines import exchange_rates
from sources.exchange_rates import (
    DateRange,
    InvalidDateError,
    QuotaExceededError,
    RequestRateLimiter,
    utc_today,
    validate_date_range,
)
from sources.open_exchange_rates import OXRPermanentError, OXRTransientError
from tests.fixtures.moto import S3Bucket, moto_server, s3_bucket  # noqa: F401
from tests.fixtures.snowflake_standin import SnowflakeStandIn, snowflake_standin  # noqa: F401

JANUARY_1_TO_7 = [f"2026-01-0{d}" for d in range(1, 8)]


def run_latest() -> Any:
    """The pipeline in the local environment, as the flows hand it down."""
    return exchange_rates.run_latest(load_environment())


def backfill(start: Any, end: Any = None, **kwargs: Any) -> exchange_rates.BackfillResult:
    """The pipeline's backfill, its dates parsed here at the edge as a flow would."""
    return exchange_rates.backfill(load_environment(), DateRange.parse(start, end), **kwargs)


@pytest.fixture(autouse=True)
def fast_backfill(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox has no rate limit; keep the real limiter on, but at a test-friendly rate."""
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_CONCURRENCY", "4")
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_REQUESTS_PER_SECOND", "200")


def snowpipe_db(data_dir: Path) -> Path:
    return data_dir / "warehouse" / "snowpipe.duckdb"


def view_rows(data_dir: Path) -> list[tuple[str, str, float]]:
    with duckdb.connect(str(snowpipe_db(data_dir)), read_only=True) as con:
        return con.sql(
            f"select rate_date::varchar, base, (rates->>'$.EUR')::double from {USER_VIEW} "
            "order by rate_date"
        ).fetchall()


def raw_count(data_dir: Path) -> int:
    with duckdb.connect(str(snowpipe_db(data_dir)), read_only=True) as con:
        return con.execute(f"select count(*) from {RAW_TABLE}").fetchone()[0]


def bucket_listing(data_dir: Path) -> list[str]:
    root = data_dir / "bucket"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def under_prefix(listing: list[str]) -> list[str]:
    return [p for p in listing if p.startswith("exchange-rates/")]


def historical_keys(days: list[str]) -> list[str]:
    return [f"exchange-rates/historical/{d}.jsonl.gz" for d in days]


def day_range(start: str, end: str) -> list[str]:
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def expected_eur(day: str) -> float:
    _, usd_rates = rates_for(date.fromisoformat(day))
    return usd_rates["EUR"]


# ---- landing and dedup ------------------------------------------------------------------------


def test_latest_lands_one_row_under_its_publication_name(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    info = run_latest()
    assert not info.has_failed_jobs
    listing = under_prefix(bucket_listing(data_dir))
    assert len(listing) == 1 and listing[0].startswith("exchange-rates/latest/")
    assert listing[0].endswith("Z.jsonl.gz")
    rows = view_rows(data_dir)
    assert len(rows) == 1 and rows[0][1] == "USD" and rows[0][2] > 0

    run_latest()  # same OXR publication: same object, still one row for users
    assert under_prefix(bucket_listing(data_dir)) == listing
    assert len(view_rows(data_dir)) == 1
    assert oxr_sandbox.request_count("/api/latest.json") == 2


def test_backfill_rerun_and_overlap_leave_one_row_per_day(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    info = backfill("2026-01-01", "2026-01-07").load_info
    assert not info.has_failed_jobs
    assert [r[0] for r in view_rows(data_dir)] == JANUARY_1_TO_7
    assert [r[2] for r in view_rows(data_dir)] == [expected_eur(d) for d in JANUARY_1_TO_7]
    assert sorted(oxr_sandbox.historical_dates_requested()) == JANUARY_1_TO_7

    again = backfill("2026-01-01", "2026-01-07")
    assert (again.days_skipped, again.days_requested, again.days_loaded) == (7, 0, 0)
    assert len(oxr_sandbox.historical_dates_requested()) == 7, "a present day was fetched again"

    overlap = backfill("2026-01-05", "2026-01-10")
    assert (overlap.days_skipped, overlap.days_requested) == (3, 3)
    assert sorted(oxr_sandbox.historical_dates_requested()[7:]) == [
        "2026-01-08",
        "2026-01-09",
        "2026-01-10",
    ]
    ten_days = day_range("2026-01-01", "2026-01-10")
    assert [r[0] for r in view_rows(data_dir)] == ten_days
    assert raw_count(data_dir) == 10

    listing = bucket_listing(data_dir)
    assert under_prefix(listing) == historical_keys(ten_days)
    # dlt's bookkeeping and the runs' audit sit beside the watched prefix, never inside it.
    assert {p.split("/", 1)[0] for p in listing} == {
        "exchange-rates",
        "_dlt_exchange_rates",
        "_dlt_exchange_rates_audit",
    }


def test_rewritten_day_is_reloaded_and_users_still_see_one_row(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    backfill("2026-01-01", "2026-01-03")
    day_file = data_dir / "bucket" / "exchange-rates" / "historical" / "2026-01-02.jsonl.gz"
    day_file.unlink()  # e.g. an operator removed it to force a refetch
    result = backfill("2026-01-01", "2026-01-03")
    assert result.days_requested == 1 and day_file.exists()
    assert result.local_pipe is not None and result.local_pipe["loaded"] == [
        "historical/2026-01-02.jsonl.gz"
    ]
    assert raw_count(data_dir) == 4, "the pipe should load the new version of the file"
    assert [r[0] for r in view_rows(data_dir)] == day_range("2026-01-01", "2026-01-03")
    assert ingest(load_environment().exchange_rates_url()).files_loaded == 0, (
        "the local pipe loaded a file twice"
    )


# production holds the run guard on a Prefect API (no API: the run refuses)
@pytest.mark.usefixtures("prefect_server")
def test_s3_layout_in_moto_has_only_date_named_data_files_under_the_prefix(
    oxr_sandbox: OXRSandbox,
    s3_bucket: S3Bucket,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATA_PIPELINES_ENV", "production")  # Snowpipe's job, not ours
    result = backfill("2026-01-01", "2026-01-03")
    run_latest()
    assert result.local_pipe is None
    keys = s3_bucket.list_keys()
    data = [k for k in keys if k.startswith("exchange-rates/")]
    assert data[:3] == historical_keys(["2026-01-01", "2026-01-02", "2026-01-03"])
    assert len(data) == 4 and data[3].startswith("exchange-rates/latest/")
    assert all(k.startswith("_dlt_exchange_rates") for k in keys if k not in data)

    rerun = backfill("2026-01-01", "2026-01-04")  # resume reads the bucket on S3 too
    assert (rerun.days_skipped, rerun.days_requested) == (3, 1)
    assert [k for k in s3_bucket.list_keys() if k.startswith("exchange-rates/historical/")] == (
        historical_keys(day_range("2026-01-01", "2026-01-04"))
    )
    body = (
        s3_bucket.server.client()
        .get_object(Bucket=s3_bucket.name, Key="exchange-rates/historical/2026-01-04.jsonl.gz")[
            "Body"
        ]
        .read()
    )
    rows = [json.loads(line) for line in gzip.decompress(body).splitlines()]
    assert len(rows) == 1 and rows[0]["rate_date"] == "2026-01-04"


# ---- crash and resume, errors ---------------------------------------------------------------


@pytest.fixture
def slow_sandbox(oxr_sandbox: OXRSandbox) -> Iterator[OXRSandbox]:
    """Some latency, so a fault injected mid-run lands while requests are still in flight."""
    oxr_sandbox.latency_seconds = 0.02
    yield oxr_sandbox
    oxr_sandbox.latency_seconds = 0.0


def inject_after(sandbox: OXRSandbox, successes: int, kind: str, **params: object) -> None:
    """Start failing requests once `successes` historical days have been served."""

    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len(sandbox.historical_dates_requested(counted_only=True)) >= successes:
                sandbox.inject_faults(kind, count=10_000, **params)
                return
            time.sleep(0.002)

    threading.Thread(target=watch, daemon=True).start()


def bucket_days(data_dir: Path) -> list[str]:
    folder = data_dir / "bucket" / "exchange-rates" / "historical"
    return sorted(p.name.split(".")[0] for p in folder.glob("*.jsonl.gz"))


def test_crash_mid_backfill_then_rerun_requests_only_missing_days(
    slow_sandbox: OXRSandbox, data_dir: Path
) -> None:
    days = day_range("2026-01-01", "2026-02-09")  # 40 days
    inject_after(slow_sandbox, 12, "error_body", status=500, message="internal_error")
    with pytest.raises(OXRTransientError):
        backfill(days[0], days[-1])
    slow_sandbox.clear_faults()
    served = sorted(set(slow_sandbox.historical_dates_requested(counted_only=True)))
    landed = bucket_days(data_dir)
    assert 12 <= len(landed) < 40
    assert landed == served, "a day OXR served before the crash was not saved"
    assert [r[0] for r in view_rows(data_dir)] == landed, "the pipe missed saved days"

    before = len(slow_sandbox.requests)
    result = backfill(days[0], days[-1])
    requested_on_rerun = [
        e["path"].rsplit("/", 1)[-1].removesuffix(".json")
        for e in slow_sandbox.requests[before:]
        if e["path"].startswith("/api/historical/")
    ]
    assert sorted(requested_on_rerun) == sorted(set(days) - set(landed))
    assert len(requested_on_rerun) == len(set(requested_on_rerun)), "a day was asked twice"
    assert result.days_skipped == len(landed)
    assert [r[0] for r in view_rows(data_dir)] == days
    assert raw_count(data_dir) == 40


def test_permanent_error_mid_backfill_stops_at_once_with_its_message(
    slow_sandbox: OXRSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_REQUESTS_PER_SECOND", "50")
    inject_after(slow_sandbox, 5, "error_body", status=429, message="not_allowed")
    with pytest.raises(OXRPermanentError, match="not_allowed") as raised:
        backfill("2026-03-01", "2026-05-31")  # 92 days
    assert "upgrade the plan" in str(raised.value)
    refused = [e for e in slow_sandbox.requests if e["fault"] == "error_body"]
    # Only requests already in flight (at most max_concurrency) may follow the first refusal.
    assert 1 <= len(refused) <= 4, f"{len(refused)} requests after a permanent error"
    assert len(slow_sandbox.historical_dates_requested()) < 20
    assert bucket_days(data_dir) == sorted(
        set(slow_sandbox.historical_dates_requested(counted_only=True))
    )


def test_quota_too_small_is_refused_before_any_rate_request(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    backfill("2026-01-01", "2026-01-03")
    oxr_sandbox.reset()
    oxr_sandbox.requests_used = oxr_sandbox.monthly_quota - 5  # 5 requests left this month
    with pytest.raises(QuotaExceededError) as raised:
        backfill("2026-01-01", "2026-01-10")  # 10 days, 3 present: 7 needed
    message = str(raised.value)
    assert "needs 7 historical requests" in message and "only 5 remain" in message
    assert oxr_sandbox.historical_dates_requested() == []
    assert [e["path"] for e in oxr_sandbox.requests] == ["/api/usage.json"]

    fits = backfill("2026-01-01", "2026-01-07")  # 4 missing days fit in 5
    assert fits.days_requested == 4 and fits.quota_remaining_before == 5


def test_bad_key_fails_fast_after_one_request(
    oxr_sandbox: OXRSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__API_KEY", "wrong-key")
    with pytest.raises(OXRPermanentError, match="invalid_app_id"):
        backfill("2026-01-01", "2026-01-07")
    assert oxr_sandbox.request_count() == 1


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-01-07", "2026-01-01", "is after end_date"),
        ("2026-01-01", "2999-01-01", "is in the future"),
        ("1998-12-31", "1999-01-05", "before 1999-01-01"),
        ("2026-13-01", None, "is not a valid date"),
        ("01/02/2026", None, "is not a valid date"),
        ("2026-01-01", "today", "is today"),
    ],
)
def test_invalid_dates_are_refused_before_any_request(
    oxr_sandbox: OXRSandbox, data_dir: Path, start: str, end: str | None, message: str
) -> None:
    end = utc_today().isoformat() if end == "today" else end
    with pytest.raises(InvalidDateError, match=message):
        backfill(start, end)
    assert oxr_sandbox.request_count() == 0


def test_end_date_defaults_to_yesterday_utc(data_dir: Path) -> None:
    today = date(2026, 3, 10)
    assert validate_date_range("2026-03-01", today=today) == (date(2026, 3, 1), date(2026, 3, 9))


def test_rate_limit_is_never_exceeded(
    oxr_sandbox: OXRSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_CONCURRENCY", "8")
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_REQUESTS_PER_SECOND", "5")
    started = time.monotonic()
    backfill("2026-02-01", "2026-02-12")  # 12 days at 5/s: at least two full windows
    assert time.monotonic() - started >= 2.0
    assert oxr_sandbox.peak_request_rate() <= 5


def test_limiter_admits_at_most_the_limit_per_second(data_dir: Path) -> None:
    limiter = RequestRateLimiter(3)
    starts = []
    for _ in range(7):
        limiter.acquire()
        starts.append(time.monotonic())
    for i in range(len(starts) - 3):
        assert starts[i + 3] - starts[i] >= 1.0


# ---- the shipped DDL and the files ----------------------------------------------------------


def test_pipe_copy_mapping_loads_the_files_the_pipeline_writes(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    """Run the COPY's SELECT from the shipped SQL (translated) over the real files, alone."""
    backfill("2026-01-05", "2026-01-05")
    run_latest()
    mapping = copy_mapping()
    create_table = next(s for s in ddl_statements() if "CREATE TABLE" in s.upper())
    for column in mapping.columns:
        assert column in create_table, f"COPY targets {column}, which the table lacks"
    files = sorted((data_dir / "bucket" / "exchange-rates").rglob("*.jsonl.gz"))
    assert len(files) == 2
    with duckdb.connect() as con:
        for path in files:
            con.execute(
                "create or replace temp table staged as select json, ? as stage_path, "
                "now() as scan_time from read_ndjson_objects(?)",
                [str(path.relative_to(data_dir / "bucket" / "exchange-rates")), str(path)],
            )
            rows = con.execute(copy_select_for_duckdb(mapping, "staged")).fetchall()
            assert len(rows) == 1
            row = dict(zip(mapping.columns, rows[0], strict=True))
            raw = json.loads(gzip.decompress(path.read_bytes()))
            assert str(row["RATE_DATE"]) == raw["rate_date"]
            assert row["BASE"] == "USD" and json.loads(row["RATES"]) == raw["rates"]
            assert row["OXR_TIMESTAMP"].isoformat() == raw["timestamp"]
            assert row["_DLT_LOAD_ID"] == raw["_dlt_load_id"]
            assert row["_FILE_NAME"] in str(path) and row["_INGESTED_AT"] is not None
            if "historical" in str(path):
                assert path.name == f"{raw['rate_date']}.jsonl.gz"
                assert raw["rates"]["EUR"] == expected_eur("2026-01-05")


def test_snowflake_table_and_view_hold_on_the_standin(
    snowflake_standin: SnowflakeStandIn,  # noqa: F811
) -> None:
    """Names and the view's Snowflake SQL (QUALIFY, VARIANT paths) hold on fakesnow's server."""
    with snowflake_standin.connect() as con:
        cur = con.cursor()
        cur.execute("create database if not exists SNOWPIPE")
        cur.execute(f"create or replace schema {RAW_TABLE.rsplit('.', 1)[0]}")
        for statement in ddl_statements():
            if statement.upper().startswith(
                ("CREATE SCHEMA", "CREATE TABLE", "CREATE OR REPLACE VIEW")
            ):
                cur.execute(statement)
        for eur, loaded in ((0.90, "2026-01-02 00:00:00"), (0.91, "2026-01-03 00:00:00")):
            cur.execute(
                f"insert into {RAW_TABLE} select '2026-01-01'::date, "
                "'2026-01-01 23:59:59+00:00'::timestamp_tz, 'USD', "
                f"parse_json('{{\"EUR\": {eur}}}'), '{loaded}+00:00'::timestamp_tz, 'l', "
                "'historical/2026-01-01.jsonl.gz', current_timestamp"
            )
        cur.execute(f"select RATE_DATE, BASE, RATES:EUR::float from {USER_VIEW}")
        assert cur.fetchall() == [(date(2026, 1, 1), "USD", 0.91)]

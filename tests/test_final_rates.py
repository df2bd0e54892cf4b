"""Final rates every day: the daily flow fetches yesterday's end-of-day rates, once.

The view `EXCHANGE_RATES_LATEST` keeps one row per day; a day's final (historical) row must win
over an intraday `latest` snapshot of the same day whichever arrived last.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

import dev_stack.oxr_sandbox.server as oxr_sandbox_module
from dev_stack.oxr_sandbox import OXRSandbox
from environments import load_environment
from flows.exchange_rates import exchange_rates_daily_flow
from local_runtime.snowpipe import USER_VIEW
from pipelines.exchange_rates import backfill, last_complete_day, run_latest
from sources.exchange_rates import DateRange, utc_today


def view(data_dir: Path) -> dict[str, str]:
    """rate date -> the file its row came from."""
    with duckdb.connect(str(data_dir / "warehouse" / "snowpipe.duckdb"), read_only=True) as con:
        rows = con.sql(f"select rate_date::varchar, _file_name from {USER_VIEW}").fetchall()
    return dict(rows)


def snapshot_of(day: str, oxr_sandbox: OXRSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `latest` run as it would have happened at 09:00 UTC on `day` (the sandbox's clock)."""
    at_nine = datetime.fromisoformat(day).replace(hour=9, tzinfo=UTC)
    with monkeypatch.context() as patched:
        patched.setattr(oxr_sandbox_module, "_now", lambda: at_nine)
        run_latest(load_environment())


def test_view_prefers_the_final_row_over_a_snapshot_of_the_same_day(
    oxr_sandbox: OXRSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_days_ago = (utc_today() - timedelta(days=2)).isoformat()
    yesterday = last_complete_day().isoformat()

    snapshot_of(two_days_ago, oxr_sandbox, monkeypatch)  # the usual order: snapshot first
    assert view(data_dir)[two_days_ago].startswith("latest/")
    backfill(load_environment(), DateRange.parse(two_days_ago, two_days_ago))
    assert view(data_dir)[two_days_ago] == f"historical/{two_days_ago}.jsonl.gz"

    # the other order: a snapshot fetched and ingested after the final row
    backfill(load_environment(), DateRange.parse(yesterday, yesterday))
    snapshot_of(yesterday, oxr_sandbox, monkeypatch)
    assert view(data_dir)[yesterday] == f"historical/{yesterday}.jsonl.gz"


@pytest.mark.usefixtures("prefect_server")
def test_daily_flow_loads_yesterdays_final_rates_once(
    oxr_sandbox: OXRSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_REQUESTS_PER_SECOND", "200")
    yesterday = last_complete_day().isoformat()

    _, first = exchange_rates_daily_flow()["load_info"]
    assert first["backfill"]["days_loaded"] == 1
    assert oxr_sandbox.historical_dates_requested() == [yesterday]
    assert oxr_sandbox.request_count("/api/usage.json") == 1  # the backfill's quota check

    _, second = exchange_rates_daily_flow()["load_info"]
    assert second["backfill"]["days_skipped"] == 1
    assert oxr_sandbox.historical_dates_requested() == [yesterday], "fetched yesterday again"
    assert oxr_sandbox.request_count("/api/usage.json") == 1, "nothing to fetch, no quota read"
    assert oxr_sandbox.request_count("/api/latest.json") == 2
    rows = view(data_dir)
    assert rows[yesterday] == f"historical/{yesterday}.jsonl.gz"
    assert rows[utc_today().isoformat()].startswith("latest/")

"""The OXR data contract and the bucket's whole-files rule, on real parts.

Bad answers come from the OXR sandbox's fault script (a day-scoped `patch` or `answer`), the
bucket is the local folder (or S3 in moto), the pipe is the local Snowpipe on DuckDB. Each case
checks what the operator sees (one-line cause naming endpoint, day, field; permanent, so not
retried) and what it leaves (nothing of a refused answer written, good days kept).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dev_stack.oxr_sandbox import OXRSandbox, rates_for
from environments import load_environment
from local_runtime.snowpipe import LOAD_HISTORY_TABLE, USER_VIEW, ingest
from pipelines.errors import is_permanent
from sources.open_exchange_rates import OXRDataError, OXRPermanentError
from tests.fixtures.moto import S3Bucket, moto_server, s3_bucket  # noqa: F401
from tests.test_exchange_rates import backfill, run_latest

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]
BAD_DAY = "2026-01-02"
BAD_DAY_PATH = f"/api/historical/{BAD_DAY}.json"


@pytest.fixture(autouse=True)
def fast_backfill(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_CONCURRENCY", "4")
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_REQUESTS_PER_SECOND", "200")


def bucket_files(data_dir: Path, table: str = "historical") -> list[str]:
    folder = data_dir / "bucket" / "exchange-rates" / table
    return sorted(p.name for p in folder.glob("*")) if folder.exists() else []


def quarantine_files(data_dir: Path) -> list[str]:
    root = data_dir / "bucket" / "_quarantine"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def view_days(data_dir: Path) -> list[str]:
    path = data_dir / "warehouse" / "snowpipe.duckdb"
    if not path.exists():
        return []
    with duckdb.connect(str(path), read_only=True) as con:
        return [
            r[0]
            for r in con.sql(f"select rate_date::varchar from {USER_VIEW} order by 1").fetchall()
        ]


def expected_eur(day: str) -> float:
    return rates_for(date.fromisoformat(day))[1]["EUR"]


def one_line(error: BaseException) -> str:
    lines = str(error).splitlines()
    assert len(lines) == 1, f"not a one-line cause: {error}"
    return lines[0]


# ---- historical days: refused at the door, good days kept -------------------------------------

BAD_HISTORICAL_ANSWERS: list[tuple[str, dict[str, Any], str]] = [
    ("empty object", {"kind": "answer", "body": {}}, "field `timestamp` is missing"),
    ("rates null", {"kind": "patch", "set": {"rates": None}}, "field `rates` is missing or null"),
    ("rates empty", {"kind": "patch", "set": {"rates": {}}}, "field `rates` is {}"),
    ("no timestamp", {"kind": "patch", "remove": ["timestamp"]}, "field `timestamp` is missing"),
    ("no base", {"kind": "patch", "remove": ["base"]}, "field `base` is missing"),
    (
        "timestamp of another day",
        {"kind": "patch", "set": {"timestamp": 1767225599}},  # 2025-12-31 23:59:59
        "field `timestamp` is 2025-12-31T23:59:59+00:00, not within the requested day",
    ),
    ("null rate", {"kind": "patch", "rates": {"EUR": None}}, "field `rates.EUR` is None"),
    ("negative rate", {"kind": "patch", "rates": {"EUR": -0.9}}, "field `rates.EUR` is -0.9"),
    ("zero rate", {"kind": "patch", "rates": {"EUR": 0}}, "field `rates.EUR` is 0,"),
    ("string rate", {"kind": "patch", "rates": {"EUR": "0.9"}}, "field `rates.EUR` is '0.9'"),
    ("NaN rate", {"kind": "patch", "rates": {"EUR": float("nan")}}, "field `rates.EUR` is nan"),
    ("bad code", {"kind": "patch", "rates": {"eur": 0.9}}, "field `rates.eur` is not a 3-letter"),
]


@pytest.mark.parametrize(
    ("fault", "cause"),
    [(fault, cause) for _, fault, cause in BAD_HISTORICAL_ANSWERS],
    ids=[name for name, _, _ in BAD_HISTORICAL_ANSWERS],
)
def test_bad_historical_answer_is_refused_and_the_good_days_are_kept(
    oxr_sandbox: OXRSandbox, data_dir: Path, fault: dict[str, Any], cause: str
) -> None:
    spec = dict(fault)
    oxr_sandbox.inject_faults(spec.pop("kind"), path=BAD_DAY_PATH, **spec)
    with pytest.raises(OXRDataError) as raised:
        backfill(DAYS[0], DAYS[-1])
    line = one_line(raised.value)
    assert line.startswith(f"Open Exchange Rates historical/{BAD_DAY}.json (day {BAD_DAY}): ")
    assert cause in line and "refused, nothing written. Fix: " in line
    assert is_permanent(raised.value)
    # nothing of the refused answer, everything of the good days, in the bucket and the table
    assert bucket_files(data_dir) == ["2026-01-01.jsonl.gz", "2026-01-03.jsonl.gz"]
    assert view_days(data_dir) == ["2026-01-01", "2026-01-03"]
    assert oxr_sandbox.historical_dates_requested().count(BAD_DAY) == 1, "a refusal was retried"

    again = backfill(DAYS[0], DAYS[-1])  # OXR fixed: the rerun asks for the refused day only
    assert (again.days_skipped, again.days_requested, again.days_loaded) == (2, 1, 1)
    assert view_days(data_dir) == DAYS


def test_several_refused_days_are_all_named(oxr_sandbox: OXRSandbox, data_dir: Path) -> None:
    for day in ("2026-01-02", "2026-01-04"):
        oxr_sandbox.inject_faults("patch", path=f"/api/historical/{day}.json", rates={"EUR": -1})
    with pytest.raises(OXRDataError) as raised:
        backfill("2026-01-01", "2026-01-05")
    line = one_line(raised.value)
    assert line.startswith("2 historical days refused; first: Open Exchange Rates historical/2026")
    assert "Refused days: 2026-01-02, 2026-01-04." in line
    assert bucket_files(data_dir) == [f"2026-01-0{d}.jsonl.gz" for d in (1, 3, 5)]


def test_bad_latest_answer_writes_nothing(oxr_sandbox: OXRSandbox, data_dir: Path) -> None:
    oxr_sandbox.inject_faults("patch", rates={"EUR": -1})
    with pytest.raises(OXRDataError) as raised:  # as itself, not wrapped in dlt's step error
        run_latest()
    assert is_permanent(raised.value)
    assert one_line(raised.value).startswith(
        "Open Exchange Rates latest.json: field `rates.EUR` is -1, not a positive finite number"
    )
    assert bucket_files(data_dir, "latest") == [] and view_days(data_dir) == []
    assert oxr_sandbox.request_count("/api/latest.json") == 1

    oxr_sandbox.inject_faults("patch", set={"timestamp": 4102444800})  # 2100-01-01
    with pytest.raises(OXRDataError, match=r"field `timestamp` is 2100-01-01T00:00:00\+00:00, in"):
        run_latest()
    assert bucket_files(data_dir, "latest") == []


def test_extra_top_level_field_in_latest_does_not_become_data(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    """OXR's answers already carry `disclaimer` and `license`: only known fields are kept."""
    oxr_sandbox.inject_faults("patch", set={"surprise": {"USD": 1}})
    run_latest()
    (name,) = bucket_files(data_dir, "latest")
    row = json.loads(
        gzip.decompress((data_dir / "bucket" / "exchange-rates" / "latest" / name).read_bytes())
    )
    assert "surprise" not in row and row["base"] == "USD"


# ---- days OXR does not have (404) -----------------------------------------------------------


def not_found(sandbox: OXRSandbox, day: str) -> None:
    sandbox.inject_faults(
        "error_body", path=f"/api/historical/{day}.json", status=404, message="not_found"
    )


def test_404_days_are_skipped_listed_and_do_not_stop_the_others(
    oxr_sandbox: OXRSandbox, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_found(oxr_sandbox, "2026-01-02")
    not_found(oxr_sandbox, "2026-01-04")
    result = backfill("2026-01-01", "2026-01-05")
    assert result.days_not_available == [date(2026, 1, 2), date(2026, 1, 4)]
    summary = result.summary()["backfill"]
    assert summary["days_not_available"] == ["2026-01-02", "2026-01-04"]
    assert (result.days_requested, result.days_loaded) == (5, 3)
    assert view_days(data_dir) == ["2026-01-01", "2026-01-03", "2026-01-05"]
    assert "OXR has no rates for 2 day(s), skipped: 2026-01-02, 2026-01-04" in caplog.text
    # each missing day asked once: a 404 is not retried by dlt's HTTP client either
    assert sorted(oxr_sandbox.historical_dates_requested()) == [
        f"2026-01-0{d}" for d in range(1, 6)
    ]


def test_404_on_every_day_is_a_permanent_configuration_error(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    for day in DAYS:
        not_found(oxr_sandbox, day)
    with pytest.raises(OXRPermanentError) as raised:
        backfill(DAYS[0], DAYS[-1])
    line = one_line(raised.value)
    assert "all 3 requested days answered 404" in line and "base_url" in line
    assert is_permanent(raised.value)
    assert bucket_files(data_dir) == []


# ---- whole files only in the bucket ----------------------------------------------------------


def good_day_file(day: str, **changes: Any) -> bytes:
    row = {
        "rate_date": day,
        "timestamp": f"{day}T23:59:59+00:00",
        "base": "USD",
        "rates": {"USD": 1.0, "EUR": 0.9},
        "_loaded_at": "2026-01-10T00:00:00+00:00",
        "_dlt_load_id": "1",
        **changes,
    }
    return gzip.compress((json.dumps(row) + "\n").encode())


BROKEN_FILES = {
    "half written": lambda: good_day_file(BAD_DAY)[:20],
    "rate written before the contract": lambda: good_day_file(
        BAD_DAY, rates={"USD": 1.0, "EUR": -0.9}
    ),
    "another day's row": lambda: good_day_file("2026-01-09"),
}


@pytest.mark.parametrize("broken", list(BROKEN_FILES), ids=list(BROKEN_FILES))
def test_broken_day_file_is_quarantined_and_fetched_again(
    oxr_sandbox: OXRSandbox, data_dir: Path, broken: str
) -> None:
    folder = data_dir / "bucket" / "exchange-rates" / "historical"
    folder.mkdir(parents=True)
    content = BROKEN_FILES[broken]()
    (folder / f"{BAD_DAY}.jsonl.gz").write_bytes(content)  # what a crash mid-copy leaves
    result = backfill(DAYS[0], DAYS[-1])
    assert result.days_requested == 3, "a broken file counted as present"
    assert bucket_files(data_dir) == [f"{d}.jsonl.gz" for d in DAYS]
    (moved,) = quarantine_files(data_dir)
    assert moved.startswith("exchange-rates/") and moved.endswith(f"/historical/{BAD_DAY}.jsonl.gz")
    assert (data_dir / "bucket" / "_quarantine" / moved).read_bytes() == content
    assert result.summary()["backfill"]["quarantined"] == [
        str(data_dir / "bucket" / "_quarantine" / moved)
    ]
    assert view_days(data_dir) == DAYS
    assert result.local_pipe is not None and result.local_pipe["failed"] == []


# production holds the run guard on a Prefect API (no API: the run refuses)
@pytest.mark.usefixtures("prefect_server")
def test_broken_file_on_s3_is_quarantined_outside_the_watched_prefix(
    oxr_sandbox: OXRSandbox,
    s3_bucket: S3Bucket,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATA_PIPELINES_ENV", "production")
    s3 = s3_bucket.server.client()
    key = f"exchange-rates/historical/{BAD_DAY}.jsonl.gz"
    s3.put_object(Bucket=s3_bucket.name, Key=key, Body=good_day_file(BAD_DAY)[:20])
    result = backfill(DAYS[0], DAYS[-1])
    assert result.days_requested == 3
    keys = s3_bucket.list_keys()
    assert [k for k in keys if k.startswith("exchange-rates/")] == [
        f"exchange-rates/historical/{d}.jsonl.gz" for d in DAYS
    ]
    (moved,) = [k for k in keys if k.startswith("_quarantine/")]
    assert moved.startswith("_quarantine/exchange-rates/") and moved.endswith(key.split("/", 1)[1])
    body = s3.get_object(Bucket=s3_bucket.name, Key=key)["Body"].read()
    assert json.loads(gzip.decompress(body))["rate_date"] == BAD_DAY


ATOMIC_COPY_SCRIPT = textwrap.dedent(
    """
    import resource, signal, sys
    from fsspec.implementations.local import LocalFileSystem
    from pipelines.dlt_patches import AtomicLocalFileSystem
    # A write that dies half-way: the file size limit stops the copy at 64 KiB.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))
    fs = AtomicLocalFileSystem() if sys.argv[1] == "atomic" else LocalFileSystem()
    try:
        fs.put_file(sys.argv[2], sys.argv[3])
    except OSError as error:
        print(type(error).__name__)
    """
)


@pytest.mark.parametrize("filesystem", ["plain", "atomic"])
def test_a_copy_that_dies_half_way_leaves_no_partial_file_under_the_name(
    tmp_path: Path, filesystem: str
) -> None:
    source = tmp_path / "load-file.jsonl.gz"
    source.write_bytes(b"x" * 200_000)
    target = tmp_path / "bucket" / "2026-01-02.jsonl.gz"
    target.parent.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", ATOMIC_COPY_SCRIPT, filesystem, str(source), str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert run.stdout.strip() == "OSError", run.stderr
    if filesystem == "plain":  # the fault is real: fsspec's own copy leaves half a file
        assert target.stat().st_size == 65536
    else:
        assert list(target.parent.iterdir()) == [], "a partial or temporary file was left"


def test_the_pipeline_writes_local_files_atomically(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    import fsspec

    from pipelines.dlt_patches import AtomicLocalFileSystem

    backfill(DAYS[0], DAYS[0])
    assert fsspec.get_filesystem_class("file") is AtomicLocalFileSystem
    assert bucket_files(data_dir) == [f"{DAYS[0]}.jsonl.gz"]  # no temporary name left behind


# ---- the local pipe: one bad file never blocks the others -------------------------------------


def test_local_pipe_loads_each_file_independently_and_reports_the_bad_one(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    folder = data_dir / "bucket" / "exchange-rates" / "historical"
    folder.mkdir(parents=True)
    (folder / "2026-01-01.jsonl.gz").write_bytes(good_day_file("2026-01-01"))
    (folder / "2026-01-02.jsonl.gz").write_bytes(good_day_file("2026-01-02")[:20])
    (folder / "2026-01-03.jsonl.gz").write_bytes(good_day_file("2026-01-03", rate_date="nope"))
    (folder / "2026-01-04.jsonl.gz").write_bytes(good_day_file("2026-01-04"))
    report = ingest(load_environment().exchange_rates_url())
    assert report.loaded == ["historical/2026-01-01.jsonl.gz", "historical/2026-01-04.jsonl.gz"]
    assert [f["file"] for f in report.failed] == [
        "historical/2026-01-02.jsonl.gz",
        "historical/2026-01-03.jsonl.gz",
    ]
    assert "EOFError" in report.failed[0]["error"] or "Error" in report.failed[0]["error"]
    assert view_days(data_dir) == ["2026-01-01", "2026-01-04"]
    with duckdb.connect(str(data_dir / "warehouse" / "snowpipe.duckdb"), read_only=True) as con:
        history = con.sql(
            f"select file_name, status, first_error is not null from {LOAD_HISTORY_TABLE} "
            "order by file_name"
        ).fetchall()
    assert [(name.rsplit("/", 1)[-1], status, has) for name, status, has in history] == [
        ("2026-01-01.jsonl.gz", "LOADED", False),
        ("2026-01-02.jsonl.gz", "LOAD_FAILED", True),
        ("2026-01-03.jsonl.gz", "LOAD_FAILED", True),
        ("2026-01-04.jsonl.gz", "LOADED", False),
    ]

    # Later passes neither fail on the bad files nor retry them; later runs go through.
    again = ingest(load_environment().exchange_rates_url())
    assert (again.files_loaded, again.failed) == (0, [])
    run_latest()
    # the backfill replaces the broken days (quarantine) and the pipe loads the new versions
    result = backfill("2026-01-01", "2026-01-04")
    assert result.days_requested == 2 and len(result.quarantined) == 2
    assert view_days(data_dir)[:4] == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]


def test_a_rate_that_jumps_is_kept_and_warned_about(
    oxr_sandbox: OXRSandbox,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import importlib

    chunking = importlib.import_module("pipelines.exchange_rates.backfill")
    monkeypatch.setattr(chunking, "CHUNK_MAX_SECONDS", 60.0)  # one chunk
    oxr_sandbox.inject_faults("patch", path=BAD_DAY_PATH, rates={"EUR": 5.0})
    result = backfill(DAYS[0], DAYS[-1])
    assert view_days(data_dir) == DAYS, "a jump is not proof of bad data: the day is kept"
    assert [w.split(" -> ")[1] for w in result.rate_warnings] == ["5", f"{expected_eur(DAYS[2]):g}"]
    assert result.summary()["backfill"]["rate_warnings"][0].startswith(f"{BAD_DAY} EUR ")
    assert "rate moved more than 50%" in caplog.text

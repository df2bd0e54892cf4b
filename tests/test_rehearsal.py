"""Production, unchanged, against the rehearsal's stand-ins, run as production runs.

Every production step runs in its own process with `production_env()` (endpoints and
non-secret settings only) and a working folder of its own (a pool of fresh machines: nothing
shared on disk), taking its pipeline's run guard on the session's Prefect server, so dlt's AWS
Secrets Manager provider is switched on at start-up as on a worker and every secret comes from
moto. Snowflake is the fakesnow stand-in over the wire
(`rehearsal/snowflake_standin.py`), reached by dlt's `snowflake` destination; the pipe is the
pipe stand-in running the DDL's own COPY.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev_stack import processes
from dev_stack.products_data import seed, simulate_day
from rehearsal import standin_process
from rehearsal.config import (
    StandIns,
    admin_connection,
    aws_client,
    production_env,
    provision_aws,
    secret_documents,
)
from rehearsal.scenarios import FILLS_PRODUCTS_STAGING
from tests.conftest import SANDBOX_APP_ID
from tests.fixtures.moto import MotoServer, moto_server  # noqa: F401
from tests.fixtures.postgres import postgres_cluster  # noqa: F401

PROJECT_DIR = Path(__file__).resolve().parent.parent
CURRENCIES = "DLT.OPEN_EXCHANGE_RATES.CURRENCIES"
PRODUCTS = "DLT.APPLICATION_DATA.PRODUCTS"
EXCHANGE_RATES = "SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES"
LATEST_VIEW = "SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_LATEST"
SEEDED_ROWS = 300
EMPTIES_PRODUCTS = (
    r'^\s*(DELETE\s+FROM|TRUNCATE\s+(TABLE\s+)?)\s*"?APPLICATION_DATA"?\."?PRODUCTS"?'
)
# dlt's load of the products rows into the staging table, before the merge or the swap


@pytest.fixture(scope="module")
def stand_ins(
    tmp_path_factory: pytest.TempPathFactory,
    moto_server: MotoServer,  # noqa: F811
    postgres_cluster,  # noqa: F811
    oxr_sandbox_server,
    prefect_server: None,
) -> Iterator[StandIns]:
    """The Snowflake stand-in (a process), moto, PostgreSQL, the sandbox; DDL applied.

    The session's Prefect server holds the run guards (its limits created as `apply prefect`
    does), as production's server does for every worker of the pool.
    """
    import psycopg

    base = tmp_path_factory.mktemp("rehearsal")
    port = processes.free_port()
    server = standin_process.start(
        port,
        [
            *("--mirror", str(base / "mirror")),
            # hold every statement that empties or trims the products table: a reader must
            # still see the old table meanwhile (it does only inside the swap's transaction)
            *("--pause-after", EMPTIES_PRODUCTS, "--pause-seconds", "1.5"),
            # and, while the gate file exists, a load right after it fills the staging table
            *("--hold-after", FILLS_PRODUCTS_STAGING, "--hold-file", str(base / "staging.gate")),
        ],
        base / "snowflake.log",
    )
    try:
        with psycopg.connect(postgres_cluster.dsn_for("postgres"), autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS rehearsal_products WITH (FORCE)")
            conn.execute("CREATE DATABASE rehearsal_products")
        dsn = postgres_cluster.dsn_for("rehearsal_products")
        seed(dsn, SEEDED_ROWS)
        oxr_sandbox_server.reset()
        stand_ins = StandIns(
            data_dir=base / "data",
            snowflake_port=port,
            moto_url=moto_server.endpoint_url,
            oxr_base_url=oxr_sandbox_server.base_url,
            oxr_app_id=SANDBOX_APP_ID,
            products_dsn=dsn,
            slack_webhook_url="http://127.0.0.1:9/slack",
            pagerduty_events_url="http://127.0.0.1:9/pagerduty",
            bucket="data-pipelines-rehearsal-test",
        )
        provision_aws(stand_ins)
        cli(stand_ins, "apply", "snowflake")
        yield stand_ins
    finally:
        server.terminate()
        server.wait(timeout=20)


def process_env(stand_ins: StandIns, prefect_api_url: str | None = None) -> dict[str, str]:
    """A production process's environment on a fresh machine: its own working folder."""
    from prefect.settings import PREFECT_API_URL

    folder = Path(tempfile.mkdtemp(prefix="run-", dir=stand_ins.data_dir.parent))
    env = production_env(stand_ins)
    env.update(
        {
            "DATA_PIPELINES_DATA_DIR": str(folder),
            "PREFECT_API_URL": prefect_api_url or PREFECT_API_URL.value(),
        }
    )
    return env


def start_production(
    stand_ins: StandIns, code: str, log: Path | None = None, prefect_api_url: str | None = None
) -> subprocess.Popen[str]:
    """`code` in a fresh production process (as a worker runs it), not waited for.

    Its stderr (logs) goes to `log` when given, so a test can read it while it runs.
    """
    prelude = (
        "import logging\nlogging.basicConfig(level=logging.INFO)\n"
        "from environments import load_environment\nenvironment = load_environment()\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", prelude + code],
        cwd=PROJECT_DIR,
        env=process_env(stand_ins, prefect_api_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if log is None else log.open("w"),
        text=True,
    )


def run_production(stand_ins: StandIns, code: str, prefect_api_url: str | None = None) -> str:
    """`code` in a fresh production process (as a worker runs it); its stdout."""
    process = start_production(stand_ins, code, prefect_api_url=prefect_api_url)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-4000:]
    # the stand-in switches the connector's telemetry off at login (it has no endpoint for it)
    assert "Failed to export telemetry" not in stderr, stderr[-4000:]
    return stdout


def cli(stand_ins: StandIns, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("data-pipelines")), *argv],
        cwd=PROJECT_DIR,
        env=process_env(stand_ins),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def query(stand_ins: StandIns, sql: str) -> list[tuple]:
    """SQL on the stand-in as an operator would run it (the admin user, over the wire)."""
    connection = admin_connection(stand_ins)
    try:
        return connection.cursor().execute(sql).fetchall()
    finally:
        connection.close()


def count(stand_ins: StandIns, table: str) -> int:
    return int(query(stand_ins, f"select count(*) from {table}")[0][0])


def test_every_secret_comes_from_secrets_manager_and_none_is_in_env(stand_ins: StandIns) -> None:
    env = production_env(stand_ins)
    secret_values = [
        line.split("=", 1)[1].strip().strip('"')
        for document in secret_documents(stand_ins).values()
        for line in document.splitlines()
        if "=" in line
    ]
    leaked = [value for value in secret_values if any(value in v for v in env.values())]
    assert not leaked, f"secret values in the production environment: {leaked}"
    resolved = run_production(
        stand_ins,
        "import dlt\n"
        "from dlt.destinations.impl.snowflake.configuration import SnowflakeCredentials\n"
        "from dlt.common.configuration import resolve_configuration\n"
        "print(dlt.secrets['sources.open_exchange_rates.api_key'])\n"
        "print(dlt.secrets['sources.products.credentials'])\n"
        "print(dlt.secrets['alerting.slack_webhook_url'])\n"
        "c = resolve_configuration(SnowflakeCredentials(), sections=('destination', 'snowflake'))\n"
        "print(c.username, c.to_connector_params()['port'])\n",
    ).split()
    assert resolved == [
        stand_ins.oxr_app_id,
        stand_ins.products_dsn,
        stand_ins.slack_webhook_url,
        "SVC_DLT",
        str(stand_ins.snowflake_port),
    ]


def test_currencies_replace_over_the_wire(stand_ins: StandIns) -> None:
    for _ in range(2):  # replace: a second run leaves one row per code, not two
        run_production(stand_ins, "from pipelines.currencies import run\nrun(environment)\n")
    rows = count(stand_ins, CURRENCIES)
    assert rows > 100
    assert query(stand_ins, f"select count(distinct code) from {CURRENCIES}")[0][0] == rows


def test_products_merge_incremental_then_full_refresh_readers_keep_the_old_table(
    stand_ins: StandIns,
) -> None:
    daily = "from pipelines.products import run\nrun(environment)\n"
    run_production(stand_ins, daily)
    assert count(stand_ins, PRODUCTS) == SEEDED_ROWS
    added = simulate_day(stand_ins.products_dsn)["total"]
    assert added > 0
    run_production(stand_ins, daily)  # incremental on valid_ts, merged on audit_id
    before = count(stand_ins, PRODUCTS)
    assert before == SEEDED_ROWS + added
    assert query(stand_ins, f"select count(distinct audit_id) from {PRODUCTS}")[0][0] == before

    # A reader polls the table through the whole full refresh: it must only ever see the old
    # complete table or the new one, never an empty or half-loaded one.
    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(count(stand_ins, PRODUCTS))
            time.sleep(0.05)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        run_production(
            stand_ins, "from pipelines.products import run\nrun(environment, full_refresh=True)\n"
        )
    finally:
        stop.set()
        thread.join()
    after = count(stand_ins, PRODUCTS)
    assert after == before
    assert len(seen) > 5
    assert set(seen) == {before}, f"a reader saw {sorted(set(seen))} during the refresh"


def test_exchange_rates_bucket_pipe_table_and_one_row_per_day_view(stand_ins: StandIns) -> None:
    run_production(
        stand_ins,
        "from pipelines.exchange_rates import backfill, run_latest\n"
        "from sources.exchange_rate_dates import DateRange\n"
        "backfill(environment, DateRange.parse('2026-01-01', '2026-01-03'))\n"
        "run_latest(environment)\n",
    )
    keys = [
        item["Key"]
        for item in aws_client(stand_ins, "s3")
        .list_objects_v2(Bucket=stand_ins.bucket, Prefix="exchange-rates/")
        .get("Contents", [])
    ]
    assert len([k for k in keys if k.startswith("exchange-rates/historical/")]) == 3
    assert len([k for k in keys if k.startswith("exchange-rates/latest/")]) == 1

    pipe = [sys.executable, "-m", "rehearsal.snowpipe_standin", "--once"]
    pipe += ["--bucket", stand_ins.bucket, "--mirror", str(stand_ins.data_dir.parent / "mirror")]
    for _ in range(2):  # the second poll finds nothing new: no row is loaded twice
        result = subprocess.run(
            pipe, cwd=PROJECT_DIR, env=production_env(stand_ins), capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert count(stand_ins, EXCHANGE_RATES) == len(keys)
    files = query(stand_ins, f"select count(distinct _file_name) from {EXCHANGE_RATES}")[0][0]
    assert files == len(keys)
    days = query(
        stand_ins, f"select rate_date, count(*) from {LATEST_VIEW} group by rate_date order by 1"
    )
    assert [str(day) for day, _ in days][:3] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert all(n == 1 for _, n in days)


def test_verify_in_production_mode(stand_ins: StandIns) -> None:
    result = cli(stand_ins, "verify", check=False)
    assert "environment production" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "pipe status" in result.stdout
    assert result.returncode == 0, result.stdout


def source_keys(stand_ins: StandIns) -> list[int]:
    import psycopg

    with psycopg.connect(stand_ins.products_dsn) as connection:
        rows = connection.execute("select audit_id from raw_data.products order by 1").fetchall()
    return [int(audit_id) for (audit_id,) in rows]


def test_daily_inside_a_full_refresh_waits_and_products_equals_the_source(
    stand_ins: StandIns, tmp_path: Path
) -> None:
    """Two working folders, one warehouse with many writers: a products-daily started while a
    full refresh's rows sit in the staging table (which dlt empties at the start of every load)
    waits for the refresh's run guard, then merges. Without the guard the refresh swapped in
    the daily's rows only (measured: 50 of 2,050) and both reported success."""
    daily = "from pipelines.products import run\nrun(environment)\n"
    run_production(stand_ins, daily)  # a table and a cursor to start from
    simulate_day(stand_ins.products_dsn)
    gate = stand_ins.data_dir.parent / "staging.gate"
    held = gate.with_name(gate.name + ".held")
    held.unlink(missing_ok=True)
    gate.touch()
    try:
        refresh = start_production(
            stand_ins, "from pipelines.products import run\nrun(environment, full_refresh=True)\n"
        )
        processes.wait_until(held.exists, "the refresh's staging load", 120, gate)
        simulate_day(stand_ins.products_dsn)  # more activity for the daily to merge
        log = tmp_path / "daily.log"
        second = start_production(stand_ins, daily, log)
        # until the daily waits for the refresh, or gets past where it would have waited
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and second.poll() is None:
            if "Waiting for the products pipeline" in log.read_text():
                break
            time.sleep(0.5)
    finally:
        gate.unlink(missing_ok=True)
    refresh_err = refresh.communicate(timeout=300)[1]
    second.communicate(timeout=300)
    second_log = log.read_text()
    assert refresh.returncode == 0, refresh_err[-3000:]
    assert second.returncode == 0, second_log[-3000:]

    keys = [int(k) for (k,) in query(stand_ins, f"select audit_id from {PRODUCTS} order by 1")]
    expected = source_keys(stand_ins)
    assert len(keys) == len(expected), f"PRODUCTS has {len(keys)} rows, the source {len(expected)}"
    assert keys == expected  # row for row by key, no duplicate
    assert "Waiting for the products pipeline" in second_log, second_log[-2000:]
    assert "Got the products pipeline" in second_log

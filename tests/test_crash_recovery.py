"""Crash recovery on a real Prefect server, as on a pool of machines.

A flow-run process killed with `kill -9` keeps its pipeline's `dlt-pipeline:<name>` slot until
its lease runs out (60 s) and the server's repossessor next passes (every 15 s): then a rerun,
from another working folder (another worker), starts and finishes the work, losing and
doubling nothing. The server is a throwaway `prefect server start` (the test harness runs no
repossessor, so there a dead holder's slot is never freed).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.bench_run_guard import (
    backfill_flow_command,
    historical_request_times,
    kill_mid_backfill,
    run_to_end,
)
from dev_stack.oxr_sandbox import OXRSandbox
from dev_stack.products_data import seed
from tests.fixtures.postgres import (  # noqa: F401
    ProductsDatabase,
    postgres_cluster,
    products_database,
)
from tests.fixtures.prefect_pool import applied_prefect_server

# a throwaway Prefect server of its own (module fixture `pool_server`)
pytestmark = pytest.mark.server
PROJECT_DIR = Path(__file__).resolve().parent.parent
START, END = "2026-01-01", "2026-01-30"
# lease (60 s) + the repossessor's loop (15 s) + our poll (2 s +- 25%), with slack for a busy CI
RESTART_BOUND_SECONDS = 90


@pytest.fixture(scope="module")
def pool_server() -> Iterator[str]:
    """A real Prefect server with the limits `data-pipelines apply prefect` creates."""
    with applied_prefect_server() as api_url:
        yield api_url


def worker_env(api_url: str, folder: Path, **extra: str) -> dict[str, str]:
    """A process on its own machine: its own working folder, the pool's Prefect server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DLT_", "PREFECT_API"))}
    env.update(
        PREFECT_API_URL=api_url,
        DATA_PIPELINES_ENV="local",
        DATA_PIPELINES_DATA_DIR=str(folder),
        PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW="ignore",
        **extra,
    )
    return env


def test_apply_prefect_lists_one_limit_per_pipeline(pool_server: str) -> None:
    listing = subprocess.run(
        [str(Path(sys.executable).with_name("prefect")), "global-concurrency-limit", "ls"],
        env={**os.environ, "PREFECT_API_URL": pool_server, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listing.returncode == 0, listing.stderr
    for name in ("currencies", "exchange_rates", "products"):
        assert f"dlt-pipeline:{name}" in listing.stdout, listing.stdout


def test_products_run_waits_for_a_holder_and_starts_soon_after_it_is_killed(
    pool_server: str,
    products_database: ProductsDatabase,  # noqa: F811
    tmp_path: Path,
) -> None:
    seed(products_database.dsn, 500)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nfrom environments.run_guard import prefect_run_guard\n"
            f"with prefect_run_guard('products', api_url={pool_server!r}):\n"
            "    print('held', flush=True)\n    time.sleep(600)\n",
        ],
        cwd=PROJECT_DIR,
        env=worker_env(pool_server, tmp_path / "holder"),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    log = tmp_path / "run.log"
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with log.open("w") as out:
            run = subprocess.Popen(
                [str(Path(sys.executable).with_name("data-pipelines")), "run", "products"],
                cwd=PROJECT_DIR,
                env=worker_env(
                    pool_server,
                    tmp_path / "second",
                    SOURCES__PRODUCTS__CREDENTIALS=products_database.dsn,
                ),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
        deadline = time.monotonic() + 120
        while "Waiting for the products pipeline" not in log.read_text():
            assert run.poll() is None, "the run did not wait:\n" + log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(3)
        assert run.poll() is None, "the run stopped waiting while the holder was alive"
        os.killpg(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
        holder.wait(30)
        while "Got the products pipeline" not in log.read_text():
            assert time.monotonic() - killed < RESTART_BOUND_SECONDS + 30, log.read_text()[-3000:]
            assert run.poll() is None or "Got the products" in log.read_text(), log.read_text()
            time.sleep(0.5)
        started_after = time.monotonic() - killed
        assert run.wait(300) == 0, log.read_text()[-3000:]
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
    print(f"products run started {started_after:.1f} s after its holder was killed")
    assert started_after < RESTART_BOUND_SECONDS
    assert re.search(r"Loaded rows products=\d+", log.read_text()), log.read_text()[-3000:]


def test_backfill_killed_mid_load_is_finished_by_another_worker_without_a_doubled_day(
    pool_server: str, oxr_sandbox: OXRSandbox, tmp_path: Path
) -> None:
    bucket = tmp_path / "bucket"  # S3 in production: the one place both workers see
    oxr_sandbox.latency_seconds = 0.2
    settings = {
        "SOURCES__OPEN_EXCHANGE_RATES__MAX_CONCURRENCY": "1",
        "SOURCES__OPEN_EXCHANGE_RATES__MAX_REQUESTS_PER_SECOND": "200",
        "DATA_PIPELINES_BUCKET_URL": bucket.as_uri(),
    }
    first = worker_env(pool_server, tmp_path / "worker-1", **settings)
    kill_mid_backfill(backfill_flow_command(START, END), first, oxr_sandbox, after_days=3)
    killed_at = time.time()
    oxr_sandbox.latency_seconds = 0.0

    second = worker_env(pool_server, tmp_path / "worker-2", **settings)
    rerun = run_to_end(backfill_flow_command(START, END), second, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    waited = min(historical_request_times(oxr_sandbox, after=killed_at)) - killed_at
    assert waited < RESTART_BOUND_SECONDS, f"the rerun waited {waited:.0f} s after the kill"
    days = sorted(p.name for p in (bucket / "exchange-rates" / "historical").iterdir())
    assert days == [f"2026-01-{d:02d}.jsonl.gz" for d in range(1, 31)]
    requested = oxr_sandbox.historical_dates_requested(counted_only=True)
    assert sorted(set(requested)) == [f"2026-01-{d:02d}" for d in range(1, 31)]

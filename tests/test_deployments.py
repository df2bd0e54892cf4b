"""prefect.yaml on a real Prefect server and worker, driven with the operator's CLI verbatim.

One module-scoped local stack in a temporary data folder, built by the project's own code
(`dev_stack.stack`): the OXR sandbox, PostgreSQL, a Prefect server on SQLite, the
`production` work pool, the deployments and a process worker.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from dev_stack import postgres, stack
from infra import prefect_setup

# the whole local stack (PostgreSQL, a Prefect server, a worker) in a module fixture
pytestmark = pytest.mark.server
FLOW_RUN_ID = re.compile(r"UUID:\s*([0-9a-f-]{36})")


class LocalStack:
    def __init__(self, running: stack.Stack, data_dir: Path) -> None:
        self.running = running
        self.data_dir = data_dir
        self.env = running.worker_env

    def prefect(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The `prefect` CLI as an operator types it, against the stack's server."""
        return subprocess.run(
            [stack._bin("prefect"), *args],
            env={**self.env, "COLUMNS": "250"},  # rich tables truncate to the terminal width
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=prefect_setup.PROJECT_DIR,
        )

    def client(self) -> Any:
        from prefect.client.orchestration import get_client

        return get_client(sync_client=True)

    def wait_final(self, flow_run_id: str, timeout: float = 240) -> Any:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while time.monotonic() < deadline:
                flow_run = client.read_flow_run(flow_run_id)
                if flow_run.state is not None and flow_run.state.is_final():
                    return flow_run
                time.sleep(1)
        raise AssertionError(f"flow run {flow_run_id} not finished after {timeout}s")

    def run_deployment(self, name: str, *params: str) -> Any:
        argv = ["deployment", "run", name]
        for param in params:
            argv += ["--param", param]
        result = self.prefect(*argv)
        assert result.returncode == 0, result.stdout + result.stderr
        match = FLOW_RUN_ID.search(result.stdout)
        assert match, result.stdout
        return match.group(1)

    def query(self, database: str, sql: str) -> list[tuple[Any, ...]]:
        path = self.data_dir / "warehouse" / f"{database}.duckdb"
        with duckdb.connect(str(path), read_only=True) as con:
            return con.sql(sql).fetchall()


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    base = tmp_path_factory.mktemp("stack")
    base.chmod(0o755)  # the PostgreSQL server runs as `postgres` and must reach its folder
    data_dir = base / "data"
    (data_dir / "dlt").mkdir(parents=True)
    (data_dir / "warehouse").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATA_PIPELINES_DATA_DIR", str(data_dir))
        patch.setenv("DLT_DATA_DIR", str(data_dir / "dlt"))
        patch.setenv("DLT_LOCAL_DIR", str(data_dir / "warehouse"))
        patch.delenv("PREFECT_API_URL", raising=False)
        for var in (
            *stack.OXR_KEY_VARS,
            stack.PRODUCTS_DSN_VAR,
            "SOURCES__OPEN_EXCHANGE_RATES__BASE_URL",
        ):
            patch.delenv(var, raising=False)
        try:
            running = stack.up(deploy=False, worker=False)
            # Prefect clients in this process talk to the stack's server for this module only;
            # a settings context also wins over the session's test harness, if one is running.
            patch.setenv("PREFECT_API_URL", running.prefect_api_url)
            with temporary_settings(updates={PREFECT_API_URL: running.prefect_api_url}):
                yield LocalStack(running, data_dir)
        finally:
            cluster_root = postgres.default_root()
            stack.down()
            if cluster_root.is_relative_to("/var/tmp"):
                shutil.rmtree(cluster_root, ignore_errors=True)


@pytest.fixture(scope="module")
def deployed(local_stack: LocalStack) -> LocalStack:
    """The setup creates the pool; `prefect deploy --all` (production file) succeeds; then the
    same definitions are deployed to pull from this checkout and a worker starts."""
    prefect_setup.ensure_work_pools()
    pool = local_stack.prefect("work-pool", "inspect", "production")
    assert pool.returncode == 0 and "process" in pool.stdout, pool.stdout + pool.stderr

    production = local_stack.prefect("--no-prompt", "deploy", "--all", timeout=300)
    assert production.returncode == 0, production.stdout[-3000:] + production.stderr[-3000:]
    listing = local_stack.prefect("deployment", "ls")
    for name in (
        "exchange-rates-daily/production",
        "exchange-rates-backfill/production",
        "currencies-weekly/production",
        "products-daily/production",
        "products-full-refresh/production",
    ):
        assert name in listing.stdout.replace("\n", " ") or name.split("/")[0] in listing.stdout

    stack._apply_and_deploy(local_stack.env)
    stack.start_worker(local_stack.env)
    return local_stack


def test_deployed_definitions_match_prefect_yaml(deployed: LocalStack) -> None:
    with deployed.client() as client:
        daily = client.read_deployment_by_name("exchange-rates-daily/production")
        backfill = client.read_deployment_by_name("exchange-rates-backfill/production")
    assert "dlt" in daily.tags and daily.work_pool_name == "production"
    assert [s.schedule.cron for s in daily.schedules] == ["0 9 * * *"]
    assert daily.schedules[0].schedule.timezone == "UTC"
    assert backfill.schedules == []
    assert daily.global_concurrency_limit is not None
    assert daily.global_concurrency_limit.limit == 1
    assert daily.concurrency_options.collision_strategy == "ENQUEUE"
    # the locally deployed copy pulls from this checkout
    assert "set_working_directory" in str(daily.pull_steps)


def test_operator_runs_daily_exchange_rates_to_completed(deployed: LocalStack) -> None:
    flow_run_id = deployed.run_deployment("exchange-rates-daily/production")
    flow_run = deployed.wait_final(flow_run_id)
    assert flow_run.state.is_completed(), flow_run.state.message
    rows = deployed.query(
        "snowpipe", "select count(*) from SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_LATEST"
    )
    assert rows[0][0] >= 1

    listing = deployed.prefect("flow-run", "ls", "--limit", "5")
    assert listing.returncode == 0 and "exchange-rates-daily" in listing.stdout
    logs = deployed.prefect("flow-run", "logs", flow_run_id)
    assert logs.returncode == 0, logs.stderr
    assert "Finished in state Completed" in logs.stdout


def test_operator_backfill_with_params_lands_exactly_the_range(deployed: LocalStack) -> None:
    flow_run_id = deployed.run_deployment(
        "exchange-rates-backfill/production", "start_date=2026-01-01", "end_date=2026-01-07"
    )
    flow_run = deployed.wait_final(flow_run_id)
    assert flow_run.state.is_completed(), flow_run.state.message
    days = deployed.query(
        "snowpipe",
        "select distinct rate_date from SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_LATEST "
        "where rate_date between '2026-01-01' and '2026-01-07' order by 1",
    )
    assert len(days) == 7


def assert_never_overlapped(spans: list[tuple[Any, Any]], what: str) -> None:
    """Each (start, end) span ended before the next began, whichever of them came first."""
    ordered = sorted(spans, key=lambda span: span[0])
    for earlier, later in itertools.pairwise(ordered):
        assert later[0] >= earlier[1], f"{what} overlapped: {earlier} and {later}"


def test_two_triggers_of_one_deployment_never_overlap(deployed: LocalStack) -> None:
    """Two runs of one deployment triggered together: both complete, one after the other.

    Which of the two gets the deployment's slot first is Prefect's choice (it differs between
    releases), so nothing here assumes it.
    """
    ids = [deployed.run_deployment("currencies-weekly/production") for _ in range(2)]
    runs = [deployed.wait_final(flow_run_id) for flow_run_id in ids]
    assert all(run.state.is_completed() for run in runs), [r.state.message for r in runs]
    assert_never_overlapped(
        [(run.start_time, run.end_time) for run in runs], "two runs of one deployment"
    )
    # the pipeline's own log lines reach each flow run's logs
    for run in runs:
        logs = deployed.prefect("flow-run", "logs", str(run.id))
        assert "Loaded" in logs.stdout and "currencies" in logs.stdout, logs.stdout[-2000:]


def test_deployments_sharing_a_dlt_pipeline_never_overlap(deployed: LocalStack) -> None:
    """products-daily and products-full-refresh share dlt's `products` state: triggered
    together, both complete and their pipeline runs never overlap (the pipeline's run guard;
    the one that waits is Running in Prefect meanwhile). Which goes first is not assumed."""
    daily_id = deployed.run_deployment("products-daily/production")
    refresh_id = deployed.run_deployment("products-full-refresh/production")
    daily, refresh = deployed.wait_final(daily_id), deployed.wait_final(refresh_id)
    assert daily.state.is_completed(), daily.state.message
    assert refresh.state.is_completed(), refresh.state.message
    # in either order the table ends equal to the source
    loaded = deployed.query("dlt", "select count(*) from DLT.APPLICATION_DATA.PRODUCTS")[0][0]
    assert loaded == stack.DEMO_PRODUCT_ROWS

    # dlt's own record of every load package of the dataset (`_dlt_loads`: the package's id is
    # the time its extract began, `inserted_at` the time its load finished) says when each ran.
    # Each run loads its data (if any) and then its audit as packages; no package of one run
    # may overlap one of the other's. (`_trace` rows are no evidence: a full refresh that runs
    # second replaces the audit tables' rows, so what it holds depends on the order.)
    since = min(daily.start_time, refresh.start_time).timestamp()
    spans = deployed.query(
        "dlt",
        "select to_timestamp(load_id::double), inserted_at from DLT.APPLICATION_DATA._dlt_loads "
        f"where load_id::double >= {since} and status = 0",
    )
    assert len(spans) >= 2, spans
    assert_never_overlapped(spans, "two runs of one dlt pipeline")


def test_main_job_runs_all_five_and_summarises(deployed: LocalStack) -> None:
    """`data-pipelines demo` as the README's first command runs it, in a fresh process."""
    env = {k: v for k, v in deployed.env.items() if k != "PREFECT_API_URL"}
    result = subprocess.run(
        [stack._bin("data-pipelines"), "demo", "--timeout", "300"],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
        cwd=prefect_setup.PROJECT_DIR,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout
    for name in (
        "currencies-weekly/production",
        "exchange-rates-daily/production",
        "exchange-rates-backfill/production",
        "products-daily/production",
        "products-full-refresh/production",
    ):
        assert re.search(rf"^{re.escape(name)}\s+Completed\s", summary, re.MULTILINE), name
    # rows loaded per deployment, read back from each run's report artifact
    assert re.search(r"^currencies-weekly/production\s.*currencies=\d+", summary, re.MULTILINE)
    assert re.search(r"^products-full-refresh/production\s.*products=5000", summary, re.MULTILINE)
    assert re.search(r"^DLT\.APPLICATION_DATA\.PRODUCTS\s+5000$", summary, re.MULTILINE)
    assert re.search(r"^DLT\.OPEN_EXCHANGE_RATES\.CURRENCIES\s+\d+$", summary, re.MULTILINE)
    assert deployed.running.prefect_ui_url in summary

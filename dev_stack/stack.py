"""The embedded default, assembled: everything the deployments need on one laptop.

`up()` starts (or finds already running) the OXR sandbox, a PostgreSQL cluster with every
application table of the registry seeded, a Prefect server on SQLite, the `production` work
pool, every deployment of prefect.yaml (pulling from this checkout) and a worker. `down()`
stops them. Data stays in the data folder between runs, so `up` after `down` picks up where
it left off.

A user who configured a real OXR key or their own PostgreSQL DSN gets those instead of the
sandbox or the local cluster: nothing is started for them.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dev_stack import postgres, processes, webhook_receiver
from dev_stack.oxr_sandbox import DEFAULT_SANDBOX_APP_ID
from infra import alerting, prefect_setup
from infra.alerting import AlertingSettings
from pipelines.environment import (
    DATA_DIR_VAR,
    PROJECT_DIR,
    ConfigurationError,
    configure_runtime,
    data_dir,
    dlt_dirs,
)

SANDBOX = "oxr-sandbox"
PREFECT_SERVER = "prefect-server"
WORKER = "prefect-worker"
WEBHOOK_RECEIVER = "webhook-receiver"
DEFAULT_SANDBOX_PORT = 8765
DEFAULT_RECEIVER_PORT = 8766
DEFAULT_PREFECT_PORT = 4200
DEMO_PRODUCT_ROWS = 5_000
OXR_KEY_VARS = ("SOURCES__OPEN_EXCHANGE_RATES__API_KEY", "OXR_APP_ID")
PRODUCTS_DSN_VAR = "SOURCES__PRODUCTS__CREDENTIALS"


@dataclass
class Stack:
    """What is running and the environment the worker (and an operator's shell) needs."""

    prefect_api_url: str
    prefect_ui_url: str
    oxr_base_url: str
    postgres_address: str
    worker_env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        """The addresses an operator needs, one line each (`data-pipelines up` and `demo`)."""
        return [
            f"Prefect UI:      {self.prefect_ui_url}",
            f"Prefect API:     {self.prefect_api_url}",
            f"OXR API:         {self.oxr_base_url}",
            f"PostgreSQL:      {self.postgres_address}",
            *(f"Note: {note}" for note in self.notes),
            f"Shell setup:     source {shell_env_file()}",
        ]


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _user_configured(env_vars: tuple[str, ...], secret_key: str) -> bool:
    """Whether the user set this themselves (environment or dlt secrets): then start nothing."""
    if any(os.environ.get(var) for var in env_vars):
        return True
    configure_runtime()
    import dlt

    return bool(dlt.secrets.get(secret_key))


def _user_configured_oxr_key() -> bool:
    return _user_configured(OXR_KEY_VARS, "sources.open_exchange_rates.api_key")


def _user_configured_products_dsn() -> bool:
    return _user_configured((PRODUCTS_DSN_VAR,), "sources.products.credentials")


def _start_python_service(name: str, module: str, preferred_port: int, health_path: str) -> int:
    """`python -m module --port P` on 127.0.0.1 (once), waited for until healthy; returns P."""
    port = processes.choose_port(name, preferred_port)
    processes.start(
        name, [sys.executable, "-m", module, "--port", str(port)], base_env(), cwd=PROJECT_DIR
    )
    health = f"http://127.0.0.1:{port}{health_path}"
    processes.wait_until(lambda: processes.http_ok(health), name, 30, processes.log_file(name))
    return port


def base_env() -> dict[str, str]:
    """Environment shared by every process of the stack: offline, quiet, same data folder."""
    env = dict(os.environ)
    env.update(
        {
            DATA_DIR_VAR: str(data_dir()),
            "DATA_PIPELINES_ENV": env.get("DATA_PIPELINES_ENV", "local"),
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_HOME": str(data_dir() / "prefect"),
        }
    )
    return env


def start_sandbox() -> str:
    """The OXR sandbox's base URL (started on 127.0.0.1 if it is not running)."""
    port = _start_python_service(
        SANDBOX, "dev_stack.oxr_sandbox", DEFAULT_SANDBOX_PORT, "/__sandbox__/health"
    )
    return f"http://127.0.0.1:{port}/api/"


def start_postgres(seed_rows: int = DEMO_PRODUCT_ROWS) -> postgres.LocalPostgres:
    """The local cluster, with every application table of the registry seeded on first start."""
    cluster = postgres.ensure_running()
    seed_application_tables(cluster.dsn, seed_rows)
    return cluster


# Application tables whose local data comes from a generator of their own (products: also
# `simulate-day`); every other registered table from `dev_stack/seeds/<name>.sql`.
SEEDS_DIR = Path(__file__).parent / "seeds"


def _seed_products(dsn: str, rows: int) -> None:
    from dev_stack import products_data

    products_data.seed(dsn, rows=rows)


SEEDERS: dict[str, Callable[[str, int], None]] = {"products": _seed_products}


def seed_application_tables(dsn: str, seed_rows: int = DEMO_PRODUCT_ROWS) -> list[str]:
    """Create and fill each registered application table that the database lacks; their names.

    A table is seeded once: a table that exists (with the demo's own activity) is left alone.
    """
    from dev_stack.products_data import table_exists
    from pipelines.registry import application_tables

    seeded = []
    for spec in application_tables():
        table = spec.table
        assert table is not None
        if table_exists(dsn, table.schema_name, table.table_name):
            continue
        if spec.name in SEEDERS:
            SEEDERS[spec.name](dsn, seed_rows)
        else:
            _run_seed_file(dsn, spec.name, f"{table.schema_name}.{table.table_name}")
        seeded.append(spec.name)
    return seeded


def _run_seed_file(dsn: str, name: str, table: str) -> None:
    import psycopg

    path = SEEDS_DIR / f"{name}.sql"
    if not path.is_file():
        raise ConfigurationError(
            f"The local stack has no data for the {name} pipeline's table {table}: add "
            f"{path.relative_to(PROJECT_DIR)} (SQL that creates and fills it; "
            "docs/architecture.md, 'Adding a pipeline'), or point the pipeline at your own "
            "database."
        )
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(path.read_text())


# How soon a waiting run asks again for a slot, on the stack's server (Prefect's default for
# both is 30 s; locally nobody should wait half a minute for a slot freed long ago):
# - a deployment run queued by `collision_strategy: ENQUEUE` is set back to Scheduled
#   ("AwaitingConcurrencySlot") this many seconds ahead, and a worker poll
#   (PREFECT_WORKER_QUERY_SECONDS, 2 s here) picks it up again after that
#   (`server.deployments.concurrency_slot_wait_seconds`, prefect/server/orchestration/
#   core_policy.py); measured by benchmarks/bench_enqueue.py, docs/deployments.md;
# - a run waiting on a global concurrency limit (the run guard's `dlt-pipeline:<name>`) is
#   told to retry after at most this many seconds
#   (`server.concurrency.maximum_concurrency_slot_wait_seconds`).
DEPLOYMENT_SLOT_WAIT_SECONDS = "2"
GLOBAL_SLOT_WAIT_SECONDS = "3"


def queue_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The server settings above; values already in `env` win."""
    wanted = {
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": DEPLOYMENT_SLOT_WAIT_SECONDS,
        "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": (
            GLOBAL_SLOT_WAIT_SECONDS
        ),
    }
    return {name: env.get(name, value) for name, value in wanted.items()}


def start_prefect_server() -> str:
    """The local Prefect API URL (server on SQLite in the data folder, UI included)."""
    port = processes.choose_port(PREFECT_SERVER, DEFAULT_PREFECT_PORT)
    env = base_env()
    env.pop("PREFECT_API_URL", None)
    # Alert links (`flow_run|ui_url` in the automations) are built by the server from this;
    # `prefect server start` leaves it unset.
    env["PREFECT_UI_URL"] = f"http://127.0.0.1:{port}"
    # The UI asks the server where its API is; unset, the answer is port 4200 whatever port
    # the server runs on, so on another port (4200 taken) the UI showed nothing and an error.
    env["PREFECT_UI_API_URL"] = f"http://127.0.0.1:{port}/api"
    env.update(queue_settings(env))
    processes.start(
        PREFECT_SERVER,
        [_bin("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        cwd=PROJECT_DIR,
    )
    api_url = f"http://127.0.0.1:{port}/api"
    # A new database takes 30-40 s to migrate on this machine kind.
    processes.wait_until(
        lambda: processes.http_ok(f"{api_url}/health"),
        "Prefect server",
        180,
        processes.log_file(PREFECT_SERVER),
    )
    return api_url


def start_worker(env: dict[str, str]) -> int:
    worker_env = dict(env)
    # Poll often: a local operator is waiting for the run they just triggered.
    worker_env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2")
    worker_env.setdefault("PREFECT_WORKER_PREFETCH_SECONDS", "5")
    # dlt's own log lines (logger `dlt`) go to the flow run's logs in the UI.
    worker_env.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "dlt")
    worker_env.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    # Each flow run is a new process that imports flows/, pipelines/ and sources/; without
    # bytecode (this machine kind sets PYTHONDONTWRITEBYTECODE) each one compiled them again:
    # ~0.25 s of every run's start (docs/benchmarks.md). __pycache__ is git-ignored.
    worker_env.pop("PYTHONDONTWRITEBYTECODE", None)
    return processes.start(
        WORKER,
        [_bin("prefect"), "worker", "start", "--pool", "production", "--name", "local-worker"],
        worker_env,
        cwd=PROJECT_DIR,
    )


def start_webhook_receiver() -> AlertingSettings:
    """The local Slack/PagerDuty stand-in (started if needed) as alerting settings."""
    port = _start_python_service(
        WEBHOOK_RECEIVER,
        "dev_stack.webhook_receiver",
        DEFAULT_RECEIVER_PORT,
        webhook_receiver.HEALTH_PATH,
    )
    base = f"http://127.0.0.1:{port}"
    return AlertingSettings(
        slack_webhook_url=base + webhook_receiver.SLACK_PATH,
        # not secret: the receiver records it so an operator sees a real Events v2 body
        pagerduty_integration_key="local-routing-key",
        pagerduty_events_url=base + webhook_receiver.PAGERDUTY_PATH,
    )


def up(deploy: bool = True, worker: bool = True) -> Stack:
    """Bring the whole local stack up; idempotent."""
    configure_runtime()
    notes: list[str] = []
    env = base_env()

    if _user_configured_oxr_key():
        oxr_base_url = os.environ.get("SOURCES__OPEN_EXCHANGE_RATES__BASE_URL", "configured")
        notes.append("OXR: using your configured app id (no sandbox started)")
    else:
        oxr_base_url = start_sandbox()
        env["SOURCES__OPEN_EXCHANGE_RATES__BASE_URL"] = oxr_base_url
        env["SOURCES__OPEN_EXCHANGE_RATES__API_KEY"] = DEFAULT_SANDBOX_APP_ID

    if _user_configured_products_dsn():
        postgres_address = "your configured DSN"
        notes.append("PostgreSQL: using your configured DSN (no cluster started)")
    else:
        cluster = start_postgres()
        postgres_address = f"{cluster.host}:{cluster.port}/{cluster.database}"
        env[PRODUCTS_DSN_VAR] = cluster.dsn

    api_url = start_prefect_server()
    env = prefect_setup.prefect_env(api_url, env)
    stack = Stack(
        prefect_api_url=api_url,
        prefect_ui_url=api_url.removesuffix("/api"),
        oxr_base_url=oxr_base_url,
        postgres_address=postgres_address,
        worker_env=env,
        notes=notes,
    )
    _write_shell_env(stack)
    alerts = start_webhook_receiver()
    notes.append(
        "Alerts: Slack and PagerDuty blocks point at the local receiver; what it gets is in "
        f"{webhook_receiver.default_record_file()}"
    )
    if deploy:
        _apply_and_deploy(env, alerts)
    if worker:
        start_worker(env)
    return stack


def _apply_and_deploy(env: dict[str, str], alerts: AlertingSettings | None = None) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # A settings context, not os.environ: it wins over any Prefect context already active in
    # this process (a test harness, a profile), so setup always lands on the stack's server.
    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
        prefect_setup.ensure_work_pools()
        prefect_setup.ensure_pipeline_concurrency_limits()
        alerting.ensure_silent_flow_runs_crash()
        if alerts is not None:
            alerting.apply(alerts)
    local_file = prefect_setup.write_local_prefect_file(
        PROJECT_DIR, data_dir() / "prefect" / "prefect.local.yaml"
    )
    prefect_setup.deploy_all(env, local_file)


def shell_env_file() -> Path:
    return data_dir() / "stack.env"


def _write_shell_env(stack: Stack) -> None:
    """`source .data/stack.env` gives a shell the venv, the stack's Prefect API and data folder.

    One data folder: it exports `DATA_PIPELINES_DATA_DIR` and `DLT_PROJECT_DIR`, never dlt's
    `DLT_DATA_DIR`/`DLT_LOCAL_DIR`. Those are derived from the data folder (by
    `configure_runtime()` for our commands, by the project's dlt run-context plugin, which
    `DLT_PROJECT_DIR` selects from any directory, for dlt's CLI), so setting another
    `DATA_PIPELINES_DATA_DIR` in that shell moves the bucket, dlt's state and the warehouse
    together; exported, they would keep the warehouse in this folder.
    `dlt pipeline products info` (or `trace`, `schema`, `drop`) finds the pipelines and the
    same warehouse file from any directory.
    """
    keep = ("PREFECT_API_URL", DATA_DIR_VAR, "DATA_PIPELINES_ENV", "PREFECT_HOME")
    lines = [f"export PATH={shlex.quote(str(Path(sys.executable).parent))}:$PATH"]
    lines += [f"export {k}={shlex.quote(stack.worker_env[k])}" for k in keep]
    lines.append(f"export DLT_PROJECT_DIR={shlex.quote(dlt_dirs()['DLT_PROJECT_DIR'])}")
    lines.append("unset DLT_DATA_DIR DLT_LOCAL_DIR  # derived from the data folder")
    lines.append("export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false")
    shell_env_file().write_text("\n".join(lines) + "\n")


def down() -> list[str]:
    """Stop worker, Prefect server, sandbox and PostgreSQL; data stays in the data folder."""
    stopped = []
    for name in (WORKER, PREFECT_SERVER, SANDBOX, WEBHOOK_RECEIVER):
        if processes.stop(name):
            stopped.append(name)
    if postgres.stop():
        stopped.append("postgres")
    return stopped


def status() -> dict[str, str]:
    """One line per service: running (pid) or stopped."""
    result = {}
    for name in (SANDBOX, PREFECT_SERVER, WORKER, WEBHOOK_RECEIVER):
        pid = processes.running_pid(name)
        result[name] = f"running (pid {pid})" if pid else "stopped"
    cluster = postgres.running()
    result["postgres"] = f"running on {cluster.host}:{cluster.port}" if cluster else "stopped"
    return result

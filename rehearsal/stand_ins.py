"""`make rehearse`: the production path end to end, on stand-ins on 127.0.0.1.

Production code runs unchanged; only configuration (`rehearsal_config.production_env`, the
secrets in moto's Secrets Manager) points it at the stand-ins this module starts:

- Snowflake: `rehearsal.snowflake_standin` (fakesnow's server; its patched gaps are listed
  there and in docs/rehearsal.md), reached by dlt's `snowflake` destination over the wire;
- S3 and Secrets Manager: moto's server; every secret is read by dlt's own provider;
- Snowpipe: `rehearsal.snowpipe_standin`, a separate process running the DDL's pipe COPY for
  each new object under `exchange-rates/`;
- Prefect: a fresh server, the `production` pool from `data-pipelines apply prefect`, `prefect
  deploy --all` from prefect.yaml as committed (Prefect variables point at a bare clone of
  HEAD), and a worker in a venv of production packages only, whose runs clone that commit and
  `uv pip install` requirements.txt as production's pull steps do;
- the OXR sandbox, PostgreSQL and the webhook receiver of the local stack.

Everything lives in `<data folder>/rehearsal/` and is recreated on each run (idempotent);
`stop()` (`data-pipelines rehearse --stop`) ends what a kept rehearsal left running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dev_stack import postgres, processes, stack
from dev_stack.oxr_sandbox import DEFAULT_SANDBOX_APP_ID
from pipelines.environment import DATA_DIR_VAR, PROJECT_DIR, data_dir
from rehearsal import standin_process
from rehearsal.config import (
    StandIns,
    admin_connection,
    aws_client,
    production_env,
    provision_aws,
)
from rehearsal.scenarios import FILLS_PRODUCTS_STAGING

MOTO = "rehearsal-moto"
SNOWFLAKE = "rehearsal-snowflake"
PIPE = "rehearsal-pipe"
# Two workers on the pool, each flow run in a fresh folder of its own (a process worker's
# temporary clone): production as a pool of fresh machines, not one shared data folder.
WORKERS = ("rehearsal-worker-1", "rehearsal-worker-2")
# started through the local stack's helpers, under the rehearsal's own run folder
STACK_SERVICES = (stack.SANDBOX, stack.PREFECT_SERVER, stack.WEBHOOK_RECEIVER)
SERVICES = (*WORKERS, PIPE, SNOWFLAKE, MOTO, *STACK_SERVICES)
TABLES = (
    "DLT.OPEN_EXCHANGE_RATES.CURRENCIES",
    "DLT.APPLICATION_DATA.PRODUCTS",
    "SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES",
    "SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_LATEST",
)


def rehearsal_dir() -> Path:
    """Resolved once from the user's data folder, before this process points it here."""
    return Path(os.environ.get("DATA_PIPELINES_REHEARSAL_DIR") or data_dir() / "rehearsal")


@dataclass
class Rehearsal:
    stand_ins: StandIns
    prefect_api_url: str
    commit: str
    # production_env + the Prefect API + the operator's own working folder: an operator's shell
    env: dict[str, str]
    notes: list[str] = field(default_factory=list)


def _use_rehearsal_folder(root: Path) -> None:
    """Pid/log files, PostgreSQL and Prefect's home of this process's helpers go under root."""
    os.environ["DATA_PIPELINES_REHEARSAL_DIR"] = str(root)
    os.environ[DATA_DIR_VAR] = str(root / "stack")


def stop() -> list[str]:
    """Stop whatever a rehearsal started (its own pid files only)."""
    _use_rehearsal_folder(rehearsal_dir())
    stopped = [name for name in SERVICES if processes.stop(name)]
    if postgres.stop():
        stopped.append("postgres")
    return stopped


def _run(argv: list[str], env: dict[str, str], what: str, timeout: float = 300) -> str:
    result = subprocess.run(
        argv, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit {result.returncode}): {argv}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _start_moto() -> str:
    port = processes.choose_port(MOTO, processes.free_port())
    processes.start(
        MOTO, [_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)], stack.base_env()
    )
    url = f"http://127.0.0.1:{port}"
    processes.wait_until(lambda: processes.http_ok(url), "moto", 60, processes.log_file(MOTO))
    return url


def staging_gate() -> Path:
    """While this file exists, the stand-in holds a products load right after it fills the
    staging table (the overlap scenario keeps a full refresh in its window with it)."""
    return rehearsal_dir() / "staging.gate"


def _start_snowflake(root: Path) -> int:
    """The stand-in, with its own environment's python; fails in seconds if it cannot serve."""
    port = processes.choose_port(SNOWFLAKE, processes.free_port())
    log = processes.log_file(SNOWFLAKE)
    since = standin_process.log_size(log)
    argv = standin_process.argv(
        port,
        *("--mirror", str(root / "mirror")),
        *("--hold-after", FILLS_PRODUCTS_STAGING, "--hold-file", str(staging_gate())),
    )
    processes.start(SNOWFLAKE, argv, stack.base_env(), standin_process.cwd())
    standin_process.wait_ready(
        port, lambda: None if processes.running_pid(SNOWFLAKE) else -1, log, 60, since
    )
    return port


def _bare_clone(root: Path) -> tuple[str, str, list[str]]:
    """A bare clone of this checkout (the 'remote' runs clone) and the commit to deploy."""
    notes = []
    commit = _run(["git", "rev-parse", "HEAD"], dict(os.environ), "git rev-parse").strip()
    if _run(["git", "status", "--porcelain"], dict(os.environ), "git status").strip():
        notes.append(f"uncommitted changes are NOT rehearsed: runs clone the commit {commit[:12]}")
    repository = root / "repository.git"
    _run(
        ["git", "clone", "--quiet", "--bare", str(PROJECT_DIR), str(repository)],
        dict(os.environ),
        "git clone --bare",
    )
    return repository.as_uri(), commit, notes


def _worker_venv(root: Path) -> Path:
    """A venv with production packages only, installed as production's worker does (uv)."""
    venv = root / "worker-venv"
    env = dict(os.environ, VIRTUAL_ENV=str(venv), UV_PYTHON_DOWNLOADS="never")
    _run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)], env, "uv venv")
    _run(
        ["uv", "pip", "install", "--quiet", "--requirements", "requirements.txt"],
        env,
        "uv pip install -r requirements.txt",
        timeout=600,
    )
    return venv


def start(progress: Callable[[str], None] = print) -> Rehearsal:
    """Start every stand-in, apply the DDL, set up Prefect and the worker; returns the handles."""
    root = rehearsal_dir()
    stop()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    _use_rehearsal_folder(root)
    started = time.monotonic()

    def step(message: str) -> None:
        progress(f"  [{time.monotonic() - started:5.0f}s] {message}")

    moto_url = _start_moto()
    step(f"moto (S3, Secrets Manager) on {moto_url}")
    snowflake_port = _start_snowflake(root)
    step(f"Snowflake stand-in on 127.0.0.1:{snowflake_port}")
    oxr_base_url = stack.start_sandbox()
    alerts = stack.start_webhook_receiver()
    cluster = stack.start_postgres()
    step(f"OXR sandbox, webhook receiver, PostgreSQL {cluster.host}:{cluster.port}")
    stand_ins = StandIns(
        data_dir=root / "production",
        snowflake_port=snowflake_port,
        moto_url=moto_url,
        oxr_base_url=oxr_base_url,
        oxr_app_id=DEFAULT_SANDBOX_APP_ID,
        products_dsn=cluster.dsn,
        slack_webhook_url=alerts.slack_webhook_url,
        pagerduty_events_url=alerts.pagerduty_events_url,
    )
    provision_aws(stand_ins)
    step(f"bucket s3://{stand_ins.bucket} and secrets in Secrets Manager")
    # the operator's commands (apply, verify, a CLI run) work in a folder of their own; the
    # workers' runs get none: each finds its own in its clone
    worker_base = production_env(stand_ins)
    env = dict(worker_base, **{DATA_DIR_VAR: str(root / "operator")})
    _run([_bin("data-pipelines"), "apply", "snowflake"], env, "data-pipelines apply snowflake")
    step("Snowflake DDL applied (010, 020) through `data-pipelines apply snowflake`")
    processes.start(
        PIPE,
        [
            sys.executable,
            "-m",
            "rehearsal.snowpipe_standin",
            "--bucket",
            stand_ins.bucket,
            "--mirror",
            str(root / "mirror"),
            "--interval",
            "2",
        ],
        env,
        PROJECT_DIR,
    )
    step("pipe stand-in polling the bucket")
    repository, commit, notes = _bare_clone(root)
    venv = _worker_venv(root)
    step(f"worker venv (production packages, uv) and bare clone at {commit[:12]}")
    api_url = stack.start_prefect_server()
    env = dict(env, PREFECT_API_URL=api_url, PREFECT_HOME=str(root / "prefect-client"))
    env.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"})
    cli = _bin("data-pipelines")
    _run(
        [cli, "apply", "prefect", "--git-repository", repository, "--git-commit", commit],
        env,
        "apply prefect",
    )
    _run([cli, "apply", "alerting"], env, "apply alerting")
    _run([_bin("prefect"), "--no-prompt", "deploy", "--all"], env, "prefect deploy --all")
    step(f"Prefect {api_url}: pool, variables, alerting blocks, deployments")
    worker_env = dict(
        worker_base, VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}"
    )
    worker_env.update(
        {
            k: env[k]
            for k in (
                "PREFECT_API_URL",
                "PREFECT_HOME",
                "PREFECT_SERVER_ANALYTICS_ENABLED",
                "DO_NOT_TRACK",
            )
        }
    )
    worker_env.update(
        {
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "PREFECT_LOGGING_EXTRA_LOGGERS": "dlt",
        }
    )
    worker_env.pop("PYTHONPATH", None)
    for worker in WORKERS:
        processes.start(
            worker,
            [
                str(venv / "bin" / "prefect"),
                *("worker", "start", "--pool", "production"),
                "--name",
                worker,
            ],
            worker_env,
            root,
        )
    step(f"{len(WORKERS)} workers started from the production venv (a fresh folder per run)")
    return Rehearsal(stand_ins, api_url, commit, env, notes)


def wait_for_pipe(stand_ins: StandIns, query: Callable[[str], int], timeout: float = 120) -> int:
    """Wait until the pipe loaded one row per object under the prefix; returns the objects."""
    s3 = aws_client(stand_ins, "s3")
    deadline = time.monotonic() + timeout
    objects = 0
    while time.monotonic() < deadline:
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=stand_ins.bucket, Prefix="exchange-rates/"
        )
        objects = sum(len(page.get("Contents", [])) for page in pages)
        try:
            loaded = query("select count(distinct _file_name) from " + TABLES[2])
        except Exception:  # the table may not be readable yet
            loaded = -1
        if objects and loaded == objects:
            return objects
        time.sleep(2)
    return objects


def admin_query(stand_ins: StandIns) -> Callable[[str], int]:
    """One integer from SQL on the stand-in, as an operator (admin user) over the wire."""

    def run(sql: str) -> int:
        connection = admin_connection(stand_ins)
        try:
            return int(connection.cursor().execute(sql).fetchone()[0])
        finally:
            connection.close()

    return run


def verify_output(rehearsal: Rehearsal) -> tuple[int, str]:
    """`data-pipelines verify` in production mode, as the operator runs it."""
    result = subprocess.run(
        [_bin("data-pipelines"), "verify"],
        cwd=PROJECT_DIR,
        env=rehearsal.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result.returncode, result.stdout + result.stderr[-2000:]

"""What a production flow run does before the flow starts, on a real Prefect server.

`prefect.yaml` as committed is deployed with `prefect deploy --all` after the project's own
setup (`ensure_work_pools`, `ensure_git_settings`); then the pull steps the server stored for a
deployment run exactly as the engine runs them on a worker: clone the pinned commit from a
local bare copy of this repository, install its locked production dependencies into a virtual
environment that, like every uv-built one, has no pip. The same environment then imports every
production module: the production dependency set is complete, and holds no local-stack package.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from environments import ENV_VAR
from infra import prefect_setup

pytestmark = pytest.mark.usefixtures("prefect_server")

# Installed for the local stack only (dependency group `local`); never on a production worker.
LOCAL_ONLY_LIBRARIES = ("duckdb", "psycopg", "pycountry", "currency_converter")
# The project's local packages: in the checkout, but no production module imports them.
LOCAL_PACKAGES = ("local_runtime", "dev_stack", "rehearsal")
LOCAL_ONLY_MODULES = LOCAL_ONLY_LIBRARIES + LOCAL_PACKAGES
PRODUCTION_PACKAGES = (
    "sources",
    "pipelines",
    "verify",
    "flows",
    "infra",
    "environments",
    "data_pipelines_cli",
)
# The local environment is imported only when chosen; it is the one door to the local stack.
NOT_IN_PRODUCTION = ("environments.local",)


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """prefect.yaml deployed as committed; the repository is a bare copy of HEAD."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    base = tmp_path_factory.mktemp("production-deploy")
    repository = base / "data-pipelines.git"
    _git("clone", "--quiet", "--bare", str(prefect_setup.PROJECT_DIR), str(repository), cwd=base)
    commit = prefect_setup.current_commit()
    prefect_setup.ensure_work_pools()
    prefect_setup.ensure_git_settings(str(repository), commit, token=None)
    prefect_setup.deploy_all(prefect_setup.prefect_env(PREFECT_API_URL.value()))
    with get_client(sync_client=True) as client:
        deployments = {
            client.read_flow(d.flow_id).name: d
            for d in client.read_deployments()
            if d.work_pool_name == "production"
        }
        pool = client.read_work_pool("production")
    return {"commit": commit, "deployments": deployments, "pool": pool, "base": base}


def test_every_deployed_run_loads_into_production(deployed: dict[str, Any]) -> None:
    from prefect.workers.process import ProcessJobConfiguration

    # every deployment of prefect.yaml, deployed (no count written here)
    assert len(deployed["deployments"]) == len(prefect_setup.load_prefect_file()["deployments"])
    template = deployed["pool"].base_job_template
    for name, deployment in deployed["deployments"].items():
        # The worker's own code merges the pool's template with the deployment's variables.
        job = asyncio.run(
            ProcessJobConfiguration.from_template_and_values(template, {**deployment.job_variables})
        )
        assert job.env.get(ENV_VAR) == "production", f"{name} would run {job.env.get(ENV_VAR)}"


def test_pull_steps_clone_the_pinned_commit_and_install_without_pip(
    deployed: dict[str, Any],
) -> None:
    from prefect.settings import PREFECT_API_URL

    deployment = deployed["deployments"]["products-daily"]
    base: Path = deployed["base"]
    # A uv-built environment, as on the worker: no pip in it.
    venv = base / "worker-venv"
    subprocess.run(
        [shutil.which("uv") or "uv", "venv", "--quiet", "--python", sys.executable, str(venv)],
        check=True,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )
    python = venv / "bin" / "python"
    assert subprocess.run([python, "-c", "import pip"], capture_output=True).returncode != 0

    run_dir = base / "flow-run"
    run_dir.mkdir()
    # The engine's own step runner, on the steps the server stored for the deployment.
    runner = (
        "import asyncio, json, sys\n"
        "from prefect.deployments.steps.core import run_steps\n"
        "out = asyncio.run(run_steps(json.loads(sys.argv[1])))\n"
        "print('OUTPUT=' + json.dumps({k: v for k, v in out.items() if k == 'directory'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", runner, json.dumps(deployment.pull_steps)],
        cwd=run_dir,
        env={**prefect_setup.prefect_env(PREFECT_API_URL.value()), "VIRTUAL_ENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = json.loads(result.stdout.rsplit("OUTPUT=", 1)[1])
    checkout = run_dir / output["directory"]
    assert _git("rev-parse", "HEAD", cwd=checkout) == deployed["commit"]

    # Every production module imports with only what the pull step installed.
    probe = (
        "import importlib, json, pkgutil, sys\n"
        f"packages = {PRODUCTION_PACKAGES!r}\n"
        "names = []\n"
        "for package in packages:\n"
        "    names.append(package)\n"
        "    module = importlib.import_module(package)\n"
        "    names += [m.name for m in pkgutil.walk_packages(module.__path__, package + '.')]\n"
        f"names = [n for n in names if n not in {NOT_IN_PRODUCTION!r}]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps({'imported': names, 'loaded': sorted(sys.modules)}))\n"
    )
    imported = subprocess.run(
        [python, "-c", probe],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout), "VIRTUAL_ENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert imported.returncode == 0, imported.stderr[-3000:]
    report = json.loads(imported.stdout.splitlines()[-1])
    for module in ("flows.application_tables", "infra.snowflake", "environments.production"):
        assert module in report["imported"]
    leaked = {m.split(".")[0] for m in report["loaded"]} & set(LOCAL_ONLY_MODULES)
    assert not leaked, f"production modules import local-stack packages: {sorted(leaked)}"
    for module in LOCAL_ONLY_LIBRARIES:
        check = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
        assert check.returncode != 0, f"{module} is installed on the production worker"

"""Static checks of the platform files: prefect.yaml, the CI/CD workflow, requirements.txt."""

from __future__ import annotations

import importlib
import inspect
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from croniter import croniter

from infra.prefect_setup import PREFECT_FILE, PROJECT_DIR, load_prefect_file

WORKFLOW = PROJECT_DIR / ".github" / "workflows" / "ci-cd.yml"
EXPECTED = {
    "exchange-rates-daily": ("flows/exchange_rates.py:exchange_rates_daily_flow", "0 9 * * *"),
    "exchange-rates-backfill": ("flows/exchange_rates.py:exchange_rates_backfill_flow", None),
    "currencies-weekly": ("flows/currencies.py:currencies_weekly_flow", "0 0 * * 0"),
    "products-daily": ("flows/products.py:products_daily_flow", "0 6 * * *"),
    "products-full-refresh": ("flows/products.py:products_full_refresh_flow", None),
}
# Beside the five pipelines: the scheduled verification, tagged dlt so that it alerts too.
PLATFORM = {
    "data-freshness": ("flows/data_freshness.py:data_freshness_flow", "0 10 * * *"),
}


def load_flow(entrypoint: str) -> Any:
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def deployments() -> list[dict[str, Any]]:
    return load_prefect_file()["deployments"]


def test_five_deployments_with_the_seed_names() -> None:
    found = {load_flow(d["entrypoint"]).name: d for d in deployments()}
    assert set(found) == set(EXPECTED) | set(PLATFORM)
    for flow_name, (entrypoint, cron) in {**EXPECTED, **PLATFORM}.items():
        deployment = found[flow_name]
        # `prefect deployment run FLOW/production` must address it
        assert deployment["name"] == "production"
        assert deployment["entrypoint"] == entrypoint
        assert "dlt" in deployment["tags"]
        assert deployment["work_pool"]["name"] == "production"
        assert deployment["description"]
        assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
        schedules = deployment.get("schedules") or []
        if cron is None:
            assert schedules == []
        else:
            assert [s["cron"] for s in schedules] == [cron]
            assert all(s["timezone"] == "UTC" for s in schedules)
            assert croniter.is_valid(cron)


@pytest.mark.parametrize("deployment", deployments(), ids=lambda d: d["entrypoint"])
def test_parameters_match_the_flow_signature(deployment: dict[str, Any]) -> None:
    flow = load_flow(deployment["entrypoint"])
    signature = inspect.signature(flow.fn)
    parameters = deployment.get("parameters") or {}
    assert set(parameters) <= set(signature.parameters)
    for name, value in parameters.items():
        assert signature.parameters[name].default == value, name


def test_backfill_defaults_follow_the_seed() -> None:
    flow = load_flow(EXPECTED["exchange-rates-backfill"][0])
    signature = inspect.signature(flow.fn)
    assert signature.parameters["start_date"].default == "2026-01-01"
    assert signature.parameters["end_date"].default is None


def test_production_pull_clones_and_installs_without_secrets_in_the_file() -> None:
    config = load_prefect_file()
    steps = [next(iter(step)) for step in config["pull"]]
    assert steps == [
        "prefect.deployments.steps.git_clone",
        "prefect.deployments.steps.run_shell_script",
    ]
    clone = config["pull"][0]["prefect.deployments.steps.git_clone"]
    assert clone["access_token"].startswith("{{ prefect.blocks.secret.")

    # any secret-looking setting must be a reference resolved at run time, never a literal
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if any(word in str(key).lower() for word in ("token", "password", "secret")):
                    assert isinstance(value, str) and value.startswith("{{ prefect.blocks."), key
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    assert "api_key" not in PREFECT_FILE.read_text().lower()
    # job variables carry settings, never secrets
    for deployment in config["deployments"]:
        env = deployment["work_pool"]["job_variables"]["env"]
        assert set(env) == {"DATA_PIPELINES_ENV"}


def test_requirements_txt_is_the_lock_file_exported() -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH: scripts/setup.sh installs it")
    exported = subprocess.run(
        [uv, "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "--quiet"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    committed = (PROJECT_DIR / "requirements.txt").read_text()

    def pins(text: str) -> list[str]:
        return [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]

    fix = "uv export --frozen --no-dev --no-hashes --no-emit-project -o requirements.txt"
    assert pins(committed) == pins(exported), f"requirements.txt is stale; run: {fix}"


def lint_workflow(path: Path) -> subprocess.CompletedProcess[str]:
    checker = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run(
        [str(checker), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_workflow_passes_the_github_workflow_schema() -> None:
    result = lint_workflow(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_lint_can_fail(tmp_path: Path) -> None:
    broken = yaml.safe_load(WORKFLOW.read_text())
    broken["jobs"]["deploy"]["runs-on"] = {"unexpected": ["shape"]}
    broken["jobs"]["deploy"]["needs"] = 42
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    assert lint_workflow(path).returncode != 0


def test_workflow_deploys_only_after_tests_on_main_with_repository_secrets() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1: on -> True
    paths = triggers["push"]["paths"]
    for watched in ("flows/**", "pipelines/**", "sources/**", "pyproject.toml", "prefect.yaml"):
        assert watched in paths
    assert triggers["push"]["branches"] == ["main"]
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "test"
    assert "refs/heads/main" in deploy["if"]
    assert deploy["env"]["PREFECT_API_URL"] == "${{ secrets.PREFECT_API_URL }}"
    assert deploy["env"]["PREFECT_API_KEY"] == "${{ secrets.PREFECT_API_KEY }}"
    commands = " ".join(step.get("run", "") for step in deploy["steps"])
    assert "uv sync --frozen" in commands and "prefect --no-prompt deploy --all" in commands
    test_commands = " ".join(step.get("run", "") for step in workflow["jobs"]["test"]["steps"])
    assert "make test" in test_commands


def test_runs_clone_the_pinned_commit_never_a_branch_head() -> None:
    clone = load_prefect_file()["pull"][0]["prefect.deployments.steps.git_clone"]
    assert clone["commit_sha"] == "{{ prefect.variables.git_commit }}"
    assert "branch" not in clone


def test_local_stack_file_differs_only_in_pull_steps_and_environment(tmp_path: Path) -> None:
    from infra.prefect_setup import write_local_prefect_file

    production = load_prefect_file()
    local = yaml.safe_load(write_local_prefect_file(PROJECT_DIR, tmp_path / "p.yaml").read_text())
    assert local["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_DIR)}}
    ]
    for prod, loc in zip(production["deployments"], local["deployments"], strict=True):
        assert prod["work_pool"]["job_variables"]["env"] == {"DATA_PIPELINES_ENV": "production"}
        assert loc["work_pool"]["job_variables"]["env"] == {"DATA_PIPELINES_ENV": "local"}
        loc["work_pool"] = prod["work_pool"]
        assert loc == prod

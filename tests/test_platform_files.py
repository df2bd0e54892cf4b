"""Static checks of the platform files: prefect.yaml, the CI/CD workflow, requirements.txt."""

from __future__ import annotations

import importlib
import inspect
import re
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
# The flows the design names (their deployments must exist as written); a pipeline added to the
# registry brings more, which tests/test_registry.py matches one-to-one.
EXPECTED = {
    "exchange-rates-daily": ("flows/exchange_rates.py:exchange_rates_daily_flow", "0 9 * * *"),
    "exchange-rates-backfill": ("flows/exchange_rates.py:exchange_rates_backfill_flow", None),
    "currencies-weekly": ("flows/currencies.py:currencies_weekly_flow", "0 0 * * 0"),
    "products-daily": ("flows/application_tables.py:products_daily_flow", "0 6 * * *"),
    "products-full-refresh": ("flows/application_tables.py:products_full_refresh_flow", None),
}
# Beside the pipelines: the scheduled verification, tagged dlt so that it alerts too.
PLATFORM = {
    "data-freshness": ("flows/data_freshness.py:data_freshness_flow", "0 10 * * *"),
}


def load_flow(entrypoint: str) -> Any:
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def deployments() -> list[dict[str, Any]]:
    return load_prefect_file()["deployments"]


def test_the_designs_deployments_with_their_names_and_schedules() -> None:
    found = {load_flow(d["entrypoint"]).name: d for d in deployments()}
    assert set(EXPECTED) | set(PLATFORM) <= set(found)
    for flow_name, (entrypoint, cron) in {**EXPECTED, **PLATFORM}.items():
        deployment = found[flow_name]
        assert deployment["entrypoint"] == entrypoint
        schedules = deployment.get("schedules") or []
        assert [s["cron"] for s in schedules] == ([] if cron is None else [cron])


def test_every_deployment_is_addressable_alerting_and_one_at_a_time() -> None:
    for deployment in deployments():
        # `prefect deployment run FLOW/production` must address it
        assert deployment["name"] == "production"
        assert "dlt" in deployment["tags"]
        assert deployment["work_pool"]["name"] == "production"
        assert deployment["description"]
        assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
        for schedule in deployment.get("schedules") or []:
            assert schedule["timezone"] == "UTC"
            assert croniter.is_valid(schedule["cron"])


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


def _triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    return workflow[True] if True in workflow else workflow["on"]  # YAML 1.1: on -> True


def test_workflow_deploys_only_after_tests_on_main_with_repository_secrets() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = _triggers(workflow)
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


def _github_glob(pattern: str) -> re.Pattern[str]:
    """GitHub's path filter glob: `**` crosses folders, `*` does not."""
    regex = re.escape(pattern).replace(r"\*\*", "\0").replace(r"\*", "[^/]*")
    return re.compile(regex.replace("\0", ".*") + "$")


def _triggers_on(filters: dict[str, Any], path: str) -> bool:
    if "paths" in filters:
        return any(_github_glob(p).match(path) for p in filters["paths"])
    return not any(_github_glob(p).match(path) for p in filters.get("paths-ignore", []))


def test_every_file_a_run_or_a_deploy_executes_triggers_the_workflow() -> None:
    triggers = _triggers(yaml.safe_load(WORKFLOW.read_text()))
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
    ).stdout.split()
    # Read by people only (docs, markdown) or by nobody at run time (benchmarks, .gitignore).
    inert = re.compile(r"(docs/.*|.*\.md|benchmarks/.*|\.gitignore)$")
    must_trigger = [path for path in tracked if not inert.match(path)] + [
        "data_pipelines_cli/main.py",
        "scripts/setup.sh",
        "Makefile",
        ".dlt/config.toml",
        "Dockerfile",
        "a_folder_added_later/module.py",
    ]
    for event in ("push", "pull_request"):
        missed = [p for p in must_trigger if not _triggers_on(triggers[event], p)]
        assert not missed, f"{event} ignores files a run executes: {missed}"
        assert not _triggers_on(triggers[event], "docs/production.md")


def test_deploy_pins_runs_to_the_tested_commit_and_applies_the_platform() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    test_job, deploy = workflow["jobs"]["test"], workflow["jobs"]["deploy"]

    def checkout_ref(job: dict[str, Any]) -> str:
        step = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout"))
        return step.get("with", {}).get("ref", "${{ github.sha }}")

    # Both jobs check out the same commit, and the workers clone exactly that one.
    assert checkout_ref(test_job) == checkout_ref(deploy) == "${{ github.sha }}"
    runs = [" ".join(step.get("run", "").split()) for step in deploy["steps"]]
    order = {}
    for index, command in enumerate(runs):
        if "data-pipelines apply prefect" in command:
            assert '--git-commit "${{ github.sha }}"' in command
            assert "--git-token" not in command  # from the environment, never argv
            order["prefect"] = index
        elif "data-pipelines apply alerting" in command:
            order["alerting"] = index
        elif "prefect --no-prompt deploy --all" in command:
            order["deploy"] = index
        elif "uv sync" in command:
            assert "--no-dev" in command  # production installs no local-stack package
            order["install"] = index
    assert order["install"] < order["prefect"] < order["alerting"] < order["deploy"], order
    assert deploy["env"]["DATA_PIPELINES_GIT_TOKEN"] == "${{ secrets.DATA_PIPELINES_GIT_TOKEN }}"


def test_ci_tests_the_oldest_and_newest_supported_python() -> None:
    import tomllib

    workflow = yaml.safe_load(WORKFLOW.read_text())
    matrix = workflow["jobs"]["test"]["strategy"]["matrix"]["python-version"]
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11,<3.14"
    assert matrix == ["3.11", "3.13"]
    assert workflow["jobs"]["test"]["env"]["UV_PYTHON"] == "${{ matrix.python-version }}"


def test_nothing_advertises_dlts_show_command() -> None:
    """`dlt pipeline <name> show` needs dlt[hub] (commercial), marimo and ibis: not ours to offer.

    The docs point at `info`, `trace`, `schema` and `data-pipelines query` instead (README).
    """
    advertised = re.compile(r"dlt pipeline \S+ show\b|`show`, `(drop|trace)`")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
    ).stdout.split()
    found = [
        path
        for path in tracked
        if path.endswith((".md", ".py", ".toml", ".sh", ".yaml", ".yml", ".env"))
        and path != "tests/test_platform_files.py"
        and (PROJECT_DIR / path).is_file()
        and advertised.search((PROJECT_DIR / path).read_text(encoding="utf-8"))
    ]
    assert found == []

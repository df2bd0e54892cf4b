"""Prefect platform as code: work pools, git settings for the pull step, deployments.

Everything here is idempotent: applying twice leaves one of each, and a changed definition
updates what exists. The same functions set up the local stack and a production server
(`PREFECT_API_URL`/`PREFECT_API_KEY` decide which).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines.environment import ENV_VAR, PROJECT_DIR
from pipelines.names import pipeline_concurrency_tag

PREFECT_FILE = PROJECT_DIR / "prefect.yaml"
GIT_TOKEN_BLOCK = "data-pipelines-git-token"


@dataclass(frozen=True)
class WorkPoolSpec:
    name: str
    type: str
    description: str
    concurrency_limit: int | None = None
    base_job_template: Path | None = None  # None: the worker type's default template

    def job_template(self) -> dict[str, Any]:
        import json

        if self.base_job_template is not None:
            return json.loads(self.base_job_template.read_text())
        from prefect.workers.process import ProcessWorker

        return ProcessWorker.get_default_base_job_template() if self.type == "process" else {}


KUBERNETES_JOB_TEMPLATE = PROJECT_DIR / "infra" / "prefect" / "kubernetes-work-pool.json"
# `production` is a process pool: one machine, flows run as child processes of its workers.
# `production-k8s` runs each flow run as a Kubernetes Job (docs/deployments.md): teams that
# outgrow one machine point the deployments' work_pool at it. Both are created, each with its
# concurrency limit; a pool is *in service* when a deployment in prefect.yaml runs in it
# (`pools_in_service`). A pool out of service is created paused, its description says why, and
# the work-pool alerts do not watch it: no worker is meant to poll it, so it is not shown Not
# Ready (red) in the UI, nor paged on.
WORK_POOLS: tuple[WorkPoolSpec, ...] = (
    WorkPoolSpec(
        name="production",
        type="process",
        description="data-pipelines: dlt flows run as processes of the worker",
        concurrency_limit=4,
    ),
    WorkPoolSpec(
        name="production-k8s",
        type="kubernetes",
        description="data-pipelines: each flow run a Kubernetes Job "
        "(infra/prefect/kubernetes-work-pool.json)",
        concurrency_limit=4,
        base_job_template=KUBERNETES_JOB_TEMPLATE,
    ),
)
WORK_POOL_NAMES: tuple[str, ...] = tuple(pool.name for pool in WORK_POOLS)


# Ends the description of a pool this project paused because no deployment runs in it; `apply`
# resumes only a pool paused so (an operator's pause, e.g. for maintenance, stays).
OUT_OF_SERVICE_MARK = "Paused by `data-pipelines apply prefect`:"


def out_of_service_description(spec: WorkPoolSpec) -> str:
    return (
        f"{spec.description}. {OUT_OF_SERVICE_MARK} no deployment in prefect.yaml runs in this "
        "pool, so no worker is meant to poll it (nor is it alerted on). To run here, set the "
        f"deployments' work_pool.name to {spec.name} and run `data-pipelines apply prefect` "
        "again: it resumes the pool."
    )


def pools_in_service(path: Path = PREFECT_FILE) -> tuple[str, ...]:
    """The work pools prefect.yaml's deployments run in (the local stack deploys the same)."""
    deployments = load_prefect_file(path).get("deployments") or []
    return tuple(sorted({d["work_pool"]["name"] for d in deployments if d.get("work_pool")}))


def ensure_work_pools(
    pools: tuple[WorkPoolSpec, ...] = WORK_POOLS, in_service: tuple[str, ...] | None = None
) -> list[str]:
    """Create or update each work pool; returns what was done, one line per pool.

    A pool no deployment runs in (`in_service`, by default `pools_in_service()`) is created or
    put paused, with a description that says why; one that deployments run in again is resumed
    if this function paused it.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    serving = set(pools_in_service() if in_service is None else in_service)
    done = []
    with get_client(sync_client=True) as client:
        for spec in pools:
            try:
                existing = client.read_work_pool(spec.name)
            except ObjectNotFound:
                existing = None
            used = spec.name in serving
            description = spec.description if used else out_of_service_description(spec)
            if existing is None:
                client.create_work_pool(
                    WorkPoolCreate(
                        name=spec.name,
                        type=spec.type,
                        description=description,
                        concurrency_limit=spec.concurrency_limit,
                        base_job_template=spec.job_template(),
                        is_paused=not used,
                    )
                )
                done.append(
                    f"work pool {spec.name!r} ({spec.type}) created"
                    + ("" if used else ", paused: no deployment runs in it")
                )
            elif existing.type != spec.type:
                raise RuntimeError(
                    f"Work pool {spec.name!r} exists with type {existing.type!r}, expected "
                    f"{spec.type!r}: delete it (prefect work-pool delete {spec.name}) and re-apply."
                )
            else:
                paused_here = existing.is_paused and OUT_OF_SERVICE_MARK in (
                    existing.description or ""
                )
                if not used:
                    paused, note = True, ", paused: no deployment runs in it"
                elif paused_here:
                    paused, note = False, ", resumed: deployments run in it now"
                else:  # in service; an operator's pause stays
                    paused = None
                    note = (
                        f", paused by hand: left paused (prefect work-pool resume {spec.name})"
                        if existing.is_paused
                        else ""
                    )
                client.update_work_pool(
                    spec.name,
                    WorkPoolUpdate(
                        description=description,
                        concurrency_limit=spec.concurrency_limit,
                        # sent only when it changes (an unset field is left as it is)
                        **({} if paused is None else {"is_paused": paused}),
                        # a template kept in the repository lands on every apply; a process
                        # pool keeps the one it has (an operator's edits in the UI)
                        **(
                            {"base_job_template": spec.job_template()}
                            if spec.base_job_template is not None
                            else {}
                        ),
                    ),
                )
                done.append(f"work pool {spec.name!r} ({spec.type}) up to date{note}")
    return done


def ensure_pipeline_concurrency_limits(pipelines: tuple[str, ...] | None = None) -> list[str]:
    """One global concurrency limit per dlt pipeline of the registry, `dlt-pipeline:<name>`, 1.

    Every run of a pipeline takes its slot, leased, on the Prefect API it talks to
    (environments/run_guard.py): the one place every worker of the pool sees, so two runs of
    one pipeline never load at once, whichever machines or entry points started them. Also
    deletes the task tag limits of the same names that earlier versions created (a tag limit
    would hold each task as well, and outlived crashed runs on a fixed lease). Idempotent.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from pipelines.registry import PIPELINES

    done = []
    with get_client(sync_client=True) as client:
        for name in PIPELINES if pipelines is None else pipelines:
            limit = pipeline_concurrency_tag(name)
            try:
                existing = client.read_global_concurrency_limit_by_name(limit)
            except ObjectNotFound:
                existing = None
            client.upsert_global_concurrency_limit_by_name(limit, 1)  # sets the limit
            if existing is None:
                done.append(f"global concurrency limit {limit!r} created (limit 1)")
            elif existing.limit != 1 or not existing.active:
                from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

                client.update_global_concurrency_limit(
                    limit, GlobalConcurrencyLimitUpdate(active=True)
                )
                done.append(f"global concurrency limit {limit!r} reset to limit 1, active")
            else:
                done.append(f"global concurrency limit {limit!r} up to date (limit 1)")
            try:
                client.delete_concurrency_limit_by_tag(limit)
                done.append(f"task tag limit {limit!r} of earlier versions deleted")
            except ObjectNotFound:
                pass
    return done


def current_commit(checkout: Path = PROJECT_DIR) -> str:
    """The commit checked out at `checkout` (what an operator deploying from it has tested)."""
    result = subprocess.run(
        ["git", "rev-parse", "--verify", "HEAD^{commit}"],
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"Cannot tell which commit to deploy: {checkout} is not a git checkout "
            f"({result.stderr.strip()}); pass --git-commit SHA."
        )
    return result.stdout.strip()


def ensure_git_settings(repository: str, commit: str, token: str | None) -> list[str]:
    """The production pull step's repository, the exact commit to run, and a private token.

    Runs clone a commit, never a branch head: what runs is what CI tested (its deploy job
    passes the tested commit), and a push that has not passed the tests never reaches a worker.
    """
    from prefect.blocks.system import Secret
    from prefect.variables import Variable

    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise ValueError(
            f"--git-commit must be a full 40-character commit SHA, got {commit!r}: "
            "pass `git rev-parse HEAD` of the tested checkout."
        )
    Variable.set("git_repository", repository, overwrite=True)
    Variable.set("git_commit", commit, overwrite=True)
    # An empty token means "clone without credentials" (a public repository).
    Secret(value=token or "").save(GIT_TOKEN_BLOCK, overwrite=True)
    return [
        f"variable git_repository = {repository}",
        f"variable git_commit = {commit}",
        f"secret block {GIT_TOKEN_BLOCK} {'set' if token else 'empty (public repository)'}",
    ]


def load_prefect_file(path: Path = PREFECT_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of prefect.yaml, addressed as operators do: `FLOW/DEPLOYMENT`."""

    full_name: str
    tags: tuple[str, ...]
    parameters: dict[str, Any]
    entrypoint: str = ""
    schedules: tuple[dict[str, Any], ...] = ()

    @property
    def flow_name(self) -> str:
        return self.full_name.split("/", 1)[0]


def entrypoint_module(entrypoint: str) -> tuple[str, str]:
    """`flows/currencies.py:currencies_weekly_flow` -> (`flows.currencies`, the attribute)."""
    path, attribute = entrypoint.rsplit(":", 1)
    return path.removesuffix(".py").replace("/", "."), attribute


def load_entrypoint(entrypoint: str) -> Any:
    """The flow an entrypoint names, imported as its module (as Prefect's worker loads it)."""
    import importlib

    module, attribute = entrypoint_module(entrypoint)
    return getattr(importlib.import_module(module), attribute)


def flow_name_of(entrypoint: str) -> str:
    """The flow's name, read from its decorator without importing the module when it can be;
    flows generated from the registry (flows/application_tables.py) are imported."""
    from prefect.flows import load_flow_arguments_from_entrypoint

    try:
        return str(load_flow_arguments_from_entrypoint(str(PROJECT_DIR / entrypoint))["name"])
    except (ValueError, KeyError, AttributeError):
        return str(load_entrypoint(entrypoint).name)


def deployments(path: Path = PREFECT_FILE) -> list[DeploymentSpec]:
    """The deployments prefect.yaml defines, in file order."""
    specs = []
    for deployment in load_prefect_file(path)["deployments"]:
        entrypoint = deployment["entrypoint"]
        specs.append(
            DeploymentSpec(
                full_name=f"{flow_name_of(entrypoint)}/{deployment['name']}",
                tags=tuple(deployment.get("tags") or ()),
                parameters=dict(deployment.get("parameters") or {}),
                entrypoint=entrypoint,
                schedules=tuple(deployment.get("schedules") or ()),
            )
        )
    return specs


def write_local_prefect_file(checkout: Path, target: Path) -> Path:
    """prefect.yaml for the local stack: the checkout instead of a clone, and the local env.

    Only the pull steps and the job variables' DATA_PIPELINES_ENV differ from production.
    """
    config = load_prefect_file()
    config["pull"] = [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(checkout)}}
    ]
    for deployment in config["deployments"]:
        job_variables = deployment["work_pool"].setdefault("job_variables", {})
        job_variables.setdefault("env", {})[ENV_VAR] = "local"
    target.parent.mkdir(parents=True, exist_ok=True)
    header = "# Generated by `data-pipelines up` from prefect.yaml: do not edit.\n"
    target.write_text(header + yaml.safe_dump(config, sort_keys=False))
    return target


def deploy_all(env: Mapping[str, str], prefect_file: Path | None = None) -> str:
    """`prefect deploy --all` from the project root, as an operator would run it."""
    argv = [str(Path(sys.executable).with_name("prefect")), "--no-prompt", "deploy", "--all"]
    if prefect_file is not None:
        argv += ["--prefect-file", str(prefect_file)]
    result = subprocess.run(
        argv, cwd=PROJECT_DIR, env=dict(env), capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"prefect deploy --all failed (exit {result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


def prefect_env(api_url: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for Prefect clients that talk to `api_url`, offline and quiet."""
    env = dict(base if base is not None else os.environ)
    env.update(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
    )
    return env

"""The Kubernetes work pool, checked offline with Prefect's and prefect-kubernetes's own code.

The template is created as a pool by `prefect work-pool create --type kubernetes` on a real
Prefect server; then, for each deployment in prefect.yaml, prefect-kubernetes's worker code builds
its job configuration from the stored template and the deployment's job variables and prepares
it for a flow run: the Job manifest it would submit to the cluster. No cluster is needed.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from infra import prefect_setup

pytestmark = pytest.mark.usefixtures("prefect_server")

TEMPLATE = prefect_setup.PROJECT_DIR / "infra" / "prefect" / "kubernetes-work-pool.json"
DOCKERFILE = prefect_setup.PROJECT_DIR / "Dockerfile"
POOL = "data-pipelines-k8s"
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|PRIVATE|DSN", re.IGNORECASE)


@pytest.fixture(scope="module")
def pool() -> Any:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("prefect")),
            "work-pool",
            "create",
            POOL,
            "--type",
            "kubernetes",
            "--base-job-template",
            str(TEMPLATE),
            "--overwrite",
        ],
        env=prefect_setup.prefect_env(PREFECT_API_URL.value()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with get_client(sync_client=True) as client:
        return client.read_work_pool(POOL)


def test_the_server_accepts_the_template_as_a_kubernetes_pool(pool: Any) -> None:
    assert pool.type == "kubernetes"
    assert pool.base_job_template == json.loads(TEMPLATE.read_text())


def _manifest(template: dict[str, Any], deployment: dict[str, Any]) -> dict[str, Any]:
    from prefect.client.schemas.objects import Flow, FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    flow = Flow(name=deployment["entrypoint"].split(":")[1])
    flow_run = FlowRun(flow_id=flow.id, name="calm-otter")
    configuration = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(
            template, deployment["work_pool"].get("job_variables") or {}
        )
    )
    configuration.prepare_for_flow_run(flow_run, None, flow)
    return configuration.job_manifest


@pytest.mark.parametrize(
    "deployment",
    prefect_setup.load_prefect_file()["deployments"],
    ids=lambda d: d["entrypoint"].split(":")[1],
)
def test_each_deployment_renders_to_a_production_job(pool: Any, deployment: dict[str, Any]) -> None:
    manifest = _manifest(pool.base_job_template, deployment)
    assert manifest["kind"] == "Job" and manifest["metadata"]["namespace"] == "data-pipelines"
    assert manifest["spec"]["backoffLimit"] == 0  # Prefect retries, not Kubernetes
    pod = manifest["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "data-pipelines"  # IRSA: Secrets Manager and bucket
    assert pod["restartPolicy"] == "Never"
    [container] = pod["containers"]
    assert container["image"] == "ghcr.io/acme/data-pipelines:latest"
    assert container["args"] == ["prefect", "flow-run", "execute"]
    # dlt's working folder is scratch on the pod's disk: a 10M-row full refresh writes ~280 MB
    # of parquet (docs/benchmarks.md), so the pod asks for room and is evicted past twice that.
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1Gi"},
        "limits": {"memory": "2Gi", "ephemeral-storage": "2Gi"},
    }
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["DATA_PIPELINES_ENV"] == "production"
    assert env["PREFECT__FLOW_RUN_ID"]
    # No secret travels in the manifest: none by name, none by value, no Kubernetes Secret.
    assert not [name for name in env if SECRET_NAME.search(name)]
    assert all("valueFrom" not in item for item in container["env"])
    assert [list(source) for source in container.get("envFrom", [])] == [["configMapRef"]]
    example = (prefect_setup.PROJECT_DIR / ".dlt" / "secrets.toml.example").read_text()
    secrets = re.findall(
        r"^\s*(?:api_key|credentials|private_key|password|\w+_key|"
        r'slack_webhook_url)\s*=\s*"([^"]+)"',
        example,
        re.MULTILINE,
    )
    assert secrets and not [s for s in secrets if s in json.dumps(manifest)]


def _uv_command(text: str, verb: str) -> list[str]:
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line.split("#", 1)[0]) if "uv" in line else []
        for start in range(len(words) - 1):
            if words[start : start + 2] == ["uv", verb]:
                return words[start:]
    raise AssertionError(f"no `uv {verb}` found")


# Options that choose which locked packages get installed.
SELECTION = re.compile(
    r"--(no-dev|dev|group|only-group|no-group|all-groups|no-default-groups|"
    r"extra|all-extras|only-dev|frozen|locked)\b"
)


def test_the_image_installs_the_process_workers_locked_dependencies() -> None:
    dockerfile = DOCKERFILE.read_text()
    # the image the template names is the one this Dockerfile builds
    image = json.loads(TEMPLATE.read_text())["variables"]["properties"]["image"]["default"]
    assert image.split(":")[0] in dockerfile
    # the same selection from uv.lock as requirements.txt, which a process worker installs
    requirements = (prefect_setup.PROJECT_DIR / "requirements.txt").read_text()
    export = _uv_command(requirements.replace("#", ""), "export")  # its generated header
    sync = _uv_command(dockerfile, "sync")
    assert sorted(SELECTION.findall(" ".join(sync))) == sorted(
        SELECTION.findall(" ".join(export))
    ), (sync, export)
    assert re.search(r"^COPY pyproject\.toml uv\.lock \./$", dockerfile, re.MULTILINE)
    # the same uv as setup, a Python the project supports, and the pull step's needs
    setup = (prefect_setup.PROJECT_DIR / "scripts" / "setup.sh").read_text()
    uv_version = re.search(r"^UV_VERSION=(\S+)", setup, re.MULTILINE).group(1)
    assert f"ARG UV_VERSION={uv_version}" in dockerfile
    base = re.search(r"^FROM python:(\d+)\.(\d+)", dockerfile, re.MULTILINE)
    project = tomllib.loads((prefect_setup.PROJECT_DIR / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.11,<3.14"
    assert base and (3, 11) <= (int(base[1]), int(base[2])) < (3, 14)
    assert "git" in re.search(r"apt-get install[^\n]*", dockerfile).group(0)
    assert re.search(r"VIRTUAL_ENV=(\S+)", dockerfile).group(1) == re.search(
        r"UV_PROJECT_ENVIRONMENT=(\S+)", dockerfile
    ).group(1)


def test_apply_creates_the_kubernetes_pool_with_its_template_and_a_concurrency_limit() -> None:
    from prefect.client.orchestration import get_client

    [spec] = [p for p in prefect_setup.WORK_POOLS if p.type == "kubernetes"]
    prefect_setup.ensure_work_pools()
    with get_client(sync_client=True) as client:
        created = client.read_work_pool(spec.name)
    assert created.type == "kubernetes"
    assert created.base_job_template == json.loads(TEMPLATE.read_text())
    assert created.concurrency_limit == spec.concurrency_limit and spec.concurrency_limit >= 1
    assert prefect_setup.ensure_work_pools()[-1].startswith(
        f"work pool {spec.name!r} (kubernetes) up to date"
    )  # idempotent


def test_a_pool_no_deployment_runs_in_is_paused_and_says_why() -> None:
    """Not shown Not Ready (red) in the UI, nor alerted on: no worker is meant to poll it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate
    from prefect.client.schemas.objects import WorkPoolStatus

    assert prefect_setup.pools_in_service() == ("production",)  # prefect.yaml's deployments
    lines = prefect_setup.ensure_work_pools()
    with get_client(sync_client=True) as client:
        k8s, process = client.read_work_pool("production-k8s"), client.read_work_pool("production")
        assert k8s.is_paused and k8s.status == WorkPoolStatus.PAUSED
        assert "no deployment in prefect.yaml runs in this pool" in k8s.description
        assert "set the deployments' work_pool.name to production-k8s" in k8s.description
        assert not process.is_paused and "Paused" not in process.description
        assert any("'production-k8s'" in line and "paused" in line for line in lines)

        # the deployments move to it: apply resumes the pool it paused
        lines = prefect_setup.ensure_work_pools(in_service=("production", "production-k8s"))
        k8s = client.read_work_pool("production-k8s")
        assert not k8s.is_paused and "Paused" not in k8s.description
        assert any("'production-k8s'" in line and "resumed" in line for line in lines)
        # an operator's pause of a pool in service (maintenance) stays
        client.update_work_pool("production-k8s", WorkPoolUpdate(is_paused=True))
        prefect_setup.ensure_work_pools(in_service=("production", "production-k8s"))
        assert client.read_work_pool("production-k8s").is_paused
        client.update_work_pool("production-k8s", WorkPoolUpdate(is_paused=False))

        # back to prefect.yaml: paused again
        prefect_setup.ensure_work_pools()
        assert client.read_work_pool("production-k8s").is_paused

"""Trigger deployments on a Prefect server, poll their runs to a final state, read their reports.

Used by `data-pipelines demo` and `rehearse` (`dev_stack.demo`, `rehearsal.run`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from pipelines.names import NOTHING_NEW

# (deployment, final state, seconds, flow run id)
RunResult = tuple[str, str, float, str]


def run_deployments(
    api_url: str, deployments: Sequence[tuple[str, dict[str, Any]]], timeout: float
) -> list[RunResult]:
    """Trigger each deployment once with its parameters and wait for every run to end."""
    # A settings context: Prefect read its settings when first imported, before the stack
    # knew its port, so changing os.environ now would go unnoticed.
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return _trigger_and_wait(deployments, timeout)


def _trigger_and_wait(
    deployments: Sequence[tuple[str, dict[str, Any]]], timeout: float
) -> list[RunResult]:
    runs = {}
    for name, parameters in deployments:
        flow_run = run_deployment(name=name, parameters=parameters, timeout=0)
        runs[name] = (flow_run.id, time.monotonic())
        print(f"  triggered {name} (flow run {flow_run.id})", flush=True)
    finished: dict[str, tuple[str, float, str]] = {}
    deadline = time.monotonic() + timeout
    last_report = 0.0
    with get_client(sync_client=True) as client:
        while len(finished) < len(runs) and time.monotonic() < deadline:
            for name, (run_id, t0) in runs.items():
                if name in finished:
                    continue
                state = client.read_flow_run(run_id).state
                if state is not None and state.is_final():
                    finished[name] = (state.name, time.monotonic() - t0, str(run_id))
                    print(f"  {name}: {state.name}", flush=True)
            if time.monotonic() - last_report > 15:
                print(f"  {len(finished)}/{len(runs)} finished...", flush=True)
                last_report = time.monotonic()
            time.sleep(1)
        for name, (run_id, t0) in runs.items():
            if name not in finished:
                state = client.read_flow_run(run_id).state
                finished[name] = (
                    f"{state.name if state else 'Unknown'} (timed out)",
                    time.monotonic() - t0,
                    str(run_id),
                )
    return [(name, *finished[name]) for name, _ in deployments]


def rows_loaded_per_run(api_url: str, flow_run_ids: Sequence[str]) -> dict[str, str]:
    """`table=rows` per flow run, read from the report artifact each run published."""
    loaded: dict[str, str] = {}
    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True) as client,
    ):
        for run_id in flow_run_ids:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
            counts: dict[str, int] = {}
            quiet = False
            for artifact in artifacts:
                if artifact.type != "table" or not artifact.key or not artifact.data:
                    continue
                data = (
                    json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
                )
                for row in data if isinstance(data, list) else []:
                    if not isinstance(row, dict) or not isinstance(row.get("rows_loaded"), int):
                        continue
                    if row.get("table") == NOTHING_NEW:
                        quiet = True
                        continue
                    table = str(row.get("table"))
                    counts[table] = counts.get(table, 0) + row["rows_loaded"]
            loaded[run_id] = ", ".join(f"{t}={n}" for t, n in sorted(counts.items())) or (
                "0 (nothing new)" if quiet else "-"
            )
    return loaded

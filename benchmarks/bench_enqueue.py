"""How soon a queued deployment run starts once the slot is free (target: a few seconds).

    python -m benchmarks.bench_enqueue [--cycles 3] [--hold 8] [--only stack|default]

A real `prefect server start` (throwaway database), a process work pool and worker polling as
the local stack's does (PREFECT_WORKER_QUERY_SECONDS=2, PREFETCH 5), one deployment with
`concurrency_limit: 1, collision_strategy: ENQUEUE` (as prefect.yaml). Each cycle triggers run
A (holds the slot `--hold` seconds), then run B one second later; B is rejected at Pending and
set back to Scheduled "AwaitingConcurrencySlot". Printed: B's start minus A's end (the wait
after the slot was freed), for Prefect's default server settings and for the stack's
(`dev_stack.stack.queue_settings`: the deployment slot wait of 30 s -> 2 s).

Figures, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from dev_stack.prefect_server import throwaway_prefect_server
from dev_stack.processes import stop_group
from dev_stack.stack import queue_settings
from pipelines.environment import PROJECT_DIR

POOL = "bench-enqueue"
WORKER_SETTINGS = {"PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "5"}


async def _deploy(api_url: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.flows import Flow

    async with get_client() as client:
        await client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
    sleepy = await Flow.afrom_source(  # type: ignore[attr-defined]
        source=str(PROJECT_DIR), entrypoint="benchmarks/trivial_flow.py:sleepy_flow"
    )
    deployment_id = await sleepy.adeploy(
        name="bench",
        work_pool_name=POOL,
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
        ),
        build=False,
        push=False,
        print_next_steps=False,
    )
    return str(deployment_id)


def _cycle(deployment_id: str, hold: float) -> tuple[float, float]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        first = client.create_flow_run_from_deployment(deployment_id, parameters={"seconds": hold})
        time.sleep(1)
        second = client.create_flow_run_from_deployment(deployment_id, parameters={"seconds": 0})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            a, b = client.read_flow_run(first.id), client.read_flow_run(second.id)
            if a.state and a.state.is_final() and b.state and b.state.is_final():
                break
            time.sleep(0.5)
        else:
            raise TimeoutError("the two runs did not finish within 180 s")
        runs = sorted((a, b), key=lambda run: run.start_time or run.end_time)
        earlier, later = runs
        states = client.read_flow_run_states(later.id)
    # the later run: its slot (Pending) and its start (Running), after the earlier one ended
    pending = next(s.timestamp for s in states if s.name == "Pending")
    assert earlier.end_time and later.start_time, runs
    slot = (pending - earlier.end_time).total_seconds()
    start = (later.start_time - earlier.end_time).total_seconds()
    waits = sum(1 for s in states if s.name == "AwaitingConcurrencySlot")
    print(
        f"  queued run got the slot {slot:5.1f} s and was Running {start:5.1f} s after the "
        f"holder ended ({waits} AwaitingConcurrencySlot reschedules)",
        flush=True,
    )
    return slot, start


def measure(
    label: str, server_settings: dict[str, str], cycles: int, hold: float
) -> list[tuple[float, float]]:
    print(f"{label}: server settings {server_settings or '(Prefect defaults)'}", flush=True)
    with throwaway_prefect_server(server_settings) as api_url:
        env = {**os.environ, "PREFECT_API_URL": api_url, **WORKER_SETTINGS}
        os.environ["PREFECT_API_URL"] = api_url
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            deployment_id = asyncio.run(_deploy(api_url))
            worker = subprocess.Popen(
                [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--pool", POOL],
                env=env,
                cwd=PROJECT_DIR,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                gaps = [_cycle(deployment_id, hold) for _ in range(cycles)]
            finally:
                stop_group(worker, signal.SIGINT, timeout=15)
    slots, starts = [g[0] for g in gaps], [g[1] for g in gaps]
    print(
        f"{label}: slot after {statistics.median(slots):.1f} s median ({max(slots):.1f} max), "
        f"Running after {statistics.median(starts):.1f} s median ({max(starts):.1f} max), "
        f"{len(gaps)} cycles",
        flush=True,
    )
    return gaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--hold", type=float, default=8.0)
    parser.add_argument("--only", choices=["stack", "default"])
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if args.only != "default":
        measure("stack", queue_settings({}), args.cycles, args.hold)
    if args.only != "stack":
        measure("default", {}, args.cycles, args.hold)


if __name__ == "__main__":
    main()

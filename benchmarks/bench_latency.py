"""Trigger -> Completed for each deployment on the local stack, against Prefect's own floor.

    python -m benchmarks.bench_latency [--repeats 3] [--deployments NAME ...]

Starts the whole local stack (`dev_stack.stack.up()`: OXR sandbox, PostgreSQL with the demo's
5,000 product rows, a Prefect server on SQLite, the `production` pool, the deployments from
prefect.yaml, a process worker) in a throwaway data folder, plus one more deployment on the
same pool: `bench-trivial`, a flow that returns at once (benchmarks/trivial_flow.py).

Every deployment runs once to warm up (first loads, bytecode), then `--repeats` times, one run
at a time. Figures come from the server's own timestamps of each flow run's states:
- trigger -> Completed: flow run `created` -> the Completed state;
- poll: `created` -> Pending (the worker polls every 2 s locally);
- start: Pending -> Running (a new process: interpreter, Prefect, pull step, importing the flow
  module, i.e. dlt and our code for a deployment, Prefect only for the trivial flow);
- run: Running -> Completed (tasks, the pipeline call, report, audit, state changes).
The bare pipeline call is the same pipeline function in a fresh process without Prefect, in the
same environment and data folder, in steady state like the measured runs: `import` (our module
and dlt) and `call`, interpreter start excluded.

The ratio reported: deployment trigger -> Completed ÷ (bench-trivial trigger ->
Completed + bare pipeline call), medians. Figures, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

TARGET_RATIO = 1.2
TRIVIAL = "bench-trivial/bench"
BACKFILL_PARAMETERS = {"start_date": "2026-01-01", "end_date": "2026-01-07"}


# deployment -> (parameters, the bare pipeline calls run in a child process: "imports\ncalls")
# The bare calls go through benchmarks/run_pipeline.py like every benchmark's; `preload` does
# the imports, so the child can time them apart from the call.
def _bare(name: str, call: str) -> str:
    return (
        f"from benchmarks.run_pipeline import *\npreload({name!r})\n"
        f"env = load_environment(None); {call}"
    )


DEPLOYMENTS: dict[str, tuple[dict[str, Any], str]] = {
    "currencies-weekly/production": ({}, _bare("currencies", "run_currencies(env)")),
    "exchange-rates-daily/production": (
        {},
        # the flow's two pipeline calls: the latest rates, then yesterday's final rates
        _bare(
            "exchange_rates",
            "day = last_complete_day(); run_exchange_rates_latest(env); "
            "run_exchange_rates_backfill(env, day, day)",
        ),
    ),
    "exchange-rates-backfill/production": (
        BACKFILL_PARAMETERS,
        _bare(
            "exchange_rates",
            f"run_exchange_rates_backfill(env, {BACKFILL_PARAMETERS['start_date']!r}, "
            f"{BACKFILL_PARAMETERS['end_date']!r})",
        ),
    ),
    "products-daily/production": ({}, _bare("products", "run_products(env)")),
    "products-full-refresh/production": (
        {},
        _bare("products", "run_products(env, full_refresh=True)"),
    ),
    "data-freshness/production": ({}, _bare("verify", "run_verify(env)")),
}
BARE_CHILD = """
import json, sys, time
imports, _, call = sys.argv[1].rpartition(chr(10))
started = time.perf_counter()
exec(imports)
imported = time.perf_counter()
exec(call.strip())
print(json.dumps({"import": imported - started, "call": time.perf_counter() - imported}))
"""


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _deploy_trivial(env: dict[str, str], folder: Path) -> None:
    from infra.prefect_setup import deploy_all
    from pipelines.environment import PROJECT_DIR

    config = {
        "name": "data-pipelines-bench",
        "pull": [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(PROJECT_DIR)}}
        ],
        "deployments": [
            {
                "name": "bench",
                "entrypoint": "benchmarks/trivial_flow.py:trivial_flow",
                "work_pool": {"name": "production", "work_queue_name": "default"},
            }
        ],
    }
    target = folder / "prefect.bench.yaml"
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    deploy_all(env, target)


def _run_and_wait(name: str, parameters: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """Trigger one deployment, wait for a final state, return the server's timings."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    flow_run = run_deployment(name=name, parameters=parameters, timeout=0)
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run.id)
            if run.state is not None and run.state.is_final():
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not finish in {timeout:.0f} s")
            time.sleep(0.2)
        if run.state.name != "Completed":
            raise RuntimeError(f"{name} ended {run.state.name}: {run.state.message}")
        reached = {}
        for state in client.read_flow_run_states(flow_run.id):
            reached.setdefault(state.type.value, state.timestamp)
    created, ended = run.created, run.state.timestamp
    pending, running = reached.get("PENDING", created), reached.get("RUNNING", created)
    return {
        "total": (ended - created).total_seconds(),
        "poll": (pending - created).total_seconds(),
        "start": (running - pending).total_seconds(),
        "run": (ended - running).total_seconds(),
    }


def _bare_call(code: str, env: dict[str, str]) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", BARE_CHILD, code],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"bare call failed: {code}\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def benchmark(repeats: int, only: list[str] | None = None) -> None:
    deployments = {name: DEPLOYMENTS[name] for name in (only or DEPLOYMENTS)}
    base = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    base.chmod(0o755)  # the PostgreSQL server user must reach its data folder
    os.environ["DATA_PIPELINES_DATA_DIR"] = str(base / "data")
    # a sourced stack.env must not point the throwaway stack at the user's own folders
    for variable in ("PREFECT_API_URL", "PREFECT_HOME", "DLT_DATA_DIR", "DLT_LOCAL_DIR"):
        os.environ.pop(variable, None)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from dev_stack import stack

    print(f"load average at start: {_load_average()} ({os.cpu_count()} cores)", flush=True)
    rows: list[tuple[str, dict[str, float], dict[str, float]]] = []
    load = ""
    try:
        started = time.monotonic()
        running = stack.up()
        env = running.worker_env
        _deploy_trivial(env, base)
        print(f"stack up and deployed in {time.monotonic() - started:.0f} s", flush=True)
        names = [TRIVIAL, *deployments]
        timings: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        bare: dict[str, list[dict[str, float]]] = {name: [] for name in deployments}
        with temporary_settings(updates={PREFECT_API_URL: running.prefect_api_url}):
            for name in names:  # warm-up: first loads, bytecode, the server's caches
                _run_and_wait(name, deployments.get(name, ({}, ""))[0])
            for _ in range(repeats):
                for name in names:
                    timings[name].append(_run_and_wait(name, deployments.get(name, ({}, ""))[0]))
                    if name in bare:
                        bare[name].append(_bare_call(deployments[name][1], env))
                print(f"  round done, load average {_load_average()}", flush=True)
        load = _load_average()

        def medians(samples: list[dict[str, float]]) -> dict[str, float]:
            return {key: statistics.median(s[key] for s in samples) for key in samples[0]}

        rows.append((TRIVIAL, medians(timings[TRIVIAL]), {"import": 0.0, "call": 0.0}))
        for name in deployments:
            rows.append((name, medians(timings[name]), medians(bare[name])))
    finally:
        stack.down()
        shutil.rmtree(base, ignore_errors=True)

    if not rows:
        return
    floor = rows[0][1]["total"]
    # the worker's poll (0-2 s, whenever its next poll falls) is Prefect's and pure noise here
    floor_without_poll = floor - rows[0][1]["poll"]
    print()
    print(f"medians of {repeats} runs, seconds; load average during the runs: {load}")
    print(
        f"{'deployment':<36} {'trigger->Completed':>18} {'poll':>5} {'start':>6} {'run':>5}"
        f" {'bare import':>11} {'bare call':>9} {'ratio':>6} {'w/o poll':>8}"
    )
    for name, figures, bare_seconds in rows:
        bare_total = bare_seconds["import"] + bare_seconds["call"]
        ratio = figures["total"] / (floor + bare_total)
        steady = (figures["total"] - figures["poll"]) / (floor_without_poll + bare_total)
        verdict = "" if name == TRIVIAL else ("meets" if ratio <= TARGET_RATIO else "MISSES")
        print(
            f"{name:<36} {figures['total']:>18.2f} {figures['poll']:>5.2f} "
            f"{figures['start']:>6.2f} {figures['run']:>5.2f} {bare_seconds['import']:>11.2f} "
            f"{bare_seconds['call']:>9.2f} {ratio:>5.2f}x {steady:>7.2f}x {verdict}"
        )
    print(
        f"ratio = trigger->Completed / ({TRIVIAL} {floor:.2f} s + bare import + bare call); "
        f"target <= {TARGET_RATIO}x. w/o poll: the same with each run's wait for the worker's "
        "next poll taken out of both sides"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_latency")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--deployments",
        nargs="+",
        choices=list(DEPLOYMENTS),
        metavar="NAME",
        help=f"only these (default: all); {TRIVIAL} always runs as the floor",
    )
    args = parser.parse_args(argv)
    benchmark(args.repeats, args.deployments)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

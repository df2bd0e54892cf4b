"""`data-pipelines demo`: the local stack up, each pipeline deployment once, one summary."""

from __future__ import annotations

import time
from typing import Any

from dev_stack import stack
from dev_stack.deployment_runs import rows_loaded_per_run, run_deployments
from infra.prefect_setup import deployments
from local_runtime.warehouse import table_counts, warehouse_files
from pipelines.text_table import print_table
from verify import user_tables

# The demo's backfill covers one week, not up to yesterday.
DEMO_PARAMETERS: dict[str, dict[str, Any]] = {
    "exchange-rates-backfill/production": {"start_date": "2026-01-01", "end_date": "2026-01-07"}
}
# Verification runs after the loads on its schedule; the demo triggers the loads only.
DEMO_SKIPS_TAG = "verify"


def demo_deployments() -> list[tuple[str, dict[str, Any]]]:
    """The pipeline deployments of prefect.yaml, with the demo's parameters."""
    return [
        (spec.full_name, DEMO_PARAMETERS.get(spec.full_name, spec.parameters))
        for spec in deployments()
        if DEMO_SKIPS_TAG not in spec.tags
    ]


def verification_deployments() -> list[tuple[str, dict[str, Any]]]:
    """The deployments the demo skips (data-freshness), with their own parameters."""
    return [(s.full_name, s.parameters) for s in deployments() if DEMO_SKIPS_TAG in s.tags]


def run(timeout: float) -> int:
    """Stack up, each deployment once, wait, one summary table; 0 when every run Completed."""
    started = time.monotonic()
    print("Starting the local stack (first start takes about a minute)...", flush=True)
    running = stack.up()
    pipeline_deployments = demo_deployments()
    print(
        f"Stack up in {time.monotonic() - started:.0f}s. "
        f"Triggering the {len(pipeline_deployments)} pipeline deployments."
    )
    results = run_deployments(running.prefect_api_url, pipeline_deployments, timeout=timeout)
    print()
    loaded = rows_loaded_per_run(running.prefect_api_url, [run_id for *_, run_id in results])
    print_table(
        ["deployment", "state", "duration", "rows loaded (from the run report)", "flow run"],
        [
            (name, state, f"{secs:.0f}s", loaded.get(run_id, "-"), run_id)
            for name, state, secs, run_id in results
        ],
    )
    print()
    print_warehouse_counts()
    print()
    print("\n".join(running.summary()))
    print(f"Finished in {time.monotonic() - started:.0f}s.")
    print("Stop with `data-pipelines down`; run again with the same command (idempotent).")
    return 0 if all(state == "Completed" for _, state, _, _ in results) else 1


def print_warehouse_counts() -> None:
    counts = table_counts(user_tables())  # every table users read, from the registry
    print_table(["table", "rows"], list(counts.items()))
    print()
    print("Where the data is: " + ", ".join(str(p) for p in warehouse_files()))
    print('Query it: data-pipelines query "select * from DLT.OPEN_EXCHANGE_RATES.CURRENCIES"')

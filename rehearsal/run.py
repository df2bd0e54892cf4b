"""`data-pipelines rehearse`: production, unchanged, on stand-ins; every deployment, one summary.

Starting and stopping the stand-ins is `rehearsal.stand_ins`; the overlap scenarios are
`rehearsal.scenarios`; docs/rehearsal.md says what it proves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prefect.settings import PREFECT_API_URL, temporary_settings

from dev_stack.demo import demo_deployments, verification_deployments
from dev_stack.deployment_runs import run_deployments
from pipelines.text_table import print_table
from rehearsal import scenarios as rehearsal_scenarios
from rehearsal import stand_ins as rehearsal


def stop() -> int:
    """Stop a kept rehearsal."""
    stopped = rehearsal.stop()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def run(timeout: float, keep: bool) -> int:
    """Stand-ins up, loads, overlap scenarios, the pipe, data-freshness, one summary."""
    started = time.monotonic()
    print("Rehearsing production on stand-ins on 127.0.0.1 (fresh each time)...", flush=True)
    ok = False
    try:
        current = rehearsal.start()
        for note in current.notes:
            print(f"Note: {note}")
        loads = run_deployments(current.prefect_api_url, demo_deployments(), timeout=timeout)
        query = rehearsal.admin_query(current.stand_ins)
        scenarios = _overlap_scenarios(current, query)
        objects = rehearsal.wait_for_pipe(current.stand_ins, query)
        checks = verification_deployments()
        results = loads + run_deployments(current.prefect_api_url, checks, timeout=timeout)
        print()
        print_table(
            ["deployment", "final state", "duration", "flow run"],
            [(name, state, f"{secs:.0f}s", run_id) for name, state, secs, run_id in results],
        )
        print()
        counts = []
        for table in rehearsal.TABLES:
            try:
                counts.append((table, query(f"select count(*) from {table}")))
            except Exception as error:  # a missing table is a finding, not a crash
                counts.append((table, f"missing: {str(error).splitlines()[0][:80]}"))
        print_table(["Snowflake stand-in table", "rows"], counts)
        print(f"\nObjects under s3://{current.stand_ins.bucket}/exchange-rates/: {objects}")
        code, report = rehearsal.verify_output(current)
        print("\n" + report)
        ok = (
            code == 0
            and all(state == "Completed" for _, state, _, _ in results)
            and all(scenario.ok for scenario in scenarios)
        )
    finally:
        if not keep:
            rehearsal.stop()
    print(f"Rehearsal {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f}s.")
    if keep:
        print("Still running (--keep): stop with `data-pipelines rehearse --stop`.")
    else:
        print("Everything it started is stopped; logs in .data/rehearsal/stack/logs.")
    return 0 if ok else 1


def _overlap_scenarios(run: Any, query: Callable[[str], int]) -> list[Any]:
    """Runs of one pipeline started at once, from two workers and the CLI; one line each."""
    print("\nOverlap scenarios (two workers, a fresh folder per run, the operator's CLI):")
    with temporary_settings(updates={PREFECT_API_URL: run.prefect_api_url}):
        results = rehearsal_scenarios.run_scenarios(
            run.stand_ins,
            run.env,
            rehearsal.rehearsal_dir() / "operator",
            query,
            rehearsal.staging_gate(),
        )
    for result in results:
        print(f"- {result.name}: {'ok' if result.ok else 'FAILED'}")
        for line in result.lines:
            print(line)
    return results

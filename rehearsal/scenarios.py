"""The rehearsal's overlap scenarios: runs of one pipeline started at once, from anywhere.

Production is a pool of fresh machines; two runs of one pipeline can start together from two
deployments, a schedule and an operator's CLI, on two workers. Each scenario starts them as
that happens, waits, and reports what a data engineer checks afterwards:

- `products`: `products-full-refresh` is triggered and held by the stand-in right after it
  fills the staging table (the gate file: the window in which a second load would empty the
  staging table under it); meanwhile `products-daily` is triggered and an operator runs
  `data-pipelines run products` in their own shell; the gate opens once both wait (or after
  `OVERLAP_SECONDS`). Target: PRODUCTS holds exactly the source's rows, no duplicate
  `audit_id`, and both later runs waited.
- `backfills`: `exchange-rates-backfill` over one range is triggered with OXR slowed down
  (`SLOW_OXR_SECONDS` per request, the sandbox's latency); once it holds the pipeline an
  operator runs `data-pipelines backfill` over an overlapping range. Target: each day requested
  from OXR once, and the CLI waited.

The gate and the slow OXR only widen the window in which the runs overlap, so the scenarios
test the overlap every time instead of when timing happens to allow it. Who waited for whom
is read from the runs' own log lines (the run guard names the holder).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.environment import DATA_DIR_VAR, PROJECT_DIR
from pipelines.names import (
    EXCHANGE_RATES_PIPELINE,
    PRODUCTS_TABLE,
    pipeline_concurrency_tag,
)
from rehearsal.config import StandIns

WAIT_LINE = "Waiting for the "
BACKFILLS = (("2026-02-01", "2026-02-10"), ("2026-02-06", "2026-02-15"))
# The products load right after it fills the staging table (the stand-in's --hold-after).
FILLS_PRODUCTS_STAGING = r'^\s*COPY\s+INTO\s+"?APPLICATION_DATA_STAGING(_\d+)?"?\."?PRODUCTS"?'
# The longest a scenario holds its first run for the others (the gate opens itself at 120 s).
OVERLAP_SECONDS = 100.0
# The longest the backfill scenario waits for the deployment's run to start loading before the
# CLI's run goes: a worker's run clones the commit and installs its packages first (60-100 s
# when the machine is busy: with 100 s the CLI went first, nothing overlapped and the scenario
# failed). Returns as soon as the run holds the guard.
START_SECONDS = 300.0
# Each OXR answer's delay while the first backfill holds its pipeline, until the CLI's waits:
# long enough that the first run still loads when the CLI (10-15 s to start on a busy machine)
# asks; at 2 s the first run had finished by then, nothing overlapped and the scenario failed.
SLOW_OXR_SECONDS = 8.0


@dataclass
class ScenarioResult:
    name: str
    ok: bool
    lines: list[str] = field(default_factory=list)


@dataclass
class CliRun:
    """An operator's `data-pipelines ...` in a shell of their own (own working folder)."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def waiting(self) -> bool:
        return WAIT_LINE in self.output()


def _cli(env: dict[str, str], folder: Path, *argv: str) -> CliRun:
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "cli.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("data-pipelines")), *argv],
            cwd=PROJECT_DIR,
            env=dict(env, **{DATA_DIR_VAR: str(folder)}),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return CliRun(process, log)


def _until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


def _trigger(name: str, parameters: dict[str, Any] | None = None) -> Any:
    from prefect.deployments import run_deployment

    return run_deployment(name=name, parameters=parameters or {}, timeout=0).id


def _wait_final(client: Any, run_id: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        flow_run = client.read_flow_run(run_id)
        if flow_run.state is not None and flow_run.state.is_final():
            return flow_run
        time.sleep(1)
    return client.read_flow_run(run_id)


def _wait_holding(client: Any, run_id: Any, pipeline: str, timeout: float) -> None:
    """Until the run holds its pipeline's run guard (or ended): it is loading now."""
    limit = pipeline_concurrency_tag(pipeline)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.read_flow_run(run_id).state
        if state is not None and state.is_final():
            return
        running = state is not None and state.is_running()
        if running and client.read_global_concurrency_limit_by_name(limit).active_slots:
            return
        time.sleep(0.3)


def _waits_in_logs(client: Any, run_id: Any) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs = client.read_logs(
        log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200
    )
    return [log.message for log in logs if WAIT_LINE in log.message]


def _who_waited(label: str, lines: list[str]) -> str:
    if not lines:
        return f"  {label}: did not wait"
    held_by = lines[0].split("held by ", 1)[-1].split("; waiting", 1)[0]
    return f"  {label}: waited for {held_by}"


def _flow_line(client: Any, label: str, flow_run: Any) -> str:
    state = flow_run.state.name if flow_run.state else "Unknown"
    return f"{_who_waited(label, _waits_in_logs(client, flow_run.id))} -> {state}"


def _cli_line(label: str, run: CliRun, timeout: float) -> tuple[str, bool, bool]:
    """The CLI run's line, whether it succeeded, and whether it waited."""
    try:
        run.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.process.kill()
        run.process.wait()
        return f"  {label}: still running after {timeout:.0f} s (killed)", False, False
    waits = [line for line in run.output().splitlines() if WAIT_LINE in line]
    code = run.process.returncode
    state = "exit 0" if code == 0 else f"exit {code}: {run.output()[-300:]}"
    return f"{_who_waited(label, waits)} -> {state}", code == 0, bool(waits)


def products_overlap(
    stand_ins: StandIns,
    env: dict[str, str],
    folder: Path,
    query: Callable[[str], int],
    gate: Path,
) -> ScenarioResult:
    """A full refresh held in its staging window; a daily run and an operator's CLI run
    started meanwhile."""
    from prefect.client.orchestration import get_client

    from dev_stack.products_data import simulate_day

    simulate_day(stand_ins.products_dsn)  # new activity for the daily runs to merge
    held = gate.with_name(gate.name + ".held")
    held.unlink(missing_ok=True)
    gate.touch()
    try:
        with get_client(sync_client=True) as client:
            refresh = _trigger("products-full-refresh/production")
            in_window = _until(held.exists, OVERLAP_SECONDS)
            simulate_day(stand_ins.products_dsn)  # more activity, inside the refresh's window
            daily = _trigger("products-daily/production")
            cli = _cli(env, folder / "cli-products", "run", "products")
            both_wait = _until(
                lambda: cli.waiting() and bool(_waits_in_logs(client, daily)), OVERLAP_SECONDS
            )
    finally:
        gate.unlink(missing_ok=True)
    cli_line, cli_ok, cli_waited = _cli_line("data-pipelines run products (CLI)", cli, 600)
    with get_client(sync_client=True) as client:
        runs = {
            "products-full-refresh": _wait_final(client, refresh, 600),
            "products-daily": _wait_final(client, daily, 600),
        }
        lines = [_flow_line(client, label, run) for label, run in runs.items()] + [cli_line]
        daily_waited = bool(_waits_in_logs(client, daily))
    source = _source_rows(stand_ins.products_dsn)
    rows = query(f"select count(*) from {PRODUCTS_TABLE}")
    duplicates = rows - query(f"select count(distinct audit_id) from {PRODUCTS_TABLE}")
    lines.append(f"  PRODUCTS {rows} rows, source {source} rows, duplicate audit_id {duplicates}")
    if not (in_window and both_wait):
        lines.append(
            "  the runs did not overlap as staged (refresh in its staging window: "
            f"{in_window}; daily and CLI both waiting: {both_wait})"
        )
    completed = all(run.state is not None and run.state.is_completed() for run in runs.values())
    return ScenarioResult(
        "products: full refresh + daily + CLI at once",
        completed
        and cli_ok
        and rows == source
        and duplicates == 0
        and in_window
        and daily_waited
        and cli_waited,
        lines,
    )


def _slow_oxr(stand_ins: StandIns, seconds: float) -> None:
    request = urllib.request.Request(
        f"{_sandbox_admin(stand_ins)}/__sandbox__/latency",
        data=json.dumps({"seconds": seconds}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def backfills_overlap(stand_ins: StandIns, env: dict[str, str], folder: Path) -> ScenarioResult:
    """Two backfills of overlapping ranges at once: a deployment run and an operator's CLI."""
    from prefect.client.orchestration import get_client

    (first_start, first_end), (second_start, second_end) = BACKFILLS
    before = len(_sandbox_requests(stand_ins))
    _slow_oxr(stand_ins, SLOW_OXR_SECONDS)
    try:
        with get_client(sync_client=True) as client:
            deployed = _trigger(
                "exchange-rates-backfill/production",
                {"start_date": first_start, "end_date": first_end},
            )
            _wait_holding(client, deployed, EXCHANGE_RATES_PIPELINE, START_SECONDS)
            cli = _cli(env, folder / "cli-backfill", "backfill", second_start, second_end)
            _until(lambda: cli.waiting() or cli.process.poll() is not None, OVERLAP_SECONDS)
    finally:
        _slow_oxr(stand_ins, 0.0)
    cli_line, cli_ok, cli_waited = _cli_line(
        f"data-pipelines backfill {second_start} {second_end}", cli, 600
    )
    with get_client(sync_client=True) as client:
        flow_run = _wait_final(client, deployed, 600)
        lines = [
            _flow_line(client, f"exchange-rates-backfill {first_start}..{first_end}", flow_run),
            cli_line,
        ]
    days = Counter(
        entry["path"].rsplit("/", 1)[-1].removesuffix(".json")
        for entry in _sandbox_requests(stand_ins)[before:]
        if entry["path"].startswith("/api/historical/") and entry.get("counted")
    )
    wanted = 15  # 2026-02-01..2026-02-15
    twice = sorted(day for day, n in days.items() if n > 1)
    lines.append(
        f"  OXR historical requests: {sum(days.values())} for {len(days)} of {wanted} days; "
        f"days requested more than once: {', '.join(twice) or 'none'}"
    )
    completed = flow_run.state is not None and flow_run.state.is_completed()
    return ScenarioResult(
        "backfills: overlapping ranges at once",
        completed and cli_ok and cli_waited and len(days) == wanted and not twice,
        lines,
    )


def _source_rows(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as connection:
        row = connection.execute("select count(*) from raw_data.products").fetchone()
    return int(row[0]) if row else 0


def _sandbox_admin(stand_ins: StandIns) -> str:
    return stand_ins.oxr_base_url.split("/api", 1)[0]


def _sandbox_requests(stand_ins: StandIns) -> list[dict[str, Any]]:
    base = _sandbox_admin(stand_ins)
    with urllib.request.urlopen(f"{base}/__sandbox__/requests", timeout=10) as response:
        return list(json.load(response)["requests"])


def run_scenarios(
    stand_ins: StandIns,
    env: dict[str, str],
    folder: Path,
    query: Callable[[str], int],
    gate: Path,
) -> list[ScenarioResult]:
    """Every overlap scenario, one after the other."""
    return [
        products_overlap(stand_ins, env, folder, query, gate),
        backfills_overlap(stand_ins, env, folder),
    ]

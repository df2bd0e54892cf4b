"""Fencing as production meets it: production code over the wire to the Snowflake stand-in.

Each process is a machine of its own (its own working folder). A holder is held by the stand-in
right after it fills its staging table (its gate), while a newer run takes the pipeline: by a
run admitted without the guard, by a bare takeover of the token, or by the guard itself after
the holder was partitioned from a real Prefect server. The warehouse refuses the holder's
commit, and PRODUCTS equals the source row for row. A module of its own so that these long
waits run beside tests/test_rehearsal.py on the other test worker.
"""

# Fixtures are imported and requested by name (F811).
# ruff: noqa: F811

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev_stack import processes
from dev_stack.products_data import simulate_day
from rehearsal.config import StandIns
from tests.fixtures.moto import moto_server  # noqa: F401
from tests.fixtures.postgres import postgres_cluster  # noqa: F401
from tests.fixtures.prefect_pool import applied_prefect_server
from tests.test_rehearsal import (  # noqa: F401
    PRODUCTS,
    query,
    run_production,
    source_keys,
    stand_ins,
    start_production,
)

# A run admitted without the guard, as after its predecessor's lease ran out while that one was
# cut off from Prefect (or the limit was switched off): only the warehouse can stop a stale commit.
ADMITTED_WITHOUT_THE_GUARD = (
    "import contextlib, dataclasses\n"
    "environment = dataclasses.replace(environment, run_guard=lambda name: "
    "contextlib.nullcontext())\n"
)
TAKES_THE_TOKEN_ONLY = (
    "from pipelines import fencing, products\n"
    "from pipelines.runner import make_pipeline\n"
    "fencing.take_fence(make_pipeline('products', environment.warehouse(), 'application_data'))\n"
)


@pytest.mark.parametrize(
    ("stale_run", "newer_run"),
    [
        pytest.param(
            "run(environment, full_refresh=True)",
            ADMITTED_WITHOUT_THE_GUARD + "from pipelines.products import run\nrun(environment)\n",
            id="full-refresh-holder-then-a-daily",
        ),
        pytest.param("run(environment)", TAKES_THE_TOKEN_ONLY, id="daily-holder-then-a-takeover"),
    ],
)
def test_a_holder_that_lost_its_slot_mid_load_is_fenced_and_products_equals_the_source(
    stand_ins: StandIns, tmp_path: Path, stale_run: str, newer_run: str
) -> None:
    """Production code, two working folders, the Snowflake stand-in: the holder is held right
    after it fills its staging table (as a paused or partitioned machine would be), a newer run
    takes the pipeline's fencing token meanwhile, then the holder resumes. Its commit is refused
    inside the merge's or swap's own transaction; it fails transient in one line; the next run
    leaves PRODUCTS equal to the source row for row."""
    daily = "from pipelines.products import run\nrun(environment)\n"
    run_production(stand_ins, daily)
    simulate_day(stand_ins.products_dsn)
    gate = stand_ins.data_dir.parent / "staging.gate"
    held = gate.with_name(gate.name + ".held")
    held.unlink(missing_ok=True)
    # hold only the holder's own staging load (its token is the next one): the newer run's
    # load passes (an empty gate held it too, until the gate's own 120 s limit let it go)
    gate.write_text(rf'APPLICATION_DATA_STAGING_{products_token(stand_ins) + 1}"?\.')
    log = tmp_path / "stale.log"
    try:
        stale = start_production(
            stand_ins, f"from pipelines.products import run\n{stale_run}\n", log
        )
        processes.wait_until(held.exists, "the holder's staging load", 120, gate)
        started = time.monotonic()
        run_production(stand_ins, newer_run)
        took_over = time.monotonic() - started
    finally:
        gate.unlink(missing_ok=True)
    stale.communicate(timeout=300)
    stale_log = log.read_text()
    assert stale.returncode != 0, stale_log[-3000:]
    assert "FencedOut: The products run lost its slot to a newer run" in stale_log, stale_log[
        -3000:
    ]
    print(f"newer run took the token in {took_over:.1f} s; the stale run's commit was refused")

    run_production(stand_ins, daily)
    keys = [int(k) for (k,) in query(stand_ins, f"select audit_id from {PRODUCTS} order by 1")]
    assert keys == source_keys(stand_ins)  # row for row by key, no duplicate


# ---- a holder partitioned from Prefect ---------------------------------------------------------


@pytest.fixture(scope="module")
def pool_prefect() -> Iterator[str]:
    """Production's server on loopback: its lease expiry loop runs, unlike the test harness's."""
    with applied_prefect_server() as api_url:
        yield api_url


def products_token(stand_ins: StandIns) -> int:
    fence = 'DLT.APPLICATION_DATA."_RUN_FENCE"'
    rows = query(stand_ins, f"select max(token) from {fence} where pipeline_name = 'products'")
    return int(rows[0][0] or 0)


@pytest.mark.parametrize("holder", ["run(environment, full_refresh=True)", "run(environment)"])
def test_a_holder_partitioned_from_prefect_loses_the_slot_and_cannot_commit(
    stand_ins: StandIns, pool_prefect: str, tmp_path: Path, holder: str
) -> None:
    """The orchestrator's fault, as production meets it: the holder's connection to Prefect
    stops forwarding (no reset, no close) while it sits in its load; its lease runs out on the
    server, the next run takes the slot and commits; then the holder resumes. The warehouse
    refuses the holder's commit, and PRODUCTS equals the source row for row."""
    from tests.fixtures.freezing_proxy import freezing_proxy

    daily = "from pipelines.products import run\nrun(environment)\n"
    run_production(stand_ins, daily, pool_prefect)
    simulate_day(stand_ins.products_dsn)
    # hold only the holder's own staging load (its token is the next one): the next run passes
    gate = stand_ins.data_dir.parent / "staging.gate"
    held = gate.with_name(gate.name + ".held")
    held.unlink(missing_ok=True)
    gate.write_text(rf'APPLICATION_DATA_STAGING_{products_token(stand_ins) + 1}"?\.')
    log, next_log = tmp_path / "holder.log", tmp_path / "next.log"
    with freezing_proxy(pool_prefect) as proxy:
        try:
            stale = start_production(
                stand_ins,
                f"from pipelines.products import run\n{holder}\n",
                log,
                proxy.url_for(pool_prefect),
            )
            processes.wait_until(held.exists, "the holder's staging load", 120, log)
            proxy.freeze()
            frozen = time.monotonic()
            simulate_day(stand_ins.products_dsn)  # new rows for the next run to merge
            following = start_production(stand_ins, daily, next_log, pool_prefect)
            following.communicate(timeout=300)
            took_over = time.monotonic() - frozen
            assert following.returncode == 0, next_log.read_text()[-3000:]
        finally:
            gate.unlink(missing_ok=True)  # the holder resumes its load
            proxy.thaw()  # and the partition heals: its lease is long gone on the server
        stale.wait(timeout=240)
    stale_log = log.read_text()
    assert stale.returncode != 0, stale_log[-3000:]
    print(
        f"the next run took the slot and finished {took_over:.1f} s after the partition; "
        f"the holder's end: {stale_log.strip().splitlines()[-1][:200]}"
    )
    assert "Got the products pipeline" in next_log.read_text()
    run_production(stand_ins, daily, pool_prefect)
    keys = [int(k) for (k,) in query(stand_ins, f"select audit_id from {PRODUCTS} order by 1")]
    assert keys == source_keys(stand_ins)  # row for row by key, no duplicate

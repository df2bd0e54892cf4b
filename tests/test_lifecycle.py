"""One owner of a run's lifecycle, checked for every registered pipeline, and the warehouse fence.

Every pipeline in `pipelines.registry.PIPELINES` runs through `runner.execute` with a recording
guard, on the real sources (PostgreSQL, the OXR sandbox) and the local warehouse: a pipeline
that skipped the guard, the restore from the destination, the load under the guard or the audit
fails here, whoever added it. The fence tests let a stale run reach the warehouse after a newer
run took its token, on the local DuckDB, with the load's own SQL jobs.
"""

# ruff: noqa: F811

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dev_stack.oxr_sandbox import OXRSandbox
from dev_stack.products_data import simulate_day
from environments import load_environment
from pipelines import fencing, products
from pipelines.environment import Environment
from pipelines.errors import is_permanent
from pipelines.registry import PIPELINES
from pipelines.runner import RunContext, execute, make_pipeline, start_from_destination
from sources.products import products_source
from tests.fixtures.postgres import (  # noqa: F401
    ProductsDatabase,
    postgres_cluster,
    products_database,
    seeded_source,
)

SEED_ROWS = 300


@dataclasses.dataclass
class RecordingGuard:
    """A run guard that records when each pipeline held it (and lets everyone in)."""

    held: dict[str, list[tuple[datetime, datetime]]] = dataclasses.field(default_factory=dict)
    entered: list[str] = dataclasses.field(default_factory=list)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.entered.append(name)
        start = datetime.now(UTC)
        try:
            yield
        finally:
            self.held.setdefault(name, []).append((start, datetime.now(UTC)))


def recording_environment(guard: RecordingGuard) -> Environment:
    return dataclasses.replace(load_environment(), run_guard=guard)


def warehouse(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(data_dir / "warehouse" / "dlt.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture
def sources(
    products_database: ProductsDatabase,
    oxr_sandbox: OXRSandbox,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> ProductsDatabase:
    """Every pipeline's real source: seeded PostgreSQL and the OXR sandbox."""
    return seeded_source(products_database, monkeypatch, SEED_ROWS, lookback=None)


def test_the_registry_names_every_dlt_pipeline_once() -> None:
    assert all(name == spec.name for name, spec in PIPELINES.items())
    assert len({spec.command_name for spec in PIPELINES.values()}) == len(PIPELINES)


def _plant_local_state(environment: Environment, name: str) -> None:
    """A marker in the working folder's state that a run restored from the warehouse drops."""
    spec = PIPELINES[name]
    pipeline = make_pipeline(name, spec.destination(environment), spec.dataset)
    with pipeline.managed_state() as state:
        state["_planted_by_test"] = True


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_registered_pipeline_runs_guard_fence_restore_load_audit_in_order(
    name: str, sources: ProductsDatabase, data_dir: Path
) -> None:
    guard = RecordingGuard()
    environment = recording_environment(guard)
    spec = PIPELINES[name]
    execute(environment, spec)  # a first run: the warehouse has state to restore from
    _plant_local_state(environment, name)
    simulate_day(sources.dsn)  # new source rows for an incremental pipeline to load

    run = execute(environment, spec)

    assert guard.entered == [name, name], "the guard is taken once per run"
    expected = ["guard", "fence", "restore", "load", "summary", "audit", "release"]
    if not spec.in_warehouse:
        expected.remove("fence")
    if not run.loaded_anything:
        expected.remove("audit")
    assert list(run.steps) == expected
    pipeline = make_pipeline(name, spec.destination(environment), spec.dataset)
    assert "_planted_by_test" not in pipeline.state, "state was not restored from the warehouse"
    start, end = guard.held[name][-1]
    assert run.load_info is not None and start <= run.load_info.started_at <= end
    assert run.load_info.finished_at <= end, "the load finished outside the guard"
    if run.loaded_anything:
        assert run.audited
        if spec.in_warehouse:
            (load_id,) = run.load_info.loads_ids
            audit = warehouse(
                data_dir,
                f"select count(*) from {spec.dataset}._load_info where "
                f"cast(loads_ids as varchar) like '%{load_id}%'",
            )
            assert audit == [(1,)]
            loads = warehouse(
                data_dir,
                f"select inserted_at from {spec.dataset}._dlt_loads where load_id = '{load_id}'",
            )
            assert loads and start <= loads[0][0].astimezone(UTC) <= end


def _products_count(data_dir: Path) -> tuple[int, int]:
    return warehouse(
        data_dir, "select count(*), count(distinct audit_id) from application_data.products"
    )[0]


def _source_count(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return int(conn.execute("select count(*) from raw_data.products").fetchone()[0])


def test_a_stale_run_cannot_commit_its_merge_after_a_newer_run_took_the_token(
    sources: ProductsDatabase, data_dir: Path
) -> None:
    """The fence inside the commit: a run whose token went stale between its check and its
    merge (a lease lost mid-load) has its merge transaction refused; the rows stay as they were."""
    environment = recording_environment(RecordingGuard())
    products.run(environment)
    simulate_day(sources.dsn)
    before = _products_count(data_dir)

    spec = products.SPEC
    stale = make_pipeline(spec.name, spec.destination(environment), spec.dataset)
    context = RunContext(environment, spec, stale)
    with context.locked():
        context.fence = fencing.take_fence(stale)
        start_from_destination(stale)
    stale.extract(products_source(sources.dsn))
    stale.normalize()
    load_ids = list(stale.list_normalized_load_packages())
    # a newer run takes the pipeline while the stale one is between its check and its commit
    newer = make_pipeline(spec.name, spec.destination(environment), spec.dataset)
    with context.locked():
        fencing.take_fence(newer)
    with (
        pytest.raises(Exception) as refused,
        fencing.fenced_loads(context.fence, load_ids),
        context.locked(),
    ):
        stale.load()
    assert fencing.fenced_out(refused.value, context.fence) is not None
    assert _products_count(data_dir) == before, "the stale merge committed"
    # the next run, from the warehouse's state, brings the table level with the source
    products.run(environment)
    rows, distinct = _products_count(data_dir)
    assert rows == distinct == _source_count(sources.dsn)


def test_a_run_whose_token_went_stale_before_its_load_fails_transient_and_writes_nothing(
    sources: ProductsDatabase, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check before the load step: the stale run stops with FencedOut (one line,
    transient), nothing of it is visible, and the next run equals the source."""
    environment = recording_environment(RecordingGuard())
    products.run(environment)
    simulate_day(sources.dsn)
    before = _products_count(data_dir)
    extracted = threading.Event()
    real_extract_load = products.SPEC.extract_load

    def newer_run_takes_over(context: RunContext, **params: Any) -> None:
        # right after this run's extract, as if its lease ran out and another run got in
        newer = make_pipeline(products.PIPELINE_NAME, environment.warehouse(), "application_data")
        original_normalize = context.pipeline.normalize

        def normalize_then_lose_the_token(*args: Any, **kwargs: Any) -> Any:
            info = original_normalize(*args, **kwargs)
            with context.locked():
                fencing.take_fence(newer)
            extracted.set()
            return info

        monkeypatch.setattr(context.pipeline, "normalize", normalize_then_lose_the_token)
        real_extract_load(context, **params)

    spec = dataclasses.replace(products.SPEC, extract_load=newer_run_takes_over)
    started = time.monotonic()
    with pytest.raises(fencing.FencedOut) as fenced:
        execute(environment, spec)
    assert extracted.is_set()
    message = str(fenced.value)
    assert "\n" not in message and "lost its slot to a newer run" in message
    assert not is_permanent(fenced.value)
    assert _products_count(data_dir) == before
    print(f"fenced out after {time.monotonic() - started:.2f} s")
    products.run(environment)
    rows, distinct = _products_count(data_dir)
    assert rows == distinct == _source_count(sources.dsn)


def test_each_run_stages_in_its_own_dataset_and_drops_the_earlier_ones(
    sources: ProductsDatabase, data_dir: Path
) -> None:
    environment = recording_environment(RecordingGuard())
    products.run(environment, full_refresh=True)
    simulate_day(sources.dsn)
    products.run(environment)
    schemas = {
        row[0]
        for row in warehouse(
            data_dir,
            "select schema_name from information_schema.schemata "
            "where schema_name like 'application_data_staging%'",
        )
    }
    (token,) = warehouse(
        data_dir,
        "select max(token) from application_data._run_fence where pipeline_name = 'products'",
    )[0]
    assert schemas <= {f"application_data_staging_{token}"}, schemas

"""The guide's worked example, run: an `orders` table added by configuration alone.

docs/architecture.md, "Adding a pipeline", shows three blocks: the registry entry (Python), the
deployments (prefect.yaml) and the local seed (SQL). This test executes those very blocks on a
real PostgreSQL: the seed creates the table, the Python block is the spec (added to the registry
for the test), the YAML block must name the flows the registry generates. Then the new pipeline
runs through the runner (guard, fence, restore, audit), through its Prefect flow on a real
server (its `dlt-pipeline:orders` limit created from the registry), and `verify` checks it, all
without a line written for `orders`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

import verify
from environments import load_environment
from pipelines import registry, timeouts
from pipelines.environment import PROJECT_DIR
from pipelines.runner import execute
from pipelines.spec import PipelineSpec
from tests.fixtures.postgres import (  # noqa: F401
    ProductsDatabase,
    postgres_cluster,
    products_database,
)

GUIDE = PROJECT_DIR / "docs" / "architecture.md"
ORDERS_TABLE = "DLT.APPLICATION_DATA.ORDERS"


def guide_blocks() -> dict[str, str]:
    """The fenced blocks of the application-table example, by language."""
    text = GUIDE.read_text()
    section = text[text.index("### An application table") : text.index("### Any other pipeline")]
    return {lang: body for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, re.S)}


def test_the_example_is_its_configuration_and_deployments_only() -> None:
    blocks = guide_blocks()
    assert set(blocks) == {"python", "yaml", "sql"}  # three files: registry, prefect.yaml, seed
    lines = sum(len(body.strip().splitlines()) for body in blocks.values())
    assert lines <= 60, f"the guide's example takes {lines} lines"


@pytest.fixture
def orders(
    prefect_server: None,
    products_database: ProductsDatabase,  # noqa: F811
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[PipelineSpec, ProductsDatabase]]:
    """The guide's spec in the registry, its table seeded by the guide's SQL, in a session
    zone behind UTC (a zone-less cursor literal would be read in it); its run guard on a real
    Prefect server, its limit created from the registry as `data-pipelines apply prefect` does
    (without `dlt-pipeline:orders` the guard would refuse every run)."""
    from infra.prefect_setup import ensure_pipeline_concurrency_limits

    blocks = guide_blocks()
    with psycopg.connect(products_database.dsn, autocommit=True) as connection:
        connection.execute(
            f"ALTER DATABASE \"{products_database.name}\" SET timezone TO 'America/Los_Angeles'"
        )
        connection.execute(blocks["sql"])
    namespace: dict[str, Any] = {}
    exec(compile(blocks["python"], str(GUIDE), "exec"), namespace)
    spec: PipelineSpec = namespace["ORDERS"]
    monkeypatch.setitem(registry.PIPELINES, spec.name, spec)
    assert "dlt-pipeline:orders" in " ".join(ensure_pipeline_concurrency_limits())
    monkeypatch.setenv("SOURCES__PRODUCTS__CREDENTIALS", products_database.dsn)
    monkeypatch.setenv("SOURCES__ORDERS__LOOKBACK", "0")  # the cursor alone decides what is new
    yield spec, products_database


def warehouse(sql: str) -> list[tuple[Any, ...]]:
    return load_environment().warehouse_query()(sql)


def source(database: ProductsDatabase, sql: str) -> None:
    with psycopg.connect(database.dsn, autocommit=True) as connection:
        connection.execute(sql)


def test_the_new_table_runs_merges_and_verifies_by_configuration(
    orders: tuple[PipelineSpec, ProductsDatabase],
) -> None:
    spec, database = orders
    environment = load_environment()

    first = execute(environment, spec)
    assert first.summary.rows == {"orders": 200}
    assert warehouse(f"select count(*), count(distinct order_id) from {ORDERS_TABLE}") == [
        (200, 200)
    ]
    # the runner's parts came with the spec: the fence row and the audit beside the data
    fence = warehouse("select pipeline_name from DLT.APPLICATION_DATA._run_fence")
    assert ("orders",) in fence
    assert warehouse("select count(*) from DLT.APPLICATION_DATA._load_info")[0][0] >= 1

    # mutable rows: one updated one hour after the cursor (UTC), one new; a zone-less literal
    # would be read as Los Angeles time, eight hours later, and miss both
    source(
        database,
        "UPDATE raw_data.orders SET status = 'shipped', "
        "updated_at = (SELECT max(updated_at) FROM raw_data.orders) + interval '1 hour' "
        "WHERE order_id = 7; "
        "INSERT INTO raw_data.orders VALUES (201, 3, 2, 9.99, 'placed', "
        "(SELECT max(updated_at) FROM raw_data.orders) + interval '1 minute')",
    )
    second = execute(environment, spec)
    assert second.summary.rows == {"orders": 2}
    assert warehouse(f"select count(*), count(distinct order_id) from {ORDERS_TABLE}") == [
        (201, 201)
    ]
    assert warehouse(f"select status from {ORDERS_TABLE} where order_id = 7") == [("shipped",)]

    report = verify.verify(environment)
    orders_checks = {(c.check, c.ok) for c in report.checks if c.target == ORDERS_TABLE}
    assert orders_checks == {
        ("rows", True),
        ("freshness", True),
        ("columns", True),
        ("duplicates", True),
    }

    # the source moves on three days without a run: stale, named, with the threshold
    source(database, "UPDATE raw_data.orders SET updated_at = updated_at + interval '3 days'")
    stale = [c for c in verify.verify(environment).failures if c.target == ORDERS_TABLE]
    assert [c.check for c in stale] == ["freshness"]
    assert "latest updated_at" in stale[0].detail and "(max 26 h)" in stale[0].detail


def test_a_missing_table_names_the_new_section(
    orders: tuple[PipelineSpec, ProductsDatabase],
) -> None:
    spec, database = orders
    source(database, "DROP TABLE raw_data.orders")
    assert spec.check is not None
    with pytest.raises(Exception, match=r"Table raw_data.orders does not exist") as raised:
        spec.check(load_environment())
    assert "[sources.orders] schema_name/table_name" in str(raised.value)
    assert "products" not in str(raised.value).replace("products_test", "")


def test_the_guides_deployments_run_the_generated_flows(
    orders: tuple[PipelineSpec, ProductsDatabase],
) -> None:
    from flows.application_tables import table_flows

    spec, _ = orders
    generated = table_flows(spec)
    entries = yaml.safe_load(
        guide_blocks()["yaml"].replace("*one_at_a_time", "1").replace("*production_pool", "p")
    )
    entrypoints = [entry["entrypoint"] for entry in entries]
    assert entrypoints == [f"flows/application_tables.py:{name}" for name in generated]
    assert all("dlt" in entry["tags"] for entry in entries)  # the alerts select by this tag
    assert {flow.name for flow in generated.values()} == {f.name for f in spec.flows}

    daily = generated["orders_daily_flow"]
    assert daily.timeout_seconds == timeouts.flow_timeout("orders-daily")
    assert timeouts.task_timeout("load_orders") == 1800
    state = daily(return_state=True)
    assert state.is_completed(), state.message
    assert state.result()["load_info"]["rows"] == {"orders": 200}
    refresh = generated["orders_full_refresh_flow"](return_state=True)
    assert refresh.is_completed(), refresh.message


def test_the_local_stack_seeds_the_new_table(
    orders: tuple[PipelineSpec, ProductsDatabase],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dev_stack import stack

    _, database = orders
    source(database, "DROP TABLE raw_data.orders")
    (tmp_path / "orders.sql").write_text(guide_blocks()["sql"])
    monkeypatch.setattr(stack, "SEEDS_DIR", tmp_path)
    assert stack.seed_application_tables(database.dsn, seed_rows=10) == ["products", "orders"]
    assert stack.seed_application_tables(database.dsn, seed_rows=10) == []  # once
    with psycopg.connect(database.dsn) as connection:
        assert connection.execute("select count(*) from raw_data.orders").fetchone() == (200,)

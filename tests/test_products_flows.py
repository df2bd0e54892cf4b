"""`products-daily` and `products-full-refresh` under a real Prefect server and PostgreSQL."""

# Fixtures are imported from tests.fixtures.postgres and requested by name (F811).
# ruff: noqa: F811

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from dev_stack.products_data import simulate_day
from flows.application_tables import products_daily_flow, products_full_refresh_flow
from tests.fixtures.postgres import (  # noqa: F401
    ProductsDatabase,
    postgres_cluster,
    products_database,
    seeded_source,
)

SEED_ROWS = 1500

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def products(
    products_database: ProductsDatabase, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> ProductsDatabase:
    return seeded_source(products_database, monkeypatch, SEED_ROWS, lookback="0")


def test_daily_then_full_refresh_flows(products: ProductsDatabase) -> None:
    first = products_daily_flow()
    assert first["status"] == "success"
    assert first["load_info"]["rows"] == {"products": SEED_ROWS}
    assert first["load_info"]["pipeline"] == "products"
    assert first["load_info"]["dataset"] == "application_data"

    activity = simulate_day(products.dsn)
    second = products_daily_flow()
    assert second["load_info"]["rows"] == {"products": activity["total"]}

    full = products_full_refresh_flow()
    assert full["status"] == "success"
    assert full["load_info"]["rows"] == {"products": SEED_ROWS + activity["total"]}


def test_unreachable_database_is_retried_then_fails_naming_host_and_port(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    password = "Flow-Secret-pw"
    monkeypatch.setenv(
        "SOURCES__PRODUCTS__CREDENTIALS", f"postgresql://loader:{password}@127.0.0.1:{port}/app"
    )
    state = products_daily_flow(return_state=True)
    assert state.is_failed()
    # the root cause first, not dlt's PipelineStepFailed wrapper
    assert state.message.startswith(
        f"PostgreSQL at 127.0.0.1:{port} (database 'app') is unreachable"
    )
    assert password not in state.message

    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    attempts = [run.run_count for run in task_runs if run.name.startswith("load-products")]
    assert attempts == [4]  # the first try and the policy's three retries


def test_a_column_dropped_in_the_source_is_in_the_run_report(products: ProductsDatabase) -> None:
    """Without the report line, a dropped column silently becomes NULL in every new row."""
    import psycopg
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.reporting import report_key

    products_daily_flow()
    with psycopg.connect(products.dsn) as conn:
        conn.execute("ALTER TABLE raw_data.products DROP COLUMN product_name")
        conn.execute(
            "INSERT INTO raw_data.products (audit_id, product_id, price_usd, operation, valid_ts) "
            "SELECT max(audit_id) + 1, 1, 9.5, 'UPDATE', max(valid_ts) + interval '1 minute' "
            "FROM raw_data.products"
        )
    daily = products_daily_flow()
    assert daily["load_info"]["dropped_columns"] == {"products": ["product_name"]}
    with get_client(sync_client=True) as client:
        (artifact, *_) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[report_key("products-daily")])
            ),
            sort="CREATED_DESC",
        )
    assert "dropped in the source (NULL from now on): product_name" in str(artifact.data)

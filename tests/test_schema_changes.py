"""Schema changes reach a human; the OXR tables keep the shape their validation allows.

End to end on real parts: PostgreSQL started by the tests, the session's Prefect server (its
trigger and action services), the alerting automations as `data-pipelines apply alerting`
leaves them, and the local webhook receiver standing in for Slack and PagerDuty. A column added
to `raw_data.products` must produce exactly one Slack message naming table, column and fix, and
no page. The OXR contracts are checked by loading a row of the wrong shape into a real DuckDB.
"""

# Fixtures are imported from their modules and requested by name (F811).
# ruff: noqa: F811

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.common.schema.exceptions import DataValidationError
from dlt.pipeline.exceptions import PipelineStepFailed

from dev_stack.products_data import seed, simulate_day
from dev_stack.webhook_receiver import WebhookReceiver
from flows.application_tables import products_daily_flow
from flows.schema_events import COLUMNS_ADDED, changes_in
from infra import alerting
from infra.prefect_setup import ensure_work_pools
from pipelines.errors import exception_chain, is_permanent
from pipelines.pipeline_run import RunSummary
from sources.exchange_rates import FetchedDay, historical_resource
from tests.fixtures.postgres import (  # noqa: F401
    ProductsDatabase,
    postgres_cluster,
    products_database,
)
from tests.test_alerting import (  # noqa: F401
    ALERT_TIMEOUT,
    apply_deployment,
    automations,
    pagerduty,
    receiver,
    run_deployment_once,
    settings,
    slack,
    titled,
)
from tests.test_products import source_execute

SCHEMA_TITLE = "[data-pipelines] Schema change: application_data.products"


# ---- the OXR tables' contract ---------------------------------------------------------------

DAY = date(2026, 1, 2)
PAYLOAD = {"timestamp": 1767398399, "base": "USD", "rates": {"EUR": 0.85, "USD": 1.0}}


def load_historical(tmp_path: Path, change: Any = None) -> Any:
    resource = historical_resource([FetchedDay(DAY, PAYLOAD)])
    if change is not None:
        resource.add_map(change)
    pipeline = dlt.pipeline(
        "contract_check",
        destination=dlt.destinations.duckdb(str(tmp_path / "contract.duckdb")),
        dataset_name="open_exchange_rates",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    return pipeline.run(resource)


def test_oxr_rows_load_as_validated(tmp_path: Path) -> None:
    load_historical(tmp_path)  # the shape the validation lets through is the contract's


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda row: {**row, "surprise": 1}, id="new-column"),
        pytest.param(lambda row: {**row, "timestamp": "soon"}, id="retyped-column"),
    ],
)
def test_oxr_contract_refuses_a_column_or_type_the_validation_would_not_allow(
    tmp_path: Path, change: Any
) -> None:
    load_historical(tmp_path)
    with pytest.raises(PipelineStepFailed) as failed:
        load_historical(tmp_path, change)
    chain = exception_chain(failed.value)
    assert any(isinstance(e, DataValidationError) for e in chain), chain
    assert "frozen" in str(failed.value.__context__)
    assert is_permanent(failed.value)  # the contract's refusal is not retried


def test_changes_in_a_summary_skip_new_tables_and_name_columns() -> None:
    summary = RunSummary(
        pipeline="products",
        dataset="application_data",
        schema_changes={"products": ["category"], "fresh": ["a", "b"]},
        new_tables=["fresh"],
        dropped_columns={"products": ["product_name"]},
    )
    changes = changes_in(summary)
    assert [(c.event, c.table, c.columns) for c in changes] == [
        (COLUMNS_ADDED, "products", ("category",)),
        ("data-pipelines.schema.columns-dropped", "products", ("product_name",)),
    ]
    assert "application_data.products" in changes[0].line() and "Fix" not in changes[0].line()


# ---- a new column reaches Slack ---------------------------------------------------------------


@pytest.mark.usefixtures("prefect_server")
def test_a_column_added_to_products_sends_one_slack_message_and_no_page(
    products_database: ProductsDatabase,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    automations: list[str],
    receiver: WebhookReceiver,
) -> None:
    assert any(alerting.automation_names()["schema-changed"] in line for line in automations)
    dsn = products_database.dsn
    seed(dsn, 50)
    monkeypatch.setenv("SOURCES__PRODUCTS__CREDENTIALS", dsn)
    ensure_work_pools()
    deployment_id = apply_deployment(products_daily_flow, ":products_daily_flow")
    _, first = run_deployment_once(deployment_id, products_daily_flow)
    assert first.is_completed()  # creates the table: its columns are no schema change

    source_execute(dsn, "ALTER TABLE raw_data.products ADD COLUMN category text")
    activity = simulate_day(dsn)
    source_execute(
        dsn,
        "UPDATE raw_data.products SET category = 'kitchen' WHERE audit_id >= %s",
        (activity["first_audit_id"],),
    )
    started = datetime.now(UTC)
    _, second = run_deployment_once(deployment_id, products_daily_flow)
    assert second.is_completed()

    records = receiver.wait_for(lambda rs: titled(rs, SCHEMA_TITLE), ALERT_TIMEOUT)
    received = datetime.fromisoformat(titled(records, SCHEMA_TITLE)[0]["received_at"])
    print(f"second run started -> Slack message: {(received - started).total_seconds():.1f} s")
    with pytest.raises(TimeoutError):  # a duplicate, or a second alert, has a few seconds more
        receiver.wait_for(lambda rs: len(slack(rs)) > len(slack(records)), 8)
    records = receiver.records()
    # one message in all: the first run sent none, and no Completed run sends a resolve
    (message,) = records
    assert message["body"]["text"] == f"{SCHEMA_TITLE}: new column(s)"
    text = message["body"]["blocks"][1]["text"]["text"]
    assert "*Table:* application_data.products (pipeline products)" in text
    assert "*Change:* new column(s): category" in text
    assert "*Fix:*" in text and "docs/operations.md" in text
    assert not pagerduty(records), "a schema change must never page"

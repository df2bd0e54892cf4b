"""Currencies through all three layers, under a real Prefect server, into the local warehouse."""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pytest

from dev_stack.oxr_sandbox import OXRSandbox
from dev_stack.oxr_sandbox import currencies as sandbox_currencies
from flows.currencies import currencies_weekly_flow, load_currencies
from pipelines.errors import is_permanent
from sources.open_exchange_rates import OXRDataError

CURRENCIES_TABLE = "DLT.OPEN_EXCHANGE_RATES.CURRENCIES"

pytestmark = pytest.mark.usefixtures("prefect_server")


def warehouse_count(data_dir: Path) -> int:
    with duckdb.connect(str(data_dir / "warehouse" / "dlt.duckdb"), read_only=True) as con:
        return con.execute(f"select count(*) from {CURRENCIES_TABLE}").fetchone()[0]


def test_flow_loads_currencies_under_production_names(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    result = currencies_weekly_flow()
    expected = len(sandbox_currencies())
    assert result["status"] == "success"
    assert result["load_info"]["rows"] == {"currencies": expected}
    assert warehouse_count(data_dir) == expected
    with duckdb.connect(str(data_dir / "warehouse" / "dlt.duckdb"), read_only=True) as con:
        row = con.execute(
            f"select code, name, _loaded_at from {CURRENCIES_TABLE} where code = 'EUR'"
        ).fetchone()
    assert row[0] == "EUR" and row[1] == "Euro" and row[2] is not None

    currencies_weekly_flow()
    assert warehouse_count(data_dir) == expected, "a second run changed the row count"


def test_bad_key_fails_with_actionable_message_after_one_request(
    oxr_sandbox: OXRSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__API_KEY", "wrong-key")
    state = currencies_weekly_flow(return_state=True)
    assert state.is_failed()
    assert "invalid_app_id" in state.message
    assert "SOURCES__OPEN_EXCHANGE_RATES__API_KEY" in state.message
    assert oxr_sandbox.request_count("/api/currencies.json") == 1


def test_two_503s_then_success_completes(oxr_sandbox: OXRSandbox, data_dir: Path) -> None:
    oxr_sandbox.inject_faults("503", count=2)
    state = currencies_weekly_flow(return_state=True)
    assert state.is_completed()
    assert oxr_sandbox.request_count("/api/currencies.json") == 3


def test_not_allowed_429_is_not_retried(oxr_sandbox: OXRSandbox, data_dir: Path) -> None:
    oxr_sandbox.inject_faults(
        "error_body", count=10, status=429, message="not_allowed", description="plan"
    )
    state = currencies_weekly_flow(return_state=True)
    assert state.is_failed() and "not_allowed" in state.message
    assert oxr_sandbox.request_count("/api/currencies.json") == 1


def test_task_retry_recovers_when_http_retries_run_out(
    oxr_sandbox: OXRSandbox, data_dir: Path
) -> None:
    # 4 HTTP attempts (dlt) all fail inside the first task attempt; Prefect's retry then wins.
    oxr_sandbox.inject_faults("503", count=4)
    state = currencies_weekly_flow(return_state=True)
    assert state.is_completed()
    assert oxr_sandbox.request_count("/api/currencies.json") == 5
    assert warehouse_count(data_dir) == len(sandbox_currencies())


def test_key_never_appears_in_logs_or_failure(
    oxr_sandbox: OXRSandbox,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    secret = "leak-canary-5e4d3c2b1a"
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__API_KEY", secret)
    caplog.set_level(logging.DEBUG)
    state = currencies_weekly_flow(return_state=True)
    assert state.is_failed()
    out, err = capfd.readouterr()
    for text in (state.message, caplog.text, out, err):
        assert secret not in text
    assert all(secret not in r["path"] for r in oxr_sandbox.requests)


def test_tasks_carry_the_shared_retry_policy() -> None:
    from flows.retry_policy import RETRIES, RETRY_JITTER_FACTOR, retry_delays, should_retry

    assert load_currencies.retries == RETRIES
    assert load_currencies.retry_delay_seconds == retry_delays()
    assert load_currencies.retry_jitter_factor == RETRY_JITTER_FACTOR
    assert load_currencies.retry_condition_fn is should_retry


# ---- the data contract at the door ----------------------------------------------------------

EUROS_ONLY = {"EUR": "Euro", "USD": "United States Dollar"}


@pytest.mark.parametrize(
    ("kind", "params", "cause"),
    [
        ("answer", {"body": {}}, "`(body)` is an empty object: no currencies"),
        ("answer", {"body": ["EUR"]}, "`(body)` is list, not an object"),
        (
            "patch",
            {"set": {"disclaimer": "Usage subject to terms"}},
            "`disclaimer` is not a 3-letter uppercase currency code",
        ),
        ("patch", {"set": {"EUR": None}}, "`EUR` has name None, not a text"),
        ("patch", {"set": {"eur": "Euro"}}, "`eur` is not a 3-letter uppercase"),
        (
            "answer",
            {"body": EUROS_ONLY},
            "`(body)` lists 2 currencies, the table 178 (99% fewer, max_currencies_shrink=0.2; "
            "if real, raise it for one run)",
        ),
    ],
    ids=["empty", "not an object", "extra top-level field", "null name", "lowercase", "shrink"],
)
def test_bad_answer_is_refused_not_retried_and_the_table_is_unchanged(
    oxr_sandbox: OXRSandbox, data_dir: Path, kind: str, params: dict, cause: str
) -> None:
    currencies_weekly_flow()
    before = warehouse_count(data_dir)
    assert before == 178  # the sandbox's list; the shrink case's numbers depend on it
    oxr_sandbox.reset()
    oxr_sandbox.inject_faults(kind, **params)
    state = currencies_weekly_flow(return_state=True)
    assert state.is_failed()
    # the operator's (and the alert's) message starts with the refusal itself
    assert state.message.startswith(f"Open Exchange Rates currencies.json: field {cause}")
    refusal = state.result(raise_on_failure=False)
    assert isinstance(refusal, OXRDataError) and is_permanent(refusal)
    assert "refused, nothing written. Fix: " in str(refusal) and "\n" not in str(refusal)
    assert oxr_sandbox.request_count("/api/currencies.json") == 1, "a refusal was retried"
    assert warehouse_count(data_dir) == before
    with duckdb.connect(str(data_dir / "warehouse" / "dlt.duckdb"), read_only=True) as con:
        names = con.execute(
            f"select count(*) from {CURRENCIES_TABLE} where name = 'None'"
        ).fetchone()
    assert names == (0,)


def test_a_real_shrink_passes_when_the_operator_raises_the_limit(
    oxr_sandbox: OXRSandbox, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    currencies_weekly_flow()
    oxr_sandbox.reset()
    oxr_sandbox.inject_faults("answer", body=EUROS_ONLY)
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_CURRENCIES_SHRINK", "1")
    assert currencies_weekly_flow()["status"] == "success"
    assert warehouse_count(data_dir) == 2


def test_first_load_has_nothing_to_shrink_from(oxr_sandbox: OXRSandbox, data_dir: Path) -> None:
    oxr_sandbox.inject_faults("answer", body=EUROS_ONLY)
    assert currencies_weekly_flow()["status"] == "success"
    assert warehouse_count(data_dir) == 2

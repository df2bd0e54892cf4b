"""OXR's error answers as production sees them: each code at the status real OXR sends it with.

The sandbox serves every code from its own behaviour (a spent quota, a deactivated or suspended
app id, a plan without historical rates, an unsupported base, an unknown route, a day without
rates); only `not_allowed` under 403 comes from the fault script, because the sandbox's plans
answer it with 429 as OXR's errors page documents. Each permanent answer must cost exactly one
request (dlt's client retries 429 by default) and say, on one line, OXR's own description and
our fix. A day without rates (400 `not_available`) is skipped and listed and the range completes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from dev_stack.oxr_sandbox import OXRSandbox, SandboxPlan
from pipelines.errors import is_permanent
from sources.open_exchange_rates import (
    OpenExchangeRatesClient,
    OXRDayNotAvailable,
    OXRPermanentError,
)
from tests.conftest import SANDBOX_APP_ID
from tests.test_exchange_rates import backfill

INACTIVE_ID = "deactivated-app-id"
SUSPENDED_ID = "suspended-app-id"
DAY = date(2026, 1, 2)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[OXRSandbox]:
    with OXRSandbox(
        app_ids=(SANDBOX_APP_ID,),
        inactive_app_ids=(INACTIVE_ID,),
        restricted_app_ids=(SUSPENDED_ID,),
        unavailable_days=(DAY,),
    ) as served:
        yield served


@pytest.fixture(scope="module")
def spent_sandbox() -> Iterator[OXRSandbox]:
    """The monthly quota used up."""
    with OXRSandbox(app_ids=(SANDBOX_APP_ID,), monthly_quota=5, requests_used=5) as sb:
        yield sb


@pytest.fixture(scope="module")
def no_history_sandbox() -> Iterator[OXRSandbox]:
    """A plan without historical rates."""
    plan = SandboxPlan(name="No History", historical=False)
    with OXRSandbox(app_ids=(SANDBOX_APP_ID,), plan=plan) as sb:
        yield sb


Call = Callable[[OpenExchangeRatesClient], Any]

# (code, status real OXR sends, app id, call, path the request goes to, which sandbox)
CASES: list[tuple[str, int, str, Call, str, str]] = [
    ("missing_app_id", 401, "", lambda c: c.latest(), "/api/latest.json", "sandbox"),
    ("invalid_app_id", 401, "no-such-id", lambda c: c.latest(), "/api/latest.json", "sandbox"),
    ("app_id_inactive", 401, INACTIVE_ID, lambda c: c.latest(), "/api/latest.json", "sandbox"),
    ("access_restricted", 403, SUSPENDED_ID, lambda c: c.latest(), "/api/latest.json", "sandbox"),
    (
        "access_restricted",
        429,
        SANDBOX_APP_ID,
        lambda c: c.latest(),
        "/api/latest.json",
        "spent_sandbox",
    ),
    (
        "not_allowed",
        429,
        SANDBOX_APP_ID,
        lambda c: c.get_json("historical/2026-01-05.json"),
        "/api/historical/2026-01-05.json",
        "no_history_sandbox",
    ),
    (
        "invalid_base",
        400,
        SANDBOX_APP_ID,
        lambda c: c.get_json("latest.json", {"base": "XYZ"}),
        "/api/latest.json",
        "sandbox",
    ),
    (
        "not_found",
        404,
        SANDBOX_APP_ID,
        lambda c: c.get_json("nope.json"),
        "/api/nope.json",
        "sandbox",
    ),
    (
        "not_available",
        400,
        SANDBOX_APP_ID,
        lambda c: c.historical(DAY),
        f"/api/historical/{DAY}.json",
        "sandbox",
    ),
]


@pytest.mark.parametrize(
    ("code", "status", "app_id", "call", "path", "which"),
    CASES,
    ids=[f"{code}-{status}" for code, status, *_ in CASES],
)
def test_each_real_code_at_its_real_status_is_one_request_with_description_and_fix(
    request: pytest.FixtureRequest,
    code: str,
    status: int,
    app_id: str,
    call: Call,
    path: str,
    which: str,
) -> None:
    served: OXRSandbox = request.getfixturevalue(which)
    served.reset()
    with pytest.raises(OXRPermanentError) as raised:
        call(OpenExchangeRatesClient(app_id, served.base_url))
    error = raised.value
    (answer,) = [r for r in served.requests if r["path"] == path]  # one request, not retried
    assert answer["status"] == status and (error.status, error.code) == (status, code)
    assert is_permanent(error)
    line = str(error)
    assert "\n" not in line and line.startswith(f"Open Exchange Rates {path[5:]}: HTTP {status}")
    assert error.description and f'(OXR: "{error.description}")' in line  # OXR's own words
    assert error.fix and line.endswith(error.fix + ".")  # and our fix
    if app_id:
        assert app_id not in line
    assert isinstance(error, OXRDayNotAvailable) == (code == "not_available")


@pytest.mark.parametrize("code", ["not_allowed", "access_restricted"])
def test_a_code_oxr_also_sends_as_403_is_permanent_there_too(
    sandbox: OXRSandbox, code: str
) -> None:
    sandbox.reset()
    sandbox.inject_faults("error_body", status=403, message=code, description="Said OXR.")
    with pytest.raises(OXRPermanentError) as raised:
        OpenExchangeRatesClient(SANDBOX_APP_ID, sandbox.base_url).latest()
    assert (raised.value.status, raised.value.code) == (403, code)
    assert sandbox.request_count("/api/latest.json") == 1


def test_a_429_without_an_oxr_code_is_still_a_retried_rate_limit(sandbox: OXRSandbox) -> None:
    sandbox.reset()
    sandbox.inject_faults("429", retry_after=0)
    assert OpenExchangeRatesClient(SANDBOX_APP_ID, sandbox.base_url).latest()["base"] == "USD"
    assert sandbox.request_count("/api/latest.json") == 2


# ---- a day without rates in a backfill ----------------------------------------------------------


@pytest.fixture
def fast_backfill(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_CONCURRENCY", "4")
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__MAX_REQUESTS_PER_SECOND", "200")


def test_backfill_with_a_not_available_day_completes_and_lists_it(
    oxr_sandbox: OXRSandbox, data_dir: Path, fast_backfill: None
) -> None:
    oxr_sandbox.unavailable_days.add(DAY)
    result = backfill("2026-01-01", "2026-01-03")
    assert result.days_not_available == [DAY]
    assert result.summary()["backfill"]["days_not_available"] == ["2026-01-02"]
    assert (result.days_requested, result.days_loaded) == (3, 2)
    historical = data_dir / "bucket" / "exchange-rates" / "historical"
    assert sorted(p.name.split(".")[0] for p in historical.iterdir()) == [
        "2026-01-01",
        "2026-01-03",
    ]
    # the day without rates was asked once: a 400 not_available is not retried
    assert sorted(oxr_sandbox.historical_dates_requested()) == [
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
    ]


def test_a_daily_run_on_a_day_without_rates_completes(
    oxr_sandbox: OXRSandbox, data_dir: Path, fast_backfill: None
) -> None:
    """Unlike a 404 on every day (a wrong address), `not_available` names its date."""
    oxr_sandbox.unavailable_days.add(DAY)
    result = backfill(DAY, DAY)
    assert result.days_not_available == [DAY] and result.days_loaded == 0
    assert oxr_sandbox.historical_dates_requested() == [DAY.isoformat()]

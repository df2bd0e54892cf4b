"""The OXR sandbox, exercised as a client would: real HTTP on loopback with `requests`.

Why: every exchange-rates test and the local demo rely on this server behaving like Open Exchange
Rates (shapes, auth, errors, quota) and on its fault knobs doing exactly what they claim.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from dev_stack.oxr_sandbox import (
    DEFAULT_SANDBOX_APP_ID,
    DISCLAIMER,
    LICENSE,
    OXRSandbox,
    SandboxPlan,
    error_body,
)

APP_ID = DEFAULT_SANDBOX_APP_ID
AUTH = {"Authorization": f"Token {APP_ID}"}
REPO_ROOT = Path(__file__).resolve().parents[1]

# ECB row of 2026-01-02 (eurofxref-hist.csv): USD 1.1721, JPY 183.94, GBP 0.8719 per EUR.
USD_PER_EUR_20260102 = 1.1721
GBP_PER_EUR_20260102 = 0.8719


@pytest.fixture
def sandbox() -> Iterator[OXRSandbox]:
    with OXRSandbox() as sb:
        yield sb


def get(sb: OXRSandbox, path: str, **kwargs: object) -> requests.Response:
    kwargs.setdefault("headers", AUTH)
    kwargs.setdefault("timeout", 10)
    return requests.get(sb.base_url + path, **kwargs)  # type: ignore[arg-type]


def assert_error(resp: requests.Response, status: int, message: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "status", "message", "description"}
    assert body["error"] is True
    assert body["status"] == status
    assert body["message"] == message
    assert isinstance(body["description"], str) and body["description"]


# ---- shapes ---------------------------------------------------------------------------------


def test_currencies_is_sorted_iso_map_and_needs_no_app_id(sandbox: OXRSandbox) -> None:
    resp = get(sandbox, "currencies.json", headers={})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert list(body) == sorted(body)
    assert body["USD"] == "US Dollar"
    assert body["EUR"] == "Euro"
    assert len(body) > 150
    assert sandbox.requests_used == 0  # free, like OXR


def test_latest_shape_and_header_auth(sandbox: OXRSandbox) -> None:
    before = int(time.time()) // 3600 * 3600
    resp = get(sandbox, "latest.json")
    after = int(time.time()) // 3600 * 3600
    assert resp.status_code == 200
    body = resp.json()
    assert list(body) == ["disclaimer", "license", "timestamp", "base", "rates"]
    assert body["disclaimer"] == DISCLAIMER
    assert body["license"] == LICENSE
    assert body["base"] == "USD"
    assert body["timestamp"] in (before, after)  # now, truncated to the hour
    rates = body["rates"]
    assert rates["USD"] == 1.0
    assert {"EUR", "GBP", "JPY", "CHF"} <= set(rates)
    assert all(isinstance(v, float) and v > 0 for v in rates.values())
    assert list(rates) == sorted(rates)
    assert sandbox.requests_used == 1


def test_query_auth_gives_the_same_answer(sandbox: OXRSandbox) -> None:
    by_header = get(sandbox, "historical/2026-01-02.json").json()
    by_query = get(sandbox, "historical/2026-01-02.json", headers={}, params={"app_id": APP_ID})
    assert by_query.status_code == 200
    assert by_query.json() == by_header


def test_usage_shape_and_it_does_not_count() -> None:
    with OXRSandbox(monthly_quota=1000, requests_used=40) as sb:
        for _ in range(2):
            resp = get(sb, "usage.json")
        assert resp.status_code == 200
        body = resp.json()
    today = dt.datetime.now(dt.UTC).date()
    days_in_month = calendar.monthrange(today.year, today.month)[1]
    assert body == {
        "status": 200,
        "data": {
            "app_id": APP_ID,
            "status": "active",
            "plan": {
                "name": "Sandbox Unlimited",
                "quota": "1,000 requests/month",
                "update_frequency": "60-minute",
                "features": {
                    "base": True,
                    "symbols": True,
                    "experimental": True,
                    "time-series": False,
                    "convert": False,
                },
            },
            "usage": {
                "requests": 40,
                "requests_quota": 1000,
                "requests_remaining": 960,
                "days_elapsed": today.day,
                "days_remaining": days_in_month - today.day,
                "daily_average": 40 // today.day,
            },
        },
    }


# ---- auth errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["latest.json", "historical/2026-01-02.json", "usage.json"])
def test_missing_and_invalid_app_id(sandbox: OXRSandbox, path: str) -> None:
    missing = get(sandbox, path, headers={})
    assert_error(missing, 401, "missing_app_id")
    assert missing.json() == error_body(401, "missing_app_id")
    assert "No App ID provided" in missing.json()["description"]

    invalid = get(sandbox, path, headers={"Authorization": "Token not-a-real-id"})
    assert_error(invalid, 401, "invalid_app_id")
    assert "Invalid App ID" in invalid.json()["description"]
    assert "not-a-real-id" not in invalid.text  # never echoed

    invalid_query = get(sandbox, path, headers={}, params={"app_id": "nope"})
    assert_error(invalid_query, 401, "invalid_app_id")
    assert sandbox.requests_used == 0


# ---- quota, plan, parameters ----------------------------------------------------------------


def test_quota_exhaustion_and_usage_numbers() -> None:
    with OXRSandbox(monthly_quota=3, requests_used=1) as sb:
        assert get(sb, "latest.json").status_code == 200
        assert get(sb, "historical/2026-01-02.json").status_code == 200
        for path in ("latest.json", "historical/2026-01-05.json"):
            resp = get(sb, path)
            # real OXR answers over-use with 429 (its errors page; recorded answers)
            assert_error(resp, 429, "access_restricted")
            assert "(reason: too_many_requests)" in resp.json()["description"]
        assert get(sb, "currencies.json").status_code == 200  # still free
        usage = get(sb, "usage.json").json()["data"]
        assert usage["status"] == "access_restricted"
        assert usage["usage"]["requests"] == 3
        assert usage["usage"]["requests_quota"] == 3
        assert usage["usage"]["requests_remaining"] == 0
        assert [e["counted"] for e in sb.requests if e["path"] != "/api/usage.json"] == [
            True,
            True,
            False,
            False,
            False,
        ]


def test_concurrent_clients_never_exceed_the_quota() -> None:
    with OXRSandbox(monthly_quota=5, latency_seconds=0.05) as sb:
        with ThreadPoolExecutor(max_workers=10) as pool:
            statuses = list(pool.map(lambda _: get(sb, "latest.json").status_code, range(10)))
        assert sorted(statuses) == [200] * 5 + [429] * 5
        assert sb.requests_used == 5


def test_plan_without_historical_answers_not_allowed() -> None:
    plan = SandboxPlan(name="No History", historical=False)
    with OXRSandbox(plan=plan) as sb:
        resp = get(sb, "historical/2026-01-02.json")
        assert_error(resp, 429, "not_allowed")
        assert get(sb, "latest.json").status_code == 200
        assert sb.requests_used == 1
        features = get(sb, "usage.json").json()["data"]["plan"]
        assert features["name"] == "No History"


def test_free_plan_rejects_base_and_symbols_but_allows_usd() -> None:
    with OXRSandbox(plan=SandboxPlan.free()) as sb:
        resp = get(sb, "latest.json", params={"base": "EUR"})
        assert_error(resp, 429, "not_allowed")
        assert "`base`" in resp.json()["description"]
        assert_error(get(sb, "latest.json", params={"symbols": "EUR"}), 429, "not_allowed")
        ok = get(sb, "latest.json", params={"base": "USD"})
        assert ok.status_code == 200 and ok.json()["base"] == "USD"
        features = get(sb, "usage.json").json()["data"]["plan"]["features"]
        assert features["base"] is False and features["symbols"] is False
        assert sb.requests_used == 1


def test_invalid_base(sandbox: OXRSandbox) -> None:
    assert_error(get(sandbox, "latest.json", params={"base": "XYZ"}), 400, "invalid_base")
    assert sandbox.requests_used == 0


def test_base_and_symbols(sandbox: OXRSandbox) -> None:
    body = get(
        sandbox, "historical/2026-01-02.json", params={"base": "EUR", "symbols": "USD,GBP,QQQ"}
    ).json()
    assert body["base"] == "EUR"
    assert body["rates"] == pytest.approx(
        {"USD": USD_PER_EUR_20260102, "GBP": GBP_PER_EUR_20260102}
    )


@pytest.mark.parametrize("date", ["2026-13-01", "2026-02-30", "26-01-02", "yesterday"])
def test_malformed_historical_dates(sandbox: OXRSandbox, date: str) -> None:
    assert_error(get(sandbox, f"historical/{date}.json"), 400, "invalid_date")
    assert sandbox.requests_used == 0


@pytest.mark.parametrize("date", ["1998-12-31", "FUTURE", "UNAVAILABLE"])
def test_days_without_rates_are_400_not_available(sandbox: OXRSandbox, date: str) -> None:
    if date == "FUTURE":
        date = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)).isoformat()
    if date == "UNAVAILABLE":
        date = "2026-01-02"
        sandbox.unavailable_days.add(dt.date(2026, 1, 2))
    resp = get(sandbox, f"historical/{date}.json")
    assert_error(resp, 400, "not_available")
    assert "not available" in resp.json()["description"]
    assert sandbox.requests_used == 0
    sandbox.reset()
    assert get(sandbox, "historical/2026-01-02.json").status_code == 200


def test_inactive_and_restricted_app_ids() -> None:
    with OXRSandbox(inactive_app_ids=("old-id",), restricted_app_ids=("held-id",)) as sb:
        inactive = get(sb, "latest.json", headers={"Authorization": "Token old-id"})
        assert_error(inactive, 401, "app_id_inactive")
        assert "deactivated" in inactive.json()["description"]
        held = get(sb, "latest.json", headers={"Authorization": "Token held-id"})
        assert_error(held, 403, "access_restricted")
        assert "account suspended" in held.json()["description"]
        assert sb.requests_used == 0


def test_unknown_paths_are_not_found(sandbox: OXRSandbox) -> None:
    for url in (
        sandbox.base_url + "nope.json",
        sandbox.base_url + "historical/2026-01-02/extra.json",
        sandbox.base_url.replace("/api/", "/elsewhere"),
    ):
        assert_error(requests.get(url, headers=AUTH, timeout=10), 404, "not_found")
    assert sandbox.requests_used == 0


# ---- real rates -----------------------------------------------------------------------------


def test_rates_are_the_ecb_series_rebased_to_usd(sandbox: OXRSandbox) -> None:
    body = get(sandbox, "historical/2026-01-02.json").json()
    rates = body["rates"]
    assert rates["USD"] == 1.0
    assert rates["EUR"] == pytest.approx(1 / USD_PER_EUR_20260102, rel=1e-12)
    assert rates["GBP"] == pytest.approx(GBP_PER_EUR_20260102 / USD_PER_EUR_20260102, rel=1e-12)
    assert "BGN" not in rates  # N/A in the ECB row of that date
    assert body["timestamp"] == calendar.timegm((2026, 1, 2, 23, 59, 59))


def test_weekend_and_holiday_serve_the_previous_business_day(sandbox: OXRSandbox) -> None:
    friday = get(sandbox, "historical/2026-01-02.json").json()
    for day in ("2026-01-03", "2026-01-04"):
        weekend = get(sandbox, f"historical/{day}.json").json()
        assert weekend["rates"] == friday["rates"]
        y, m, d = map(int, day.split("-"))
        assert weekend["timestamp"] == calendar.timegm((y, m, d, 23, 59, 59))
    new_year = get(sandbox, "historical/2026-01-01.json").json()
    assert new_year["rates"] == get(sandbox, "historical/2025-12-31.json").json()["rates"]
    # Before the first ECB day (1999-01-04), the first day's rates are served.
    first = get(sandbox, "historical/1999-01-04.json").json()["rates"]
    assert get(sandbox, "historical/1999-01-01.json").json()["rates"] == first
    assert first["EUR"] == pytest.approx(1 / 1.1789)


# ---- faults ---------------------------------------------------------------------------------


def test_fault_503_then_recovers(sandbox: OXRSandbox) -> None:
    sandbox.inject_faults("503", count=2)
    assert_error(get(sandbox, "latest.json"), 503, "service_unavailable")
    assert_error(get(sandbox, "currencies.json"), 503, "service_unavailable")
    assert get(sandbox, "latest.json").status_code == 200
    assert sandbox.requests_used == 1
    assert [e["fault"] for e in sandbox.requests] == ["503", "503", None]


def test_fault_429_carries_retry_after_and_is_not_not_allowed(sandbox: OXRSandbox) -> None:
    sandbox.inject_faults("429", retry_after=7)
    resp = get(sandbox, "historical/2026-01-02.json")
    assert_error(resp, 429, "too_many_requests")
    assert resp.headers["Retry-After"] == "7"
    assert resp.json()["message"] != "not_allowed"
    assert sandbox.requests_used == 0


def test_fault_error_body(sandbox: OXRSandbox) -> None:
    sandbox.inject_faults("error_body", status=502, message="bad_gateway", description="upstream")
    resp = get(sandbox, "latest.json")
    assert resp.json() == error_body(502, "bad_gateway", "upstream")
    assert resp.status_code == 502


def test_fault_truncated_raises_chunked_encoding_error(sandbox: OXRSandbox) -> None:
    sandbox.inject_faults("truncated")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(sandbox, "latest.json")
    assert get(sandbox, "latest.json").status_code == 200
    assert sandbox.requests_used == 1  # the truncated answer did not count
    assert [e["fault"] for e in sandbox.requests] == ["truncated", None]


def test_faults_are_fifo_skip_usage_and_can_be_cleared(sandbox: OXRSandbox) -> None:
    sandbox.inject_faults("503")
    sandbox.inject_faults("429", retry_after=1)
    assert get(sandbox, "usage.json").status_code == 200  # usage.json consumes no fault
    assert get(sandbox, "latest.json").status_code == 503
    assert get(sandbox, "latest.json").status_code == 429
    assert get(sandbox, "latest.json").status_code == 200
    sandbox.inject_faults("503", count=3)
    sandbox.clear_faults()
    assert get(sandbox, "latest.json").status_code == 200
    with pytest.raises(ValueError):
        sandbox.inject_faults("meteor")


def test_bad_answer_faults_patch_or_replace_the_real_answer(sandbox: OXRSandbox) -> None:
    sandbox.inject_faults("answer", body={})
    sandbox.inject_faults("patch", set={"rates": None}, remove=["timestamp"])
    sandbox.inject_faults("patch", rates={"EUR": float("nan"), "GBP": -1})
    assert get(sandbox, "latest.json").json() == {}
    patched = get(sandbox, "latest.json").json()
    assert patched["rates"] is None and "timestamp" not in patched and patched["base"] == "USD"
    body = json.loads(get(sandbox, "latest.json").content)  # NaN as Python's JSON writes it
    assert body["rates"]["EUR"] != body["rates"]["EUR"] and body["rates"]["GBP"] == -1
    assert body["rates"]["USD"] == 1.0, "a patch keeps the rest of the real answer"
    assert sandbox.requests_used == 0  # faulted answers never count
    with pytest.raises(ValueError):
        sandbox.inject_faults("answer")
    with pytest.raises(ValueError):
        sandbox.inject_faults("patch")


def test_a_fault_with_a_path_waits_for_that_path(sandbox: OXRSandbox) -> None:
    day = "/api/historical/2026-01-02.json"
    sandbox.inject_faults("error_body", path=day, status=404, message="not_found")
    sandbox.inject_faults("503")
    assert get(sandbox, "historical/2026-01-01.json").status_code == 503  # skips the scoped one
    assert get(sandbox, "historical/2026-01-01.json").status_code == 200
    assert_error(get(sandbox, "historical/2026-01-02.json"), 404, "not_found")
    assert get(sandbox, "historical/2026-01-02.json").status_code == 200
    with pytest.raises(ValueError):
        sandbox.inject_faults("503", path="historical/2026-01-02.json")


# ---- latency, rate, log ---------------------------------------------------------------------


def test_latency_overlaps_for_concurrent_clients() -> None:
    with OXRSandbox(latency_seconds=0.2) as sb:
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(lambda _: get(sb, "latest.json").status_code, range(8)))
        elapsed = time.monotonic() - start
    assert statuses == [200] * 8
    assert 0.2 <= elapsed < 0.8  # serial would be 8 x 200 ms = 1.6 s


def test_peak_request_rate_counts_only_counted_requests(sandbox: OXRSandbox) -> None:
    for _ in range(6):
        get(sandbox, "latest.json")
    get(sandbox, "usage.json")
    get(sandbox, "latest.json", headers={})  # 401, not counted
    assert sandbox.peak_request_rate(1.0) == 6.0
    assert sandbox.peak_request_rate(10.0) == pytest.approx(0.6)
    # Spread requests: two bursts of 3 separated by more than the window.
    sandbox.reset()
    for _ in range(3):
        get(sandbox, "latest.json")
    time.sleep(0.35)
    for _ in range(3):
        get(sandbox, "latest.json")
    assert sandbox.peak_request_rate(0.3) == pytest.approx(3 / 0.3)


def test_request_log_has_no_query_and_no_app_id(sandbox: OXRSandbox) -> None:
    for day in ("2026-01-05", "2026-01-02", "2026-01-03"):
        get(sandbox, f"historical/{day}.json", headers={}, params={"app_id": APP_ID, "x": "1"})
    get(sandbox, "historical/2026-01-06.json", headers={})
    entries = sandbox.requests
    assert [e["path"] for e in entries][:1] == ["/api/historical/2026-01-05.json"]
    assert set(entries[0]) == {"time", "method", "path", "status", "counted", "fault"}
    assert APP_ID not in json.dumps(entries)
    assert sandbox.historical_dates_requested() == [
        "2026-01-05",
        "2026-01-02",
        "2026-01-03",
        "2026-01-06",
    ]
    assert sandbox.historical_dates_requested(counted_only=True) == [
        "2026-01-05",
        "2026-01-02",
        "2026-01-03",
    ]
    assert sandbox.request_count() == 4
    assert sandbox.request_count("/api/historical/") == 4
    assert sandbox.request_count("/api/latest") == 0
    sandbox.reset()
    assert sandbox.requests == [] and sandbox.requests_used == 0


# ---- admin over HTTP ------------------------------------------------------------------------


def test_admin_endpoints(sandbox: OXRSandbox) -> None:
    admin = sandbox.base_url.replace("/api/", "/__sandbox__/")
    health = requests.get(admin + "health", timeout=10).json()
    assert health["status"] == "ok" and health["base_url"] == sandbox.base_url
    assert health["ecb_first_date"] == "1999-01-04"

    resp = requests.post(admin + "faults", json={"kind": "503", "count": 2}, timeout=10)
    assert resp.status_code == 200 and resp.json()["pending_faults"] == 2
    bad = requests.post(admin + "faults", json={"kind": "nope"}, timeout=10)
    assert bad.status_code == 400
    assert get(sandbox, "latest.json").status_code == 503
    assert requests.delete(admin + "faults", timeout=10).json() == {"pending_faults": 0}
    assert get(sandbox, "latest.json").status_code == 200

    log = requests.get(admin + "requests", timeout=10).json()
    assert [(e["path"], e["status"]) for e in log["requests"]] == [
        ("/api/latest.json", 503),
        ("/api/latest.json", 200),
    ]
    assert log["requests_used"] == 1 and log["pending_faults"] == 0

    requests.post(admin + "faults", json={"kind": "429", "retry_after": 2}, timeout=10)
    assert requests.post(admin + "reset", timeout=10).json() == {"reset": True}
    assert sandbox.requests == [] and sandbox.pending_faults == 0 and sandbox.requests_used == 0
    assert requests.get(admin + "nothing", timeout=10).status_code == 404


# ---- CLI ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_serves_and_never_logs_the_app_id() -> None:
    port = _free_port()
    secret = "cli-secret-app-id"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dev_stack.oxr_sandbox", "--port", str(port), "--app-id", secret],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout=10)
        assert ready and ready[0].strip().endswith(f"http://127.0.0.1:{port}/api/"), ready
        base = f"http://127.0.0.1:{port}/api/"
        latest = requests.get(base + "latest.json", params={"app_id": secret}, timeout=10)
        assert latest.status_code == 200 and latest.json()["base"] == "USD"
        by_header = requests.get(
            base + "usage.json", headers={"Authorization": f"Token {secret}"}, timeout=10
        )
        assert by_header.json()["data"]["app_id"] == secret
        assert_error(requests.get(base + "latest.json", timeout=10), 401, "missing_app_id")
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "GET /api/latest.json 200" in err
    assert len([line for line in err.splitlines() if "/api/" in line]) == 3
    assert secret not in err and secret not in out

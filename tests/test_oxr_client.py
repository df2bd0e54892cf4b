"""The shared OXR client against the real sandbox: classification, retries, no key leaks."""

from __future__ import annotations

import logging
import time
from datetime import date

import pytest

from dev_stack.oxr_sandbox import OXRSandbox
from sources.open_exchange_rates import (
    OpenExchangeRatesClient,
    OXRPermanentError,
    OXRTransientError,
    resolve_api_key,
)
from tests.conftest import SANDBOX_APP_ID


def client_for(sandbox: OXRSandbox, key: str = SANDBOX_APP_ID) -> OpenExchangeRatesClient:
    return OpenExchangeRatesClient(key, sandbox.base_url)


def test_latest_and_historical_shapes(oxr_sandbox: OXRSandbox) -> None:
    client = client_for(oxr_sandbox)
    latest = client.latest()
    assert latest["base"] == "USD" and latest["rates"]["USD"] == 1.0
    day = client.historical(date(2026, 1, 2))
    assert day["rates"]["EUR"] > 0 and isinstance(day["timestamp"], int)
    assert len(client.currencies()) > 100
    assert oxr_sandbox.request_count("/api/latest.json") == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "invalid_app_id"),
        (401, "missing_app_id"),
        (403, "access_restricted"),
        (429, "not_allowed"),
        (400, "invalid_base"),
        (404, "not_found"),
    ],
)
def test_permanent_errors_raise_at_once_with_a_fix(
    oxr_sandbox: OXRSandbox, status: int, code: str
) -> None:
    oxr_sandbox.inject_faults(
        "error_body", count=5, status=status, message=code, description="sandbox says no"
    )
    with pytest.raises(OXRPermanentError) as raised:
        client_for(oxr_sandbox).latest()
    assert raised.value.code == code and raised.value.status == status
    assert code in str(raised.value) and "\n" not in str(raised.value)
    assert oxr_sandbox.request_count("/api/latest.json") == 1, "a permanent error was retried"


def test_invalid_key_is_one_request(oxr_sandbox: OXRSandbox) -> None:
    with pytest.raises(OXRPermanentError, match="invalid_app_id"):
        client_for(oxr_sandbox, "not-a-valid-key").latest()
    assert oxr_sandbox.request_count("/api/") == 1


@pytest.mark.parametrize("kind", ["503", "truncated"])
def test_transient_failures_are_retried_then_succeed(oxr_sandbox: OXRSandbox, kind: str) -> None:
    oxr_sandbox.inject_faults(kind, count=2)
    assert client_for(oxr_sandbox).latest()["base"] == "USD"
    assert oxr_sandbox.request_count("/api/latest.json") == 3


def test_rate_limit_429_honours_retry_after(oxr_sandbox: OXRSandbox) -> None:
    oxr_sandbox.inject_faults("429", count=1, retry_after=1)
    started = time.monotonic()
    assert client_for(oxr_sandbox).latest()["base"] == "USD"
    assert time.monotonic() - started >= 0.9, "Retry-After was not honoured"
    assert oxr_sandbox.request_count("/api/latest.json") == 2


def test_transient_failure_that_persists_is_classified_transient(oxr_sandbox: OXRSandbox) -> None:
    oxr_sandbox.inject_faults("503", count=10)
    with pytest.raises(OXRTransientError, match="503"):
        client_for(oxr_sandbox).latest()
    # dlt's request_max_attempts from .dlt/config.toml
    assert oxr_sandbox.request_count("/api/latest.json") == 4


def test_key_is_sent_in_header_only_and_never_logged(
    oxr_sandbox: OXRSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "leak-canary-0f9e8d7c6b5a"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(OXRPermanentError) as raised:
        client_for(oxr_sandbox, secret).latest()
    assert secret not in str(raised.value) and secret not in repr(raised.value)
    assert secret not in caplog.text
    assert all(secret not in r["path"] for r in oxr_sandbox.requests)
    # the same for a request that succeeds, with debug logging of urllib3 on
    client_for(oxr_sandbox).latest()
    assert SANDBOX_APP_ID not in caplog.text


def test_missing_key_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OXR_APP_ID", raising=False)
    with pytest.raises(OXRPermanentError, match="SOURCES__OPEN_EXCHANGE_RATES__API_KEY"):
        resolve_api_key(None)
    monkeypatch.setenv("OXR_APP_ID", "from-env")
    assert resolve_api_key(None) == "from-env"

"""One client for the Open Exchange Rates API, used by every OXR source.

- The app id travels only in the `Authorization: Token` header: never in a URL, so it cannot
  leak through request logs or exception messages that quote URLs.
- Failures are classified from OXR's status and JSON body
  (`{"error": true, "status", "message", "description"}`). Permanent ones (bad or missing app
  id, quota used up, plan lacks the endpoint, bad base, unknown path) raise `OXRPermanentError`
  at once with a one-line fix; dlt's HTTP retry is told not to repeat them and the flows' retry
  policy does not either.
- Transient ones (timeouts, dropped or truncated connections, 5xx, a 429 that is a rate limit
  rather than `not_allowed`) are retried by dlt's requests client, honouring `Retry-After`,
  with the attempts and backoff of dlt's `[runtime] request_*` settings.
"""

from __future__ import annotations

import json
import os
import re
from datetime import date
from typing import Any

from dlt.sources.helpers.requests import Client, Response
from requests.exceptions import (
    ChunkedEncodingError,
    ConnectionError,
    ContentDecodingError,
    RequestException,
    Timeout,
)

from sources.errors import PermanentSourceError, TransientSourceError
from sources.open_exchange_rates.contract import (
    OXRDataError,
    validate_currencies,
    validate_historical,
    validate_latest,
)

DEFAULT_BASE_URL = "https://openexchangerates.org/api/"
API_KEY_ENV_FALLBACK = "OXR_APP_ID"
_KEY_HELP = (
    "set SOURCES__OPEN_EXCHANGE_RATES__API_KEY (or OXR_APP_ID), or api_key under "
    "[sources.open_exchange_rates] in .dlt/secrets.toml"
)

# What to tell the operator for each permanent OXR error code.
_PERMANENT_FIXES: dict[str, str] = {
    "missing_app_id": f"no app id was sent: {_KEY_HELP}",
    "invalid_app_id": (
        f"the app id was rejected: check it on your OXR account page, then {_KEY_HELP}"
    ),
    "access_restricted": (
        "access is restricted for this app id (monthly quota used up, or the account is "
        "suspended): check usage.json or the account page, wait for the quota to reset or "
        "upgrade the plan"
    ),
    "not_allowed": (
        "the app id's plan does not include this endpoint or option: upgrade the plan "
        "or stop calling it"
    ),
    "invalid_base": (
        "the requested base currency is not available: use a base from currencies.json "
        "(USD on the free plan)"
    ),
    "not_found": "no such endpoint or date: check base_url and the requested path",
}
_PERMANENT_STATUS_CODES = {400, 401, 403, 404}
# The answers that are a verdict on the app id itself.
_KEY_CODES = frozenset({"missing_app_id", "invalid_app_id", "app_id_inactive"})


class OXRPermanentError(PermanentSourceError):
    """OXR refused the request for a reason retrying cannot fix."""

    def __init__(self, endpoint: str, status: int, code: str, fix: str) -> None:
        self.endpoint, self.status, self.code = endpoint, status, code
        super().__init__(f"Open Exchange Rates {endpoint}: HTTP {status} {code}: {fix}.")


class OXRDayNotAvailable(OXRPermanentError):
    """OXR answered 404 for one historical day: it has no data for that date.

    Permanent for that day, but not for a backfill: the day is skipped and listed; only a 404
    on every requested day means the address itself is wrong.
    """

    def __init__(self, day: date) -> None:
        self.day = day
        super().__init__(
            f"historical/{day.isoformat()}.json",
            404,
            "not_found",
            "OXR has no rates for this date; the day is skipped",
        )


class OXRTransientError(TransientSourceError):
    """OXR or the network failed in a way that may pass; retried by the policy."""


def resolve_api_key(api_key: str | None) -> str:
    """The configured app id, or `OXR_APP_ID`, or a permanent error that says how to set one."""
    key = api_key or os.environ.get(API_KEY_ENV_FALLBACK)
    if not key:
        raise OXRPermanentError(
            "configuration", 401, "missing_app_id", _PERMANENT_FIXES["missing_app_id"]
        )
    return str(key)


# What an app id can look like: OXR's are 32 hex digits; other deployments (the sandbox) use
# other tokens, but none has spaces, quotes, a scheme or a `Token ` prefix (a paste slip).
_APP_ID_SHAPE = re.compile(r"[A-Za-z0-9_.~-]{1,256}")
# The probe of `check_api_key` is one request; a slow network must not hold the CLI long.
PROBE_TIMEOUT_SECONDS = 10


def check_api_key_shape(key: str) -> None:
    """Refuse a value no OXR app id could be, without echoing it (it may still be a secret)."""
    if not _APP_ID_SHAPE.fullmatch(key):
        raise OXRPermanentError(
            "configuration",
            401,
            "invalid_app_id",
            f"the configured app id ({len(key)} characters) has spaces, quotes, a prefix or "
            "other characters an app id never has (OXR app ids are 32 letters and digits); "
            f"{_KEY_HELP}",
        )


def check_api_key(api_key: str | None, base_url: str = DEFAULT_BASE_URL) -> str:
    """The key, checked: set, shaped like an app id, and accepted by OXR (one request).

    The request is `usage.json` (free, never counted against the quota), made once. Only a
    verdict on the key itself (HTTP 401: missing, invalid or inactive app id) raises
    `OXRPermanentError`; anything else (a network failure, a 5xx, an endpoint this base URL
    lacks) passes, and the run's own requests retry and classify it as usual.
    """
    key = resolve_api_key(api_key)
    check_api_key_shape(key)
    try:
        OpenExchangeRatesClient(key, base_url, single_attempt=True).usage()
    except OXRPermanentError as refused:
        if refused.status == 401 or refused.code in _KEY_CODES:
            raise
    except (OXRTransientError, OXRDataError):
        pass
    return key


def _error_code(response: Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        return str(body.get("message") or "")
    return ""


def _is_transient_response(response: Response | None, exception: BaseException | None) -> bool:
    """dlt retry predicate: 5xx, and 429 unless OXR says the plan does not allow the request."""
    if response is None:
        return False
    if response.status_code >= 500:
        return True
    return response.status_code == 429 and _error_code(response) != "not_allowed"


class OpenExchangeRatesClient:
    """Thin, retrying, classifying access to the OXR endpoints our sources use."""

    def __init__(
        self, api_key: str, base_url: str = DEFAULT_BASE_URL, single_attempt: bool = False
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        probe = {"request_max_attempts": 1, "request_timeout": PROBE_TIMEOUT_SECONDS}
        self._http = Client(
            **(probe if single_attempt else {}),  # type: ignore[arg-type]
            raise_for_status=False,
            status_codes=(),  # retries are decided by _is_transient_response alone
            exceptions=(Timeout, ConnectionError, ChunkedEncodingError, ContentDecodingError),
            retry_condition=_is_transient_response,
            respect_retry_after_header=True,
            session_attrs={"headers": {"Authorization": f"Token {api_key}"}},
        )
        if not single_attempt:
            # Attempts, backoff and timeout come from dlt's [runtime] request_* settings.
            self._http.configure()

    def get_json(self, endpoint: str, params: dict[str, str] | None = None) -> Any:
        """GET `endpoint` (e.g. `latest.json`) and return its JSON body, or raise classified.

        The body's shape is the data contract's business (`contract.py`): a whole JSON answer
        of the wrong shape is bad data (permanent), not a failed request (transient).
        """
        try:
            response = self._http.get(self.base_url + endpoint, params=params)
        except RequestException as exc:
            raise OXRTransientError(
                f"Open Exchange Rates {endpoint}: {type(exc).__name__} after retries; "
                "check the network or base_url, the run will be retried"
            ) from None
        return self._classify(endpoint, response)

    def _classify(self, endpoint: str, response: Response) -> Any:
        status = response.status_code
        if status == 200:
            try:
                # The standard library, not `response.json()` (simplejson refuses NaN): a whole
                # answer with a NaN rate must reach the data contract and be refused there as
                # bad data, not be taken for a truncated body and retried.
                body = json.loads(response.content)
            except ValueError:
                raise OXRTransientError(
                    f"Open Exchange Rates {endpoint}: HTTP 200 with a body that is not JSON "
                    "(truncated?); the run will be retried"
                ) from None
            return body
        code = _error_code(response) or f"http_{status}"
        if code in _PERMANENT_FIXES or (status in _PERMANENT_STATUS_CODES):
            fix = _PERMANENT_FIXES.get(
                code, "the request was refused; check the description at OXR"
            )
            raise OXRPermanentError(endpoint, status, code, fix)
        raise OXRTransientError(
            f"Open Exchange Rates {endpoint}: HTTP {status} {code} after retries; "
            "the run will be retried"
        )

    # The three data endpoints return only answers that passed the contract
    # (`contract.py`): a bad answer raises OXRDataError here, before any caller can write it.

    def currencies(self) -> dict[str, str]:
        """`currencies.json`: code -> name (free, not counted against the quota)."""
        return validate_currencies(self.get_json("currencies.json"))

    def latest(self) -> dict[str, Any]:
        """`latest.json`: the most recent rates against USD."""
        body = self.get_json("latest.json")
        validate_latest(body)
        return body

    def historical(self, day: date) -> dict[str, Any]:
        """`historical/YYYY-MM-DD.json`: the end-of-day rates of one UTC day.

        A 404 raises `OXRDayNotAvailable` (no data for that date).
        """
        try:
            body = self.get_json(f"historical/{day.isoformat()}.json")
        except OXRPermanentError as error:
            if error.status == 404:
                raise OXRDayNotAvailable(day) from None
            raise
        validate_historical(body, day)
        return body

    def usage(self) -> dict[str, Any]:
        """`usage.json`: plan and quota of the app id (free, not counted)."""
        body = self.get_json("usage.json")
        if not isinstance(body, dict):
            raise OXRDataError("usage.json", None, "(body)", f"is {type(body).__name__}")
        return body

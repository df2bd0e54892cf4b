"""OXR's answers: its error bodies, descriptions and the JSON framing of every response.

Error bodies are OXR's: ``{"error": true, "status": <int>, "message": <code>, "description": ...}``
(https://docs.openexchangerates.org/reference/errors), each code at the status real OXR sends it
with (its errors page, and answers recorded by public client libraries):

- 401 ``missing_app_id`` / ``invalid_app_id``; 401 ``app_id_inactive`` for an app id listed in
  ``inactive_app_ids`` (a deactivated one);
- 429 ``access_restricted`` once the monthly quota is used up ("repeated over-use"), with OXR's
  "Access restricted until <date> (reason: too_many_requests)" description; 403
  ``access_restricted`` ("other reason given in description") for an app id listed in
  ``restricted_app_ids`` (a suspended account);
- 429 ``not_allowed`` (the plan lacks the feature);
- 400 ``invalid_base``; 404 ``not_found`` (unknown route);
- 400 ``not_available`` for a historical date OXR has no rates for: before 1999-01-01, after
  today's UTC date, or a day listed in ``unavailable_days`` (a knob: the ECB series has a
  value for every day, the nearest earlier one, so a gap must be made on purpose).

A malformed historical date (``2026-13-01``, ``yesterday``) gets 400 ``invalid_date``: OXR
documents nothing for it, so that one is a sandbox choice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DISCLAIMER = "Usage subject to terms: https://openexchangerates.org/terms"
LICENSE = "https://openexchangerates.org/license"

_SUPPORT = "support@openexchangerates.org"
# Descriptions: the 401 texts and the `base` not_allowed text are OXR's own (docs and observed
# responses); the others follow OXR's wording style because OXR does not document them.
DESCRIPTIONS = {
    "missing_app_id": (
        "No App ID provided. Please sign up at https://openexchangerates.org/signup, "
        f"or contact {_SUPPORT}."
    ),
    "invalid_app_id": (
        "Invalid App ID provided - please sign up at https://openexchangerates.org/signup, "
        f"or contact {_SUPPORT}."
    ),
    "not_found": "Client requested a non-existent resource/route.",
    "not_allowed_base": (
        "Changing the API `base` currency is available for Developer, Enterprise and Unlimited "
        f"plan clients. Please upgrade, or contact {_SUPPORT} with any questions."
    ),
    "not_allowed_symbols": (
        "Requesting specific `symbols` is available for Developer, Enterprise and Unlimited "
        f"plan clients. Please upgrade, or contact {_SUPPORT} with any questions."
    ),
    "not_allowed_historical": (
        "Historical rates are not available on your current plan. Please upgrade, "
        f"or contact {_SUPPORT} with any questions."
    ),
    "app_id_inactive": (
        "This App ID has been deactivated. Please use another or contact "
        f"{_SUPPORT} for assistance."
    ),
    # over-use: OXR's recorded wording, with the date filled in by `_over_use_description`
    "access_restricted": (
        "Access restricted until {until} (reason: too_many_requests). If there has been a "
        f"mistake, please contact {_SUPPORT}."
    ),
    "access_restricted_account": (
        "Access restricted for this App ID (reason: account suspended). If there has been a "
        f"mistake, please contact {_SUPPORT}."
    ),
    "not_available": (
        "Historical rates for the requested date are not available - please try a different "
        f"date, or contact {_SUPPORT}."
    ),
    "invalid_base": (
        "Client requested rates for an unsupported base currency. "
        "See https://openexchangerates.org/api/currencies.json for supported currencies."
    ),
    "invalid_date": (
        "Invalid date: use YYYY-MM-DD, between 1999-01-01 and today's UTC date "
        "(sandbox error; OXR does not document this case)."
    ),
    "service_unavailable": "The service is temporarily unavailable (injected fault).",
    "too_many_requests": "Too many requests; retry after the Retry-After delay (injected fault).",
}


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]
    counted: bool = False


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(payload, indent=2).encode("utf-8")
    return Response(
        status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    )


def error_body(status: int, message: str, description: str | None = None) -> dict[str, Any]:
    """OXR's error object; kept public so clients' tests can build expected bodies."""
    return {
        "error": True,
        "status": status,
        "message": message,
        "description": description if description is not None else DESCRIPTIONS[message],
    }


def error(status: int, message: str, description: str | None = None, **headers: str) -> Response:
    return json_response(status, error_body(status, message, description), headers)


def _over_use_description(today: dt.date) -> str:
    """OXR's over-use text: restricted until the quota resets, the first of next month."""
    until = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return DESCRIPTIONS["access_restricted"].format(until=until.isoformat())


def over_use(today: dt.date) -> Response:
    """The answer real OXR gives once an app id has used up its quota: 429, not 403."""
    return error(429, "access_restricted", _over_use_description(today))

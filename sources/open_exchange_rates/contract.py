"""The data contract of OXR answers: what is refused at the door, before anything is written.

Every answer the sources use passes here first. A refusal is `OXRDataError`, a permanent error
(retrying the same request returns the same bad answer; dlt and Prefect do not repeat it) whose
one-line message names the endpoint, the day and the field. What only deserves a warning is
logged and returned to the caller instead (see docs/exchange_rates.md, "Data contract").
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any

from sources.errors import PermanentSourceError

logger = logging.getLogger(__name__)

CURRENCY_CODE = re.compile(r"^[A-Z]{3}$")
# Refuse a currencies answer that would shrink the table by more than this share.
DEFAULT_MAX_CURRENCIES_SHRINK = 0.2
# A `latest.json` publication this far in our future is not a clock difference but a bad answer.
LATEST_FUTURE_TOLERANCE = timedelta(hours=1)
# Older than this, `latest.json` is stale: kept (it is what OXR published) but warned about.
LATEST_STALE_AFTER = timedelta(days=2)
# A rate that moves by more than this share from one day to the next is warned about.
RATE_JUMP_WARNING_SHARE = 0.5
_SHOWN_VALUE_CHARS = 40


class OXRDataError(PermanentSourceError):
    """OXR answered 200 with data that breaks the contract; nothing of that answer is written."""

    def __init__(self, endpoint: str, day: date | None, field: str, problem: str) -> None:
        self.endpoint, self.day, self.field, self.problem = endpoint, day, field, problem
        where = f"Open Exchange Rates {endpoint}"
        if day is None:
            fix = "check the answer at OXR (or base_url), then rerun"
        else:
            where += f" (day {day.isoformat()})"
            fix = "check the day at OXR, then rerun the backfill: it fetches only refused days"
        super().__init__(
            f"{where}: field `{field}` {problem}; refused, nothing written. Fix: {fix}."
        )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_VALUE_CHARS else text[:_SHOWN_VALUE_CHARS] + "..."


def validate_currencies(body: Any, endpoint: str = "currencies.json") -> dict[str, str]:
    """`currencies.json` as code -> name, or `OXRDataError` for the first field that is wrong.

    A non-empty object of 3-letter uppercase codes to non-empty string names; anything else
    at the top level (an error flag, a disclaimer) would become a currency row, so it is refused.
    """
    if not isinstance(body, dict):
        raise OXRDataError(endpoint, None, "(body)", f"is {type(body).__name__}, not an object")
    if not body:
        raise OXRDataError(endpoint, None, "(body)", "is an empty object: no currencies")
    for code, name in body.items():
        if not CURRENCY_CODE.match(str(code)):
            raise OXRDataError(
                endpoint, None, str(code), "is not a 3-letter uppercase currency code"
            )
        if not isinstance(name, str) or not name.strip():
            raise OXRDataError(endpoint, None, code, f"has name {_shown(name)}, not a text")
    return dict(body)


def check_currencies_shrink(new_count: int, previous_count: int | None, max_shrink: float) -> None:
    """Refuse an answer that would shrink CURRENCIES by more than `max_shrink` (a share)."""
    if not previous_count or new_count >= previous_count:
        return
    shrink = 1 - new_count / previous_count
    if shrink > max_shrink:
        raise OXRDataError(
            "currencies.json",
            None,
            "(body)",
            f"lists {new_count} currencies, the table {previous_count} ({shrink:.0%} fewer, "
            f"max_currencies_shrink={max_shrink:g}; if real, raise it for one run)",
        )


@dataclass(frozen=True)
class RatesAnswer:
    """A `latest.json` or historical answer that passed the contract."""

    published: datetime  # OXR's `timestamp`, UTC
    base: str
    rates: dict[str, float]


def _validate_rates_body(body: Any, endpoint: str, day: date | None) -> RatesAnswer:
    def refuse(field: str, problem: str) -> OXRDataError:
        return OXRDataError(endpoint, day, field, problem)

    if not isinstance(body, dict):
        raise refuse("(body)", f"is {type(body).__name__}, not an object")
    timestamp = body.get("timestamp")
    if timestamp is None:
        raise refuse("timestamp", "is missing")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp <= 0:
        raise refuse("timestamp", f"is {_shown(timestamp)}, not a positive Unix time")
    base = body.get("base")
    if base is None:
        raise refuse("base", "is missing")
    if not isinstance(base, str) or not CURRENCY_CODE.match(base):
        raise refuse("base", f"is {_shown(base)}, not a 3-letter uppercase currency code")
    rates = body.get("rates")
    if rates is None:
        raise refuse("rates", "is missing or null")
    if not isinstance(rates, dict) or not rates:
        raise refuse("rates", f"is {_shown(rates)}, not a non-empty object")
    for code, value in rates.items():
        if not CURRENCY_CODE.match(str(code)):
            raise refuse(f"rates.{code}", "is not a 3-letter uppercase currency code")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise refuse(f"rates.{code}", f"is {_shown(value)}, not a positive finite number")
    return RatesAnswer(datetime.fromtimestamp(timestamp, UTC), base, dict(rates))


def validate_latest(body: Any, *, now: datetime | None = None) -> RatesAnswer:
    """`latest.json`, refused if broken or published in the future; warned if stale."""
    answer = _validate_rates_body(body, "latest.json", None)
    now = now or datetime.now(UTC)
    if answer.published > now + LATEST_FUTURE_TOLERANCE:
        raise OXRDataError(
            "latest.json",
            None,
            "timestamp",
            f"is {answer.published.isoformat()}, in the future (now {now.isoformat()})",
        )
    if answer.published < now - LATEST_STALE_AFTER:
        logger.warning(
            "Open Exchange Rates latest.json: published %s, more than %s ago; kept as OXR's "
            "latest publication",
            answer.published.isoformat(),
            LATEST_STALE_AFTER,
        )
    return answer


def validate_historical(body: Any, day: date) -> RatesAnswer:
    """A historical day, refused if broken or if its `timestamp` is not within that UTC day.

    OXR's end-of-day snapshot may be stamped exactly at the next midnight; that is accepted.
    """
    endpoint = f"historical/{day.isoformat()}.json"
    answer = _validate_rates_body(body, endpoint, day)
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if not day_start <= answer.published <= day_start + timedelta(days=1):
        raise OXRDataError(
            endpoint,
            day,
            "timestamp",
            f"is {answer.published.isoformat()}, not within the requested day",
        )
    return answer


def rate_jumps(
    days: list[tuple[date, dict[str, float]]], share: float = RATE_JUMP_WARNING_SHARE
) -> list[str]:
    """Warnings for rates that moved by more than `share` from one calendar day to the next.

    Only a warning: redenominations and currency crises move real rates that much, and a
    refusal would block true data. `days` must be sorted; gaps between days are not compared.
    """
    warnings = []
    for (before, old), (day, new) in pairwise(days):
        if day - before != timedelta(days=1):
            continue
        for code, value in new.items():
            previous = old.get(code)
            if previous and abs(value / previous - 1) > share:
                warning = f"{day.isoformat()} {code} {previous:g} -> {value:g}"
                logger.warning(
                    "Open Exchange Rates: rate moved more than %.0f%%: %s", share * 100, warning
                )
                warnings.append(warning)
    return warnings

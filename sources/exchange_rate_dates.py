"""Date inputs of the historical exchange rates, validated once with messages that say what to fix.

A plain module (no dlt, no HTTP client): the CLI refuses a bad date with it at once, and
`pipelines.errors` classifies `InvalidDateError` without importing the OXR source.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sources.errors import PermanentSourceError

# OXR's historical series starts here; earlier dates do not exist at OXR.
FIRST_HISTORICAL_DATE = date(1999, 1, 1)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class InvalidDateError(PermanentSourceError, ValueError):
    """A date or date range the historical endpoint cannot serve; retrying cannot help."""


def utc_today() -> date:
    """Today's date in UTC, the calendar OXR's daily snapshots follow."""
    return datetime.now(UTC).date()


def parse_date(value: date | str, name: str = "date") -> date:
    """A `date` from a `date` or a `YYYY-MM-DD` string, else `InvalidDateError`."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if _ISO_DATE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise InvalidDateError(
        f"{name}={value!r} is not a valid date: use YYYY-MM-DD, for example 2026-01-01"
    )


def validate_date_range(
    start_date: date | str,
    end_date: date | str | None = None,
    *,
    today: date | None = None,
) -> tuple[date, date]:
    """The inclusive range `start_date..end_date`; `end_date` defaults to yesterday (UTC).

    Today is refused as well as the future: OXR serves today's historical file with the
    latest (still moving) rates, and a file for a day must never change once written, because
    Snowpipe does not load a file again under the same name. `latest.json` covers today.
    """
    today = today or utc_today()
    yesterday = today - timedelta(days=1)
    start = parse_date(start_date, "start_date")
    end = yesterday if end_date is None or end_date == "" else parse_date(end_date, "end_date")
    for name, day in (("start_date", start), ("end_date", end)):
        if day < FIRST_HISTORICAL_DATE:
            raise InvalidDateError(
                f"{name}={day.isoformat()} is before {FIRST_HISTORICAL_DATE.isoformat()}, "
                "where Open Exchange Rates' historical series begins"
            )
        if day > today:
            raise InvalidDateError(
                f"{name}={day.isoformat()} is in the future (today is {today.isoformat()} UTC); "
                f"the last complete day is {yesterday.isoformat()}"
            )
        if day == today:
            raise InvalidDateError(
                f"{name}={day.isoformat()} is today (UTC), whose rates are not final until the "
                f"day ends; backfill up to {yesterday.isoformat()} and let the daily "
                "latest.json run cover today"
            )
    if start > end:
        raise InvalidDateError(
            f"start_date={start.isoformat()} is after end_date={end.isoformat()}; "
            "the range is inclusive and must run forwards"
        )
    return start, end


def days_between(start: date, end: date) -> Iterator[date]:
    """Every day from `start` to `end`, both included."""
    for offset in range((end - start).days + 1):
        yield start + timedelta(days=offset)


@dataclass(frozen=True)
class DateRange:
    """An inclusive range of historical days, valid once built with `DateRange.parse`.

    Parsed at the edge (a flow's parameters, the CLI, a test) and passed down typed: the
    pipeline neither parses nor validates it again.
    """

    start: date
    end: date

    @classmethod
    def parse(
        cls,
        start_date: date | str,
        end_date: date | str | None = None,
        *,
        today: date | None = None,
    ) -> DateRange:
        """`validate_date_range` as a range: `end_date` defaults to yesterday (UTC)."""
        return cls(*validate_date_range(start_date, end_date, today=today))

    def days(self) -> list[date]:
        """Every day of the range, both ends included."""
        return list(days_between(self.start, self.end))

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"

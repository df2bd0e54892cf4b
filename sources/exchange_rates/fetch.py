"""Concurrent, rate-limited, quota-aware fetching of OXR historical days.

Why hand-written: dlt's requests client retries and backs off per request, and dlt can run
resources in parallel, but it has no notion of a request *rate* shared by several workers,
of an API quota, or of stopping sibling requests the moment one fails for good.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sources.errors import PermanentSourceError
from sources.open_exchange_rates import (
    OpenExchangeRatesClient,
    OXRDataError,
    OXRDayNotAvailable,
    OXRPermanentError,
)

logger = logging.getLogger(__name__)

# Defaults safe for OXR's free plan (1,000 requests a month, no burst allowance documented).
DEFAULT_MAX_CONCURRENCY = 4
DEFAULT_MAX_REQUESTS_PER_SECOND = 2.0


class QuotaExceededError(PermanentSourceError):
    """The plan's remaining monthly requests cannot cover what a run needs."""


class BackfillCancelled(Exception):
    """Raised inside a worker that was told to stop before it sent its request."""


class RequestRateLimiter:
    """At most `max_requests_per_second` request starts in any one-second window.

    A sliding window of recent start times rather than evenly spaced slots: it allows the
    configured number of requests at once, then waits, so it never exceeds the limit however
    the workers are scheduled. The window carries a small guard so that the few milliseconds
    between our clock and the server's cannot squeeze one request too many into its second.
    Rates below 1/s become one request per 1/rate seconds; fractional rates above 1 round down.
    """

    def __init__(self, max_requests_per_second: float, guard_seconds: float = 0.05) -> None:
        if max_requests_per_second <= 0:
            raise ValueError("max_requests_per_second must be positive")
        self.max_requests_per_second = float(max_requests_per_second)
        if max_requests_per_second >= 1:
            self._capacity = math.floor(max_requests_per_second)
            self._window = 1.0 + guard_seconds
        else:
            self._capacity = 1
            self._window = 1.0 / max_requests_per_second + guard_seconds
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until a request may start; False if `stop` was set while waiting."""
        while True:
            with self._lock:
                now = time.monotonic()
                while self._starts and now - self._starts[0] >= self._window:
                    self._starts.popleft()
                if len(self._starts) < self._capacity:
                    if stop is not None and stop.is_set():
                        return False
                    self._starts.append(now)
                    return True
                delay = self._window - (now - self._starts[0])
            if stop is None:
                time.sleep(delay)
            elif stop.wait(delay):
                return False


def remaining_requests(client: OpenExchangeRatesClient) -> int | None:
    """Requests left this month per `usage.json` (free, not counted); None means unlimited."""
    usage = client.usage().get("data", {}).get("usage", {})
    remaining = usage.get("requests_remaining")
    quota = usage.get("requests_quota")
    if remaining is None or quota is None or int(quota) < 0 or int(remaining) < 0:
        return None
    return int(remaining)


def check_quota(
    client: OpenExchangeRatesClient, needed: int, *, what: str = "this backfill"
) -> int | None:
    """Refuse, before any counted request, a run the remaining monthly quota cannot cover.

    Returns the remaining requests (None = unlimited). Reading `usage.json` also proves the
    app id: a bad key fails here, on a free request, with the client's classified message.
    """
    remaining = remaining_requests(client)
    if remaining is not None and needed > remaining:
        raise QuotaExceededError(
            f"Open Exchange Rates quota: {what} needs {needed} historical requests but only "
            f"{remaining} remain this month; shorten the date range to at most {remaining} "
            "missing days, wait for the monthly reset, or upgrade the plan"
        )
    return remaining


@dataclass(frozen=True)
class FetchedDay:
    """One historical day as OXR answered it."""

    day: date
    payload: dict[str, Any]


class RefusedDaysError(OXRDataError):
    """Several historical days broke the data contract; the first one's message leads."""

    def __init__(self, refused: list[OXRDataError]) -> None:
        self.refused = sorted(refused, key=lambda error: error.day or date.min)
        first = self.refused[0]
        PermanentSourceError.__init__(
            self,
            f"{len(self.refused)} historical days refused; first: {first} "
            f"Refused days: {', '.join(str(e.day) for e in self.refused)}.",
        )
        self.endpoint, self.day, self.field, self.problem = (
            first.endpoint,
            first.day,
            first.field,
            first.problem,
        )


@dataclass
class DayProblems:
    """Days of a backfill that were not kept, and why; the other days go on without them.

    - `not_available`: OXR has no data for that date (HTTP 400 `not_available`, or a 404):
      skipped and listed, the range completes without it. `not_found` holds the 404 ones.
    - `refused`: the answer broke the data contract: nothing of it written, the run fails
      (permanently) once every other day is saved, and a rerun asks only for these days.
    """

    not_available: list[date] = field(default_factory=list)
    not_found: list[date] = field(default_factory=list)  # the 404 subset of not_available
    refused: list[OXRDataError] = field(default_factory=list)
    rate_warnings: list[str] = field(default_factory=list)  # kept days, only warned about

    def raise_if_fatal(self, requested: int, base_url: str) -> None:
        """404 on every requested day (a wrong address), or any refused day, fails the run.

        OXR's `not_available` names the date it has no rates for, so days answered with it never
        make a wrong address, even when they are all the days of the run.
        """
        if requested and len(self.not_found) == requested:
            raise OXRPermanentError(
                "historical",
                404,
                "not_found",
                f"all {requested} requested days answered 404, which means a wrong address, "
                f"not missing data: check [sources.open_exchange_rates] base_url ({base_url})",
            )
        if len(self.refused) == 1:
            raise self.refused[0]
        if self.refused:
            raise RefusedDaysError(self.refused)


def fetch_historical_days(
    client: OpenExchangeRatesClient,
    days: Iterable[date],
    *,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND,
    on_progress: Callable[[int, int], None] | None = None,
    problems: DayProblems | None = None,
) -> Iterator[FetchedDay]:
    """Fetch `days` with bounded parallelism under a shared rate limit, yielding as they land.

    Days are yielded in completion order, so a consumer can persist them while the rest are
    still in flight. A problem of one day (404, an answer refused by the data contract) does
    not stop the others: it is recorded in `problems` (the caller decides, after saving the
    good days, with `problems.raise_if_fatal`); without `problems` it is raised at the end.
    Any other failure stops everything at once: queued days are cancelled, workers about to
    send are told to stop, and the days that did complete are still yielded before the failure
    is raised, so nothing already paid for is thrown away. Transient HTTP failures were already
    retried by the client; what reaches here is final for this attempt.
    """
    own_problems = problems is None
    problems = DayProblems() if problems is None else problems
    pending_days = list(days)
    total = len(pending_days)
    if total == 0:
        return
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    limiter = RequestRateLimiter(max_requests_per_second)
    stop = threading.Event()
    problems_lock = threading.Lock()

    def fetch_one(day: date) -> FetchedDay | None:
        if not limiter.acquire(stop):
            raise BackfillCancelled(day.isoformat())
        try:
            return FetchedDay(day, client.historical(day))
        except OXRDayNotAvailable as missing:
            logger.warning("%s", missing)
            with problems_lock:
                problems.not_available.append(day)
                if missing.status == 404:
                    problems.not_found.append(day)
            return None
        except OXRDataError as refused:
            logger.error("%s", refused)
            with problems_lock:
                problems.refused.append(refused)
            return None
        except BaseException:
            # Stop siblings from here, not when the consumer gets to this result: that may be
            # after a load, and every request sent meanwhile would be wasted or refused.
            stop.set()
            raise

    done_count = 0
    failure: BaseException | None = None
    pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="oxr-historical")
    try:
        futures: set[Future[FetchedDay | None]] = {pool.submit(fetch_one, d) for d in pending_days}
        while futures:
            finished, futures = wait(futures, return_when=FIRST_COMPLETED)
            for future in finished:
                if future.cancelled():
                    continue
                error = future.exception()
                if error is None:
                    done_count += 1
                    if on_progress is not None:
                        on_progress(done_count, total)
                    fetched = future.result()
                    if fetched is not None:
                        yield fetched
                elif not isinstance(error, BackfillCancelled) and failure is None:
                    failure = error
                    stop.set()
                    for queued in futures:
                        queued.cancel()
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    if failure is not None:
        logger.error("Stopped after %d/%d days: %s", done_count, total, failure, exc_info=False)
        raise failure
    problems.not_available.sort()
    problems.not_found.sort()
    if own_problems:
        problems.raise_if_fatal(total, client.base_url)

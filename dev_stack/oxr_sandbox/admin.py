"""The sandbox's admin API over HTTP, for a sandbox in another process (no auth, 127.0.0.1 only).

``GET /__sandbox__/health``, ``GET /__sandbox__/requests`` (the request log, usage and pending
faults), ``POST /__sandbox__/faults`` (JSON ``{"kind", "count", ...}``, see
`dev_stack.oxr_sandbox.faults`), ``DELETE /__sandbox__/faults``, ``POST /__sandbox__/reset``,
``POST /__sandbox__/latency`` (JSON ``{"seconds": N}``: the delay per API request from now on; a
slow OXR for overlap tests). Admin requests are not logged, so polling them does not disturb
assertions.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from dev_stack.oxr_sandbox.answers import Response, error, json_response
from dev_stack.oxr_sandbox.data import load_series

ADMIN_PREFIX = "/__sandbox__/"


def admin_answer(sandbox: Any, handler: BaseHTTPRequestHandler, method: str, path: str) -> Response:
    """The answer to one admin request (`sandbox` is the OXRSandbox it drives)."""
    route = (method, path.rstrip("/"))
    if route == ("GET", "/__sandbox__/health"):
        series = load_series()
        return json_response(
            200,
            {
                "status": "ok",
                "base_url": sandbox.base_url,
                "ecb_first_date": series.dates[0].isoformat(),
                "ecb_last_date": series.dates[-1].isoformat(),
            },
        )
    if route == ("GET", "/__sandbox__/requests"):
        return json_response(
            200,
            {
                "requests": sandbox.requests,
                "requests_used": sandbox.requests_used,
                "monthly_quota": sandbox.monthly_quota,
                "pending_faults": sandbox.pending_faults,
            },
        )
    if route == ("POST", "/__sandbox__/faults"):
        try:
            spec = json.loads(_read_body(handler) or b"{}")
            if not isinstance(spec, dict):
                raise ValueError("body must be a JSON object")
            kind = str(spec.pop("kind"))
            count = int(spec.pop("count", 1))
            sandbox.inject_faults(kind, count, **spec)
        except (KeyError, ValueError, TypeError) as exc:
            return error(400, "invalid_fault", f"Bad fault specification: {exc}")
        return json_response(200, {"queued": count, "pending_faults": sandbox.pending_faults})
    if route == ("POST", "/__sandbox__/latency"):
        try:
            spec = json.loads(_read_body(handler) or b"{}")
            sandbox.latency_seconds = max(0.0, float(spec["seconds"]))
        except (KeyError, ValueError, TypeError) as exc:
            return error(400, "invalid_latency", f'Send {{"seconds": <number>}}: {exc}')
        return json_response(200, {"latency_seconds": sandbox.latency_seconds})
    if route == ("DELETE", "/__sandbox__/faults"):
        sandbox.clear_faults()
        return json_response(200, {"pending_faults": 0})
    if route == ("POST", "/__sandbox__/reset"):
        _read_body(handler)
        sandbox.reset()
        return json_response(200, {"reset": True})
    return error(404, "not_found")


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length > 0 else b""

"""The fault script: injected failures and bad answers, for tests and benchmarks.

A FIFO queue, one fault consumed per request to any ``/api/`` path except ``usage.json`` (so
``currencies.json`` and unknown ``/api/`` paths consume faults too; ``usage.json`` stays a
reliable probe). A fault is applied after the configured latency and before auth. Faulted
requests never count against the quota. Kinds:

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
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dev_stack.oxr_sandbox.answers import DESCRIPTIONS, Response, error, json_response

FAULT_KINDS = ("503", "429", "truncated", "error_body", "answer", "patch")


@dataclass(frozen=True)
class Fault:
    kind: str
    params: dict[str, Any]


def validate_fault(kind: str, params: Mapping[str, Any]) -> None:
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


def patched(response: Response, params: Mapping[str, Any]) -> Response:
    """The real answer with a patch fault's changes; errors are passed through unchanged."""
    if response.status != 200:
        return response
    body = json.loads(response.body)
    body.update(params.get("set", {}))
    for key in params.get("remove", ()):
        body.pop(key, None)
    if "rates" in params and isinstance(body.get("rates"), dict):
        body["rates"].update(params["rates"])
    return json_response(200, body)


def fault_response(fault: Fault) -> Response:
    p = fault.params
    if fault.kind == "503":
        return error(503, "service_unavailable", p.get("description"))
    if fault.kind == "429":
        retry_after = p.get("retry_after", 1)
        return error(
            429,
            str(p.get("message", "too_many_requests")),
            p.get("description", DESCRIPTIONS["too_many_requests"]),
            **{"Retry-After": str(retry_after)},
        )
    if fault.kind == "answer":
        return json_response(200, p["body"])
    status = int(p.get("status", 500))
    return error(
        status,
        str(p.get("message", "internal_error")),
        str(p.get("description", "Injected error (sandbox fault script).")),
    )

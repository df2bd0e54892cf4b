"""A local stand-in for Slack and PagerDuty: records every webhook POST it receives.

The local stack points both notification blocks (see `infra/alerting.py`) at this receiver, so an
operator sees alerts work with no Slack or PagerDuty account: each POST is appended as one JSON
line (time, path, headers without credentials, JSON body) to `data_dir()/alerts/webhooks.jsonl`.
The path tells the channels apart: `/slack/...` and `/pagerduty/v2/enqueue`.

It answers like the real services so senders behave as in production: Slack's `ok` text, and
PagerDuty Events v2's `202 {"status": "success", ...}`.

Run it alone: `python -m dev_stack.webhook_receiver --port 8766`; read what arrived with
`tail -f .data/alerts/webhooks.jsonl`. Tests use `WebhookReceiver`
in process (`with WebhookReceiver(port=0) as receiver: ...; receiver.wait_for(...)`).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from dev_stack.http_service import LoopbackHTTPServer, LoopbackHTTPService
from pipelines.environment import data_dir

SLACK_PATH = "/slack/alerts"
PAGERDUTY_PATH = "/pagerduty/v2/enqueue"
HEALTH_PATH = "/__receiver__/health"
# Never written to the record: a local receiver is harmless, but the habit is not.
_REDACTED_HEADERS = {"authorization", "cookie", "x-api-key", "proxy-authorization"}


def default_record_file() -> Path:
    """Where the receiver of this data folder appends what it receives."""
    return data_dir() / "alerts" / "webhooks.jsonl"


def read_records(path: Path | None = None) -> list[dict[str, Any]]:
    """Every record in the JSONL file (oldest first); empty when nothing arrived yet."""
    path = path or default_record_file()
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def is_slack(record: dict[str, Any]) -> bool:
    """A Slack-format payload: posted to the Slack path with `text` (and Block Kit `blocks`)."""
    body = record.get("body")
    return record["path"].startswith("/slack") and isinstance(body, dict) and "text" in body


def is_pagerduty(record: dict[str, Any], event_action: str = "trigger") -> bool:
    """A PagerDuty Events v2 event of `event_action`: a trigger carries a payload with a
    summary; a resolve (or acknowledge) only the routing and dedup keys."""
    body = record.get("body")
    if not (
        record["path"].startswith("/pagerduty")
        and isinstance(body, dict)
        and body.get("event_action") == event_action
        and "routing_key" in body
    ):
        return False
    if event_action == "trigger":
        return isinstance(body.get("payload"), dict) and "summary" in body["payload"]
    return bool(body.get("dedup_key"))


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackHTTPServer

    def do_GET(self) -> None:
        if self.path == HEALTH_PATH:
            self._answer(200, {"status": "ok", "received": self.server.service.count()})
        else:
            self._answer(404, {"error": "only POST is recorded"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _REDACTED_HEADERS}
        self.server.service.record(self.path, headers, body)
        if self.path.startswith("/pagerduty"):
            # What Events v2 answers to an accepted event.
            self._answer(202, {"status": "success", "message": "Event processed"})
        else:
            self._answer(200, None, text="ok")  # Slack incoming webhooks answer `ok`

    def _answer(self, status: int, payload: Any, text: str | None = None) -> None:
        data = text.encode() if text is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if text is not None else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the JSONL file is the log


class WebhookReceiver(LoopbackHTTPService):
    """Threaded HTTP server on 127.0.0.1 that records each POST; usable as a context manager."""

    def __init__(self, port: int = 0, record_file: Path | None = None) -> None:
        super().__init__(_Handler, port, name="webhook-receiver")
        self.record_file = record_file or default_record_file()
        self.record_file.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._records: list[dict[str, Any]] = []

    @property
    def slack_url(self) -> str:
        return self.base_url + SLACK_PATH

    @property
    def pagerduty_url(self) -> str:
        return self.base_url + PAGERDUTY_PATH

    def record(self, path: str, headers: dict[str, str], body: Any) -> dict[str, Any]:
        entry = {
            "received_at": datetime.now(UTC).isoformat(),
            "path": path,
            "headers": headers,
            "body": body,
        }
        with self._changed:
            self._records.append(entry)
            with self.record_file.open("a") as handle:
                handle.write(json.dumps(entry, default=str) + "\n")
            self._changed.notify_all()
        return entry

    def records(self) -> list[dict[str, Any]]:
        """What this receiver got since it started (the file also keeps earlier sessions)."""
        with self._lock:
            return list(self._records)

    def count(self) -> int:
        with self._lock:
            return len(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def wait_for(
        self,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float,
    ) -> list[dict[str, Any]]:
        """Block until `predicate(records)` holds (returns the records) or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self._records)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"webhook receiver: condition not met after {timeout:.0f}s; "
                        f"received {len(self._records)}: {json.dumps(self._records)[:2000]}"
                    )
                self._changed.wait(min(remaining, 1.0))
            return list(self._records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dev_stack.webhook_receiver",
        description="Record webhook POSTs (Slack, PagerDuty stand-in) to a JSONL file.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--file", type=Path, help=f"JSONL file (default {default_record_file()})")
    args = parser.parse_args(argv)
    receiver = WebhookReceiver(port=args.port, record_file=args.file)
    receiver.run_until_signalled(
        f"webhook receiver on {{service.base_url}} (Slack {SLACK_PATH}, PagerDuty "
        f"{PAGERDUTY_PATH}), recording to {receiver.record_file}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

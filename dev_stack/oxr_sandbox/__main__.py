"""`python -m dev_stack.oxr_sandbox --port 8765 [--quota N] [--latency-ms N] [--app-id X]`."""

from __future__ import annotations

import argparse

from dev_stack.oxr_sandbox.data import load_series
from dev_stack.oxr_sandbox.server import DEFAULT_SANDBOX_APP_ID, OXRSandbox


def main(argv: list[str] | None = None) -> int:
    """Serve on 127.0.0.1 until SIGTERM/SIGINT: a ready line on stdout, request lines on stderr."""
    parser = argparse.ArgumentParser(
        prog="python -m dev_stack.oxr_sandbox",
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

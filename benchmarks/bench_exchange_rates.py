"""Exchange-rate backfill benchmark: ours against the tutorial's sequential loop, same run.

    python -m benchmarks.bench_exchange_rates [--days 365] [--latency-ms 100]
        [--concurrency 8] [--limit 80] [--binding-limit 40]

Against one OXR sandbox in its own process (as the real API would be; in-process it would
share our interpreter's lock) with `--latency-ms` per request and a quota large enough:
1. sequential: the tutorial's design, one `historical/DAY.json` after the other with the same
   shared client, then the rows written by the same dlt pipeline in one load (the cheapest
   honest version of that design: per-day dlt runs would only make it slower);
2. ours: `pipelines.exchange_rates.backfill` over the same days into an empty data folder, with
   `--concurrency` workers and a `--limit` requests/second limit (quota check, bucket listing,
   chunked loads and the local Snowpipe pass included);
3. ours again with a lower `--binding-limit`, to show the limiter is what sets the pace then.

Peak rates use the sandbox's own measure (most counted requests in any one-second window of
its request log, read over its admin endpoint).
Figures, not a pass/fail test; the target is ours <= 0.15x sequential with 8 concurrent
requests, and the peak never above the configured limit.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import requests

from dev_stack.oxr_sandbox import peak_rate

TARGET_RATIO = 0.15
TARGET_VS_IDEAL = 1.1  # ours / (days x latency / concurrency)
FIRST_DAY = date(2025, 1, 1)


class _Sandbox:
    """`python -m dev_stack.oxr_sandbox` in a child process, driven over its admin API."""

    def __init__(self, latency_ms: float) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dev_stack.oxr_sandbox",
                "--port",
                "0",
                "--quota",
                "1000000",
                "--latency-ms",
                str(latency_ms),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline()  # "OXR sandbox listening on <url>"
        self.base_url = ready.strip().rsplit(" ", 1)[-1]
        self.admin = self.base_url.removesuffix("api/") + "__sandbox__/"

    def reset(self) -> None:
        requests.post(self.admin + "reset", timeout=10).raise_for_status()

    def log(self) -> list[dict[str, Any]]:
        return requests.get(self.admin + "requests", timeout=10).json()["requests"]

    def historical_requests(self) -> int:
        return sum(1 for e in self.log() if e["path"].startswith("/api/historical/"))

    def peak_request_rate(self, window_seconds: float = 1.0) -> float:
        """The sandbox's `peak_request_rate`, over the log read from its admin endpoint."""
        return peak_rate(self.log(), window_seconds)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)


def _fresh_data_dir(root: Path, name: str) -> Path:
    folder = root / name
    (folder / "dlt").mkdir(parents=True)
    (folder / "warehouse").mkdir()
    os.environ["DATA_PIPELINES_DATA_DIR"] = str(folder)
    os.environ["DLT_DATA_DIR"] = str(folder / "dlt")
    os.environ["DLT_LOCAL_DIR"] = str(folder / "warehouse")
    return folder


def _sequential(days: list[date]) -> float:
    from benchmarks.run_pipeline import load_environment, load_fetched_days
    from sources.exchange_rates import FetchedDay, make_client, resolve_settings

    started = time.perf_counter()
    client = make_client(resolve_settings())
    fetched = [FetchedDay(day, client.historical(day)) for day in days]
    load_fetched_days(load_environment("local"), fetched)
    return time.perf_counter() - started


def _ours(days: list[date], concurrency: int, limit: float) -> tuple[float, int]:
    """Seconds of our backfill over `days`, and the days it loaded."""
    from benchmarks.run_pipeline import load_environment, run_exchange_rates_backfill

    os.environ["SOURCES__OPEN_EXCHANGE_RATES__MAX_CONCURRENCY"] = str(concurrency)
    os.environ["SOURCES__OPEN_EXCHANGE_RATES__MAX_REQUESTS_PER_SECOND"] = str(limit)
    started = time.perf_counter()
    loaded = run_exchange_rates_backfill(load_environment("local"), days[0], days[-1])
    return time.perf_counter() - started, loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_exchange_rates")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--limit", type=float, default=80.0, help="requests/s for our run")
    parser.add_argument("--binding-limit", type=float, default=40.0, help="0 to skip")
    args = parser.parse_args(argv)

    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ["DATA_PIPELINES_ENV"] = "local"
    os.environ.pop("DATA_PIPELINES_BUCKET_URL", None)
    logging.basicConfig(level=logging.WARNING)

    from dev_stack.oxr_sandbox import DEFAULT_SANDBOX_APP_ID

    print(f"load average at start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    days = [FIRST_DAY + timedelta(days=n) for n in range(args.days)]
    root = Path(tempfile.mkdtemp(prefix="bench-exchange-rates-"))
    sandbox = _Sandbox(args.latency_ms)
    os.environ["SOURCES__OPEN_EXCHANGE_RATES__BASE_URL"] = sandbox.base_url
    os.environ["SOURCES__OPEN_EXCHANGE_RATES__API_KEY"] = DEFAULT_SANDBOX_APP_ID
    rows: list[tuple[str, float, float | None, str, float, int]] = []
    try:
        _fresh_data_dir(root, "warm")  # imports and first-use costs out of the timings
        _ours(days[:3], args.concurrency, 1000)
        sandbox.reset()

        _fresh_data_dir(root, "sequential")
        seq_seconds = _sequential(days)
        rows.append(
            (
                "sequential day-by-day (tutorial)",
                seq_seconds,
                1.0,
                "none",
                sandbox.peak_request_rate(),
                sandbox.historical_requests(),
            )
        )
        runs = [(args.concurrency, args.limit)]
        if args.binding_limit:
            runs.append((args.concurrency, args.binding_limit))
        for concurrency, limit in runs:
            sandbox.reset()
            _fresh_data_dir(root, f"ours-{limit:g}")
            seconds, loaded = _ours(days, concurrency, limit)
            if loaded != len(days):
                raise RuntimeError(f"ours loaded {loaded} of {len(days)} days")
            rows.append(
                (
                    f"ours, {concurrency} concurrent",
                    seconds,
                    seconds / seq_seconds,
                    f"{limit:g}/s",
                    sandbox.peak_request_rate(),
                    sandbox.historical_requests(),
                )
            )
    finally:
        sandbox.stop()
        shutil.rmtree(root, ignore_errors=True)

    print(
        f"\nExchange-rate backfill: {args.days} days, sandbox latency {args.latency_ms:g} ms "
        "per request\n"
    )
    header = ("run", "seconds", "x sequential", "configured limit", "peak observed/s", "requests")
    cells = [header] + [
        (name, f"{s:.2f}", "-" if r is None else f"{r:.3f}", lim, f"{peak:g}", str(n))
        for name, s, r, lim, peak, n in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    ours = rows[1]
    print(
        f"\nTarget: ours <= {TARGET_RATIO}x sequential with {args.concurrency} concurrent "
        f"requests -> {ours[2]:.3f}x ({'met' if ours[2] <= TARGET_RATIO else 'NOT met'}); "
        f"peak {ours[4]:g}/s vs limit {args.limit:g}/s "
        f"({'within' if ours[4] <= args.limit else 'EXCEEDED'})"
    )
    # The ideal: every request overlapped, nothing else costing time. The limit binds exactly
    # at the ideal when limit = concurrency / latency (8 / 0.1 s = 80/s).
    ideal = args.days * args.latency_ms / 1000 / args.concurrency
    vs_ideal = ours[1] / ideal
    print(
        f"Ours vs ideal ({args.days} days x {args.latency_ms:g} ms / {args.concurrency}"
        f" = {ideal:.2f} s): {vs_ideal:.2f}x, target <= {TARGET_VS_IDEAL}x: "
        f"{'met' if vs_ideal <= TARGET_VS_IDEAL else 'NOT met'}"
    )
    for extra in rows[2:]:
        print(f"Binding limit {extra[3]}: peak {extra[4]:g}/s, {extra[1]:.2f}s")
    print(f"load average at end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

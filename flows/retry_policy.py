"""The one retry policy every task of every flow uses.

Operators were promised a factor-of-ten ladder: retry 1 after ~10 s, retry 2 after ~100 s,
retry 3 after ~1,000 s (~17 min). Prefect's `exponential_backoff(backoff_factor=10)` gives
10, 20, 40 s (factor x 2^n), so the ladder is spelled out as an explicit list instead.

Jitter is Prefect's own (`retry_jitter_factor=0.5`): each delay is drawn from a clamped
Poisson distribution whose mean is the nominal delay and whose bounds are about 0.63x and
1.5x of it, which spreads retries of many runs that failed together.

Permanent errors (bad key, plan lacks the endpoint, missing table or setting) are not retried:
`retry_condition_fn` checks the exception chain.

Tests shrink the delays with `DATA_PIPELINES_RETRY_DELAY_SCALE` (read when this module is
imported); production never sets it.

Timeouts
--------
So that a hang becomes a Failed run that alerts, every task and flow has a timeout. One number
per pipeline task, in dlt config (`.dlt/config.toml`):

    [data_pipelines.timeouts]
    load_currencies = 600           # env DATA_PIPELINES__TIMEOUTS__LOAD_CURRENCIES
    ...

dlt config rather than Prefect variables: the flow-run process reads it when the flow module is
imported (a decorator argument), with no API round trip and with the same override rules as
every other setting (file, environment, Secrets Manager); `data-pipelines apply alerting` reads
the same numbers to size the "running too long" alerts, so the two can never disagree.

A flow's timeout is derived, not configured: each of its tasks may run `RETRIES + 1` times with
the retry ladder's longest (jittered) delays in between, plus `flow_margin` seconds for the
flow's own work (report artifact, audit). A shorter flow timeout would cut the retries that exist to
ride out a transient outage. Sizes and the measurements behind the defaults: docs/operations.md.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from pipelines.errors import is_permanent
from pipelines.names import pipeline_concurrency_tag

RETRIES = 3
RETRY_LADDER_SECONDS: tuple[float, ...] = (10.0, 100.0, 1000.0)
RETRY_JITTER_FACTOR = 0.5
DELAY_SCALE_VAR = "DATA_PIPELINES_RETRY_DELAY_SCALE"


def retry_delays() -> list[float]:
    """The nominal delay before each retry, in seconds (scaled only in tests)."""
    scale = float(os.environ.get(DELAY_SCALE_VAR, "1"))
    return [seconds * scale for seconds in RETRY_LADDER_SECONDS]


# When the running flow must end (monotonic clock), set by `flow_deadline` around a flow's body.
_FLOW_DEADLINE: ContextVar[float | None] = ContextVar("flow_deadline", default=None)


@contextmanager
def flow_deadline(timeout_seconds: float | None) -> Iterator[None]:
    """Mark when the current flow run times out, for `should_retry` and the flow's message."""
    token = _FLOW_DEADLINE.set(
        None if timeout_seconds is None else time.monotonic() + timeout_seconds
    )
    try:
        yield
    finally:
        _FLOW_DEADLINE.reset(token)


def flow_deadline_passed() -> bool:
    """True once the current flow run is past its timeout (False outside a flow)."""
    deadline = _FLOW_DEADLINE.get()
    return deadline is not None and time.monotonic() >= deadline


def should_retry(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's `retry_condition_fn`: retry unless the failure is permanent or time is up.

    Time is up when the flow's own timeout fired while this task ran: Prefect raises it inside
    the task as the task's `TaskRunTimeoutError` (measured), which would otherwise be retried
    and so outlive the flow's timeout.
    """
    if flow_deadline_passed():
        return False
    exc = state.result(raise_on_failure=False)
    return not (isinstance(exc, BaseException) and is_permanent(exc))


pipeline_tag = pipeline_concurrency_tag


CONFIG_SECTION = "data_pipelines.timeouts"
FLOW_MARGIN_KEY = "flow_margin"

# Defaults in seconds; docs/operations.md gives the measured durations they cover.
DEFAULT_TASK_TIMEOUTS: dict[str, float] = {
    "load_currencies": 600,
    "load_exchange_rates": 600,
    "backfill_exchange_rates": 7200,
    "load_products": 3600,
    "verify_warehouse": 600,
}
DEFAULT_FLOW_MARGIN = 600.0

# The tasks a flow runs one after the other; their timeouts size the flow's.
FLOW_TASKS: dict[str, tuple[str, ...]] = {
    "currencies-weekly": ("load_currencies",),
    # latest.json, then yesterday's final rates: one historical day, one request like latest
    "exchange-rates-daily": ("load_exchange_rates", "load_exchange_rates"),
    "exchange-rates-backfill": ("backfill_exchange_rates",),
    "products-daily": ("load_products",),
    "products-full-refresh": ("load_products",),
    "data-freshness": ("verify_warehouse",),
}


def _configured(key: str, default: float) -> float:
    import dlt

    value = dlt.config.get(f"{CONFIG_SECTION}.{key}")
    if value is None or value == "":
        return float(default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not seconds > 0:
        from pipelines.environment import ConfigurationError

        raise ConfigurationError(
            f"[{CONFIG_SECTION}] {key}={value!r} is not a positive number of seconds: fix it in "
            f".dlt/config.toml or DATA_PIPELINES__TIMEOUTS__{key.upper()}"
        )
    return seconds


def task_timeout(task_key: str) -> float:
    """Seconds one attempt of the task may take (`[data_pipelines.timeouts] <task_key>`)."""
    return _configured(task_key, DEFAULT_TASK_TIMEOUTS[task_key])


def flow_timeout(flow_name: str) -> float:
    """Seconds a flow run may take: every attempt of its task, the retry delays, a margin."""
    attempts = RETRIES + 1
    worst_delays = sum(retry_delays()) * (1 + RETRY_JITTER_FACTOR)
    margin = _configured(FLOW_MARGIN_KEY, DEFAULT_FLOW_MARGIN)
    tasks = FLOW_TASKS[flow_name]
    work = sum(attempts * task_timeout(task) for task in tasks)
    return round(work + len(tasks) * worst_delays + margin, 3)


def flow_timeouts() -> dict[str, float]:
    """Every flow's timeout, by flow name (for the "running too long" alerts)."""
    return {name: flow_timeout(name) for name in FLOW_TASKS}


def pipeline_task(
    name: str, *, dlt_pipeline: str | None = None, **options: Any
) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
    """`@task` with the shared retry policy and the task's timeout (`task_timeout(name)`).

    `options` may add anything but the retry policy.

    `dlt_pipeline` tags the task with the pipeline it runs (a label: the waiting run's log
    names the flow runs whose tasks carry it). Two deployments sharing one dlt pipeline (daily
    and backfill, daily and full refresh) never run it at the same time because every run
    holds the pipeline's run guard (environments/run_guard.py), not through a tag limit: a tag
    limit covers only tasks, and a CLI run is outside every task.
    """
    if dlt_pipeline is not None:
        options["tags"] = [*options.get("tags", []), pipeline_tag(dlt_pipeline)]
    # a hung request or query fails the attempt (then retried like any transient error)
    options.setdefault("timeout_seconds", task_timeout(name.replace("-", "_")))
    return task(
        name=name,
        retries=RETRIES,
        retry_delay_seconds=retry_delays(),
        retry_jitter_factor=RETRY_JITTER_FACTOR,
        retry_condition_fn=should_retry,
        # A load must run every time it is asked to; never serve it from a cache.
        cache_policy=NO_CACHE,
        **options,
    )

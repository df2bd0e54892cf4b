"""Timeouts of every task and flow, and the retry ladder they are sized from.

Below the flows because two packages need the same numbers: the flows (Prefect's
`timeout_seconds`, `flows/retry_policy.py`) and the "running too long" alerting automation
(`infra/alerting.py`). Nothing here imports Prefect.

So that a hang becomes a Failed run that alerts, every task and flow has a timeout. One number
per pipeline task, its default in the pipeline's spec, overridden in dlt config
(`.dlt/config.toml`):

    [data_pipelines.timeouts]
    load_currencies = 600           # env DATA_PIPELINES__TIMEOUTS__LOAD_CURRENCIES
    ...

dlt config rather than Prefect variables: the flow-run process reads it when the flow module is
imported (a decorator argument), with no API round trip and with the same override rules as
every other setting (file, environment, Secrets Manager); `data-pipelines apply alerting` reads
the same numbers to size the one "running too long" alert (the longest flow timeout), so the
two can never disagree.

A flow's timeout is derived, not configured: each of its tasks may run `RETRIES + 1` times with
the retry ladder's longest (jittered) delays in between, plus `flow_margin` seconds for the
flow's own work (report artifact, audit). A shorter flow timeout would cut the retries that exist to
ride out a transient outage. Sizes and the measurements behind the defaults: docs/operations.md.
"""

from __future__ import annotations

import math
import os

# The retry ladder (flows/retry_policy.py applies it with Prefect's jitter): retry 1 after
# ~10 s, retry 2 after ~100 s, retry 3 after ~1,000 s.
RETRIES = 3
RETRY_LADDER_SECONDS: tuple[float, ...] = (10.0, 100.0, 1000.0)
RETRY_JITTER_FACTOR = 0.5
DELAY_SCALE_VAR = "DATA_PIPELINES_RETRY_DELAY_SCALE"


def retry_delays() -> list[float]:
    """The nominal delay before each retry, in seconds (scaled only in tests)."""
    scale = float(os.environ.get(DELAY_SCALE_VAR, "1"))
    return [seconds * scale for seconds in RETRY_LADDER_SECONDS]


CONFIG_SECTION = "data_pipelines.timeouts"
FLOW_MARGIN_KEY = "flow_margin"
DEFAULT_FLOW_MARGIN = 600.0
# The task defaults and the tasks each flow runs are the pipelines' own (PipelineSpec.flows and
# .task_timeouts, read through pipelines/registry.py); docs/operations.md gives the measured
# durations they cover.


def default_task_timeouts() -> dict[str, float]:
    """Every task's default seconds per attempt, by timeout key (from the registry)."""
    from pipelines.registry import task_timeouts

    return task_timeouts()


def flow_tasks() -> dict[str, tuple[str, ...]]:
    """The tasks each flow runs one after the other, by flow name; they size its timeout."""
    from pipelines.registry import all_flows

    return {name: flow.tasks for name, flow in all_flows().items()}


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
    return _configured(task_key, default_task_timeouts()[task_key])


def flow_timeout(flow_name: str) -> float:
    """Seconds a flow run may take: every attempt of its task, the retry delays, a margin."""
    attempts = RETRIES + 1
    worst_delays = sum(retry_delays()) * (1 + RETRY_JITTER_FACTOR)
    margin = _configured(FLOW_MARGIN_KEY, DEFAULT_FLOW_MARGIN)
    tasks = flow_tasks()[flow_name]
    work = sum(attempts * task_timeout(task) for task in tasks)
    return round(work + len(tasks) * worst_delays + margin, 3)


def flow_timeouts() -> dict[str, float]:
    """Every flow's timeout, by flow name (the longest sizes the "running too long" alert)."""
    return {name: flow_timeout(name) for name in flow_tasks()}

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
"""

from __future__ import annotations

import os
from collections.abc import Callable
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


def should_retry(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's `retry_condition_fn`: retry unless the failure is permanent."""
    exc = state.result(raise_on_failure=False)
    return not (isinstance(exc, BaseException) and is_permanent(exc))


pipeline_tag = pipeline_concurrency_tag


def pipeline_task(
    name: str, *, dlt_pipeline: str | None = None, **options: Any
) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
    """`@task` with the shared retry policy; `options` may add anything but the policy.

    `dlt_pipeline` tags the task with the pipeline it runs. Two deployments sharing one dlt
    pipeline (daily and backfill, daily and full refresh) never run it at the same time
    because the pipeline takes its run lock (pipelines/locks.py), not through a Prefect tag
    limit: that one outlived crashed runs by about a minute (infra/prefect_setup.py).
    """
    if dlt_pipeline is not None:
        options["tags"] = [*options.get("tags", []), pipeline_tag(dlt_pipeline)]
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

"""The one retry policy every task of every flow uses.

Operators were promised a factor-of-ten ladder: retry 1 after ~10 s, retry 2 after ~100 s,
retry 3 after ~1,000 s (~17 min). Prefect's `exponential_backoff(backoff_factor=10)` gives
10, 20, 40 s (factor x 2^n), so the ladder is spelled out as an explicit list instead.

Jitter is Prefect's own (`retry_jitter_factor=0.5`): each delay is drawn from a clamped
Poisson distribution whose mean is the nominal delay and whose bounds are about 0.63x and
1.5x of it, which spreads retries of many runs that failed together.

Permanent errors (bad key, plan lacks the endpoint, missing table or setting) are not retried:
`retry_condition_fn` checks the exception chain.

Tests shrink the delays with `DATA_PIPELINES_RETRY_DELAY_SCALE`; production never sets it.

The ladder's numbers and every task's and flow's timeout live in `pipelines/timeouts.py`:
the alerting automations (`infra/`) size their "running too long" alerts from the same numbers.
"""

from __future__ import annotations

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
from pipelines.timeouts import (
    DELAY_SCALE_VAR,
    RETRIES,
    RETRY_JITTER_FACTOR,
    flow_timeout,
    flow_timeouts,
    retry_delays,
    task_timeout,
)

__all__ = [
    "DELAY_SCALE_VAR",
    "RETRIES",
    "RETRY_JITTER_FACTOR",
    "flow_deadline",
    "flow_deadline_passed",
    "flow_timeout",
    "flow_timeouts",
    "pipeline_tag",
    "pipeline_task",
    "retry_delays",
    "should_retry",
    "task_timeout",
]

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

"""One run per dlt pipeline across every machine of the pool: a Prefect global concurrency limit.

Production is a pool of fresh machines (a process worker's temporary clone, a pod per run), so
a file lock holds nothing there: two runs of one pipeline on two machines both "hold" it. The
Prefect server every worker already talks to is the one place they all see, so the guard is a
global concurrency limit per dlt pipeline, `dlt-pipeline:<name>` with limit 1
(`infra.prefect_setup.ensure_pipeline_concurrency_limits`, applied by `data-pipelines apply
prefect` and `up`), taken through Prefect's public `prefect.concurrency.sync.concurrency`:

- leased (`LEASE_SECONDS`): a holder that dies (`kill -9`, a lost pod) frees the slot when the
  lease runs out plus the server's expiry loop (~15 s); one that fails or ends frees it at once;
- strict: a missing limit is a configuration error, never a silent pass;
- renewal failure stops the run (`raise_on_lease_renewal_failure`): Prefect injects a
  cancellation into the running thread, so no further statement starts. A call blocked inside
  a driver (a COPY, the merge's transaction) is not interrupted: the cancellation lands when it
  returns, so that one statement may still commit; nothing after it runs.

Prefect's own wait is the server's `Retry-After` (up to 30 s, jittered, by default), which would
add up to ~45 s to every hand-over; this module polls every `POLL_SECONDS` instead, so a
waiting run starts within seconds of the slot being freed, and it logs once why and for whom
it waits (the running task runs tagged with the pipeline, when the holder is a flow run).

Hand-written around Prefect's API because Prefect has no "try once, tell me who holds it".
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from pipelines.locks import LockWaitTimeout
from pipelines.names import pipeline_concurrency_tag
from sources.errors import ConfigurationError, TransientSourceError

logger = logging.getLogger(__name__)

# The shortest lease Prefect accepts; renewed every 0.75 x lease by Prefect's renewal thread.
LEASE_SECONDS = 60.0
# How often a waiting run asks again (with +-25% jitter so waiters do not move in step).
POLL_SECONDS = 2.0
APPLY_HINT = "run `data-pipelines apply prefect` against this Prefect API"


class RunGuardUnavailable(TransientSourceError):
    """The Prefect API that holds the run guard did not answer: nothing was loaded (transient)."""


_held = threading.local()


def _held_names() -> dict[str, int]:
    if not hasattr(_held, "names"):
        _held.names = {}
    return _held.names  # type: ignore[no-any-return]


def _is_busy(error: BaseException) -> bool:
    """A 423 Locked answer: the slot is taken (the only failure worth waiting on)."""
    import httpx

    cause = error.__cause__
    return isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423


def _is_missing(error: BaseException) -> bool:
    return "must be created before acquiring slots" in str(error)


def _holders(tag: str) -> str:
    """Who may hold the pipeline, as far as Prefect can tell (best effort, for a log line).

    Prefect 3.8 keeps a slot's holder in the lease but offers no API to read it, so this lists
    the other Running flow runs with a Running task tagged with the pipeline: one of them
    holds it, any others wait too.
    """
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterId,
            FlowRunFilterState,
            FlowRunFilterStateType,
            TaskRunFilter,
            TaskRunFilterState,
            TaskRunFilterStateType,
            TaskRunFilterTags,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.context import FlowRunContext

        context = FlowRunContext.get()
        own = context.flow_run.id if context is not None and context.flow_run else None
        running = [StateType.RUNNING]
        with get_client(sync_client=True) as client:
            task_runs = client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    tags=TaskRunFilterTags(all_=[tag]),
                    state=TaskRunFilterState(type=TaskRunFilterStateType(any_=running)),
                ),
                limit=10,
            )
            ids = {run.flow_run_id for run in task_runs if run.flow_run_id} - {own}
            flow_runs = (
                client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        id=FlowRunFilterId(any_=sorted(ids, key=str)),
                        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=running)),
                    )
                )
                if ids
                else []
            )
            if not flow_runs:
                return "a run outside any Prefect flow run (a CLI run, a script, or a killed run)"
            names = ", ".join(f"flow run {run.name!r} ({run.id})" for run in flow_runs)
            return names if len(flow_runs) == 1 else f"one of {names}"
    except Exception as error:  # only a log line depends on it
        logger.debug("Could not tell who holds %s: %s", tag, error)
        return "holder unknown"


@contextmanager
def prefect_run_guard(
    pipeline_name: str, *, api_url: str, max_wait: float | None = None
) -> Iterator[None]:
    """Hold the `dlt-pipeline:<name>` slot on the Prefect API at `api_url` for the block.

    Reentrant for the holding thread (a run, then its audit). Waits while another run holds the
    slot (one log line naming the holder), without end or up to `max_wait` seconds
    (`LockWaitTimeout`, transient). A missing limit is a `ConfigurationError`; an API that does
    not answer is `RunGuardUnavailable` (transient): the run never loads unguarded.
    """
    held = _held_names()
    if held.get(pipeline_name):
        held[pipeline_name] += 1
        try:
            yield
        finally:
            held[pipeline_name] -= 1
        return

    from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency.sync import concurrency

    limit = pipeline_concurrency_tag(pipeline_name)
    what = f"the {pipeline_name} pipeline (Prefect global concurrency limit {limit!r})"
    started = time.monotonic()
    waiting = False
    with ExitStack() as stack:
        while True:
            try:
                stack.enter_context(
                    concurrency(
                        limit,
                        occupy=1,
                        lease_duration=LEASE_SECONDS,
                        strict=True,
                        max_retries=0,
                        raise_on_lease_renewal_failure=True,
                    )
                )
                break
            except ConcurrencySlotAcquisitionError as error:
                if _is_missing(error):
                    raise ConfigurationError(
                        f"The Prefect API at {api_url} has no global concurrency limit {limit!r}, "
                        f"which keeps {pipeline_name} to one run at a time: {APPLY_HINT}, then "
                        "rerun."
                    ) from None
                if not _is_busy(error):
                    raise RunGuardUnavailable(
                        f"The Prefect API at {api_url} did not answer, so the {pipeline_name} run "
                        f"cannot take {limit!r} and loaded nothing; it is retried. Check that the "
                        "Prefect server is up and PREFECT_API_URL points at it."
                    ) from None
            waited = time.monotonic() - started
            if not waiting:
                waiting = True
                limit_text = (
                    "as long as it takes" if max_wait is None else f"at most {max_wait:g} s"
                )
                logger.info(
                    "Waiting for %s: held by %s; waiting %s",
                    what,
                    _holders(limit),
                    limit_text,
                )
            if max_wait is not None and waited >= max_wait:
                raise LockWaitTimeout(
                    f"{what} is busy: another run held it for more than {max_wait:g} s; let it "
                    "finish (a failed run frees it at once, a killed one when its "
                    f"{LEASE_SECONDS:g} s lease runs out) and run again."
                )
            time.sleep(POLL_SECONDS * random.uniform(0.75, 1.25))
        if waiting:
            logger.info("Got %s after waiting %.1f s", what, time.monotonic() - started)
        held[pipeline_name] = 1
        try:
            yield
        finally:
            held[pipeline_name] = 0


def prefect_api_url() -> str | None:
    """The Prefect API this process talks to (`PREFECT_API_URL`, a profile, a test harness).

    None when Prefect would start a temporary server of its own: nobody else meets there.
    """
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


@contextmanager
def pipeline_guard(pipeline_name: str, *, required: bool) -> Iterator[None]:
    """What every run of a dlt pipeline holds: the Prefect slot, then the working-folder lock.

    With a Prefect API: its `dlt-pipeline:<name>` limit (every machine of the pool meets
    there). Without one (a local run on a temporary server, with no shared server to meet
    others on) the file lock alone, unless `required` (production): then the run is refused.
    The file lock still guards a working folder that several local processes share.
    """
    from pipelines.locks import configured_max_wait, pipeline_run_lock

    max_wait = configured_max_wait()
    api_url = prefect_api_url()
    if api_url is None:
        if required:
            raise ConfigurationError(
                f"No Prefect API for the {pipeline_name} run: production holds one run per "
                "pipeline on the Prefect server every worker uses. Export PREFECT_API_URL "
                "(and PREFECT_API_KEY on Prefect Cloud) as for `prefect deployment run`, or "
                "activate that Prefect profile, then rerun."
            )
        with pipeline_run_lock(pipeline_name, max_wait=max_wait):
            yield
        return
    with (
        prefect_run_guard(pipeline_name, api_url=api_url, max_wait=max_wait),
        pipeline_run_lock(pipeline_name, max_wait=max_wait),
    ):
        yield

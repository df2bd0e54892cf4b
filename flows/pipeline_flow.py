"""What every flow does the same way: a timeout, readable run logs, a one-line failure message.

`@pipeline_flow` on top of Prefect's `@flow(name=..., description=...)` adds:

- `timeout_seconds` from `flows.retry_policy.flow_timeout(name)` (a hang fails the run, which
  alerts like any failure);
- our modules' and dlt's log lines in the run's logs, in Prefect's one format
  (`pipeline_logs_in_prefect`);
- on failure, the state message is the root cause and its fix on one line
  (`pipelines.errors.one_line_cause`), not dlt's "PipelineStepFailed: Pipeline execution failed
  at `step=extract` ..." wrapper: Slack shows that message, the CLI prints it. The traceback
  goes to the run's logs. A run refused for its input (a bad backfill date) ends in a Failed
  state named `Refused`: it reaches Slack but never counts toward a PagerDuty page
  (`infra/alerting.py`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import Flow, flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.flow_engine import FlowRunTimeoutError
from prefect.logging.handlers import APILogHandler
from prefect.states import Failed, State

from flows.retry_policy import flow_deadline, flow_deadline_passed, flow_timeout
from pipelines.dlt_patches import keep_dlt_format_on_own_handler
from pipelines.errors import is_bad_input, one_line_cause
from pipelines.names import REFUSED_STATE_NAME

# The failure's traceback goes to the run's logs in the UI only: a console (the CLI running a
# flow in process) gets the one-line cause, and the traceback with --debug.
_TRACEBACKS = logging.getLogger("flows.tracebacks")
_TRACEBACKS.propagate = False
_TRACEBACKS.addHandler(APILogHandler())
# Our packages' loggers (module loggers propagate to them); their INFO lines belong in the run.
FORWARDED_LOGGERS = ("pipelines", "sources", "environments", "local_runtime")
DLT_LOGGER = "dlt"


# dlt formats the first handler of its logger; Prefect's API handler, shared with
# `prefect.flow_runs`, must not be it (a second timestamp on every line of the run's logs). Now,
# before anything here reads dlt config (the flow decorators do): that sets dlt's logging up.
keep_dlt_format_on_own_handler(APILogHandler)


@contextmanager
def pipeline_logs_in_prefect() -> Iterator[None]:
    """Our loggers (INFO) and dlt's (its configured level) in the flow run's logs, one format.

    Attached here rather than by every worker exporting `PREFECT_LOGGING_EXTRA_LOGGERS`; when a
    worker does export it for dlt, dlt is not attached twice.
    """
    handler = APILogHandler()
    ours = [logging.getLogger(name) for name in FORWARDED_LOGGERS]
    dlt_logger = logging.getLogger(DLT_LOGGER)
    keep_dlt_format_on_own_handler(APILogHandler)
    attached = list(ours)
    if not any(isinstance(h, APILogHandler) for h in dlt_logger.handlers):
        attached.append(dlt_logger)
    previous_levels = [lg.level for lg in ours]
    for lg in attached:
        lg.addHandler(handler)
    for lg in ours:
        if lg.getEffectiveLevel() > logging.INFO:
            lg.setLevel(logging.INFO)
    try:
        yield
    finally:
        for lg in attached:
            lg.removeHandler(handler)
        for lg, level in zip(ours, previous_levels, strict=True):
            lg.setLevel(level)


def _failed(name: str, message: str, error: BaseException) -> State[Any]:
    get_run_logger().error("%s", message)
    _TRACEBACKS.error("Traceback of the failure above: %s", message, exc_info=error)
    return Failed(name=name, message=message, data=error)


def failed_state(error: BaseException) -> State[Any]:
    """The run's final state for `error`: its one-line root cause as the message."""
    name = REFUSED_STATE_NAME if is_bad_input(error) else "Failed"
    return _failed(name, one_line_cause(error), error)


def timed_out_state(timeout: float | None, error: BaseException) -> State[Any]:
    """Prefect's own TimedOut state (it alerts), for a flow timeout that fired inside a task."""
    return _failed(
        "TimedOut",
        f"Flow run exceeded its timeout of {timeout:g} s: a request or query hung, or the work "
        "outgrew [data_pipelines.timeouts] (docs/operations.md, 'Running too long')",
        error,
    )


def pipeline_flow(prefect_flow: Flow[Any, Any]) -> Flow[Any, Any]:
    """The `@flow` below it, with our timeout, run logs and failure messages.

    Applied on top of a plain `@flow(name=..., description=...)`, which stays in the source:
    Prefect's tooling reads a flow's name from that decorator without importing the module.
    """
    function = prefect_flow.fn

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        # read at run time: `with_options(timeout_seconds=...)` changes it
        timeout = FlowRunContext.get().flow.timeout_seconds  # type: ignore[union-attr]
        with pipeline_logs_in_prefect(), flow_deadline(timeout):
            try:
                return function(*args, **kwargs)
            except FlowRunTimeoutError:
                raise  # Prefect's own TimedOut state, which alerts
            except Exception as error:
                if flow_deadline_passed():  # it fired inside a task, as the task's timeout
                    return timed_out_state(timeout, error)
                return failed_state(error)

    return flow(
        run,
        name=prefect_flow.name,
        description=prefect_flow.description,
        timeout_seconds=flow_timeout(prefect_flow.name),
    )

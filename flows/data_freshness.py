"""`data-freshness` (daily 10:00 UTC, after the loads): verify what users read, alert when not.

Runs the same checks as `data-pipelines verify` (`verify/`). A failed check fails
the flow run with the list of failures as its state message, so the `dlt`-tagged deployment
alerts exactly as a failed load does (Slack at once, PagerDuty after three in 24 hours). The
checks' table is published as the run's report artifact, `data-freshness-report`.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from environments import load_environment
from flows.pipeline_flow import pipeline_flow
from flows.retry_policy import pipeline_task
from pipelines.environment import Environment
from verify import VerificationFailed, VerifyReport, verify


@pipeline_task("verify-warehouse")
def verify_warehouse(environment: Environment) -> VerifyReport:
    """Every check; retried only if the warehouse or source cannot be reached at all."""
    report = verify(environment)
    logger = get_run_logger()
    for line in report.render().splitlines():
        logger.info(line)
    return report


@pipeline_flow
@flow(
    name="data-freshness",
    description="Verify tables, row counts, freshness and duplicate keys; fail (and alert) if not",
)
def data_freshness_flow() -> dict[str, Any]:
    """Fail with every failed check listed, so the alert says what is stale or duplicated."""
    report = verify_warehouse(load_environment())
    create_table_artifact(
        table=report.as_rows(),
        key="data-freshness-report",
        description=(
            f"**data-freshness** ({report.environment}): "
            + ("all checks passed" if report.ok else f"{len(report.failures)} check(s) failed")
        ),
    )
    if not report.ok:
        # Raised here, not in the task: stale data is not a transient error worth retrying.
        # one line (it is the state message, so the Slack alert): the checks joined by "; "
        raise VerificationFailed(
            f"{len(report.failures)} check(s) failed: "
            + "; ".join(report.failure_summary().splitlines())
        )
    return {"status": "success", "checks": len(report.checks)}

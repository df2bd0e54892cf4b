"""The alert messages: each one a whole template, its shared parts filled in once, at import.

Every message is a Jinja template that the Prefect *server* renders when an automation fires,
over Prefect's documented template objects (`flow`, `flow_run`, `deployment`, `work_pool`) and
the `ui_url` filter (which needs PREFECT_UI_URL on the server: `prefect server start` does not set
it; the local stack does); the flow run's state comes from the triggering event. Here, before
Prefect sees them, `${name}` marks a part shared between messages (Python's `string.Template`,
whose `$` Jinja does not use): `${deployment}`, `${run_line}`, `${slack_body}`, `${pool}`, and
`${minutes}`, the window an automation is configured with (`render(..., minutes=...)`).
"""

from __future__ import annotations

from string import Template

# Shared parts (themselves Jinja for Prefect).
DEPLOYMENT = "{{ (flow.name ~ '/' ~ deployment.name) if deployment else flow.name }}"
POOL = "{{ work_pool.name }}"
# PagerDuty's one-line summary ends with the run (PagerDuty keeps 1,024 chars).
RUN_LINE = (
    "run {{ flow_run.name }} ({{ flow_run.id }}), {{ flow_run.state.name }}: "
    "{{ (flow_run.state.message or 'no message') | truncate(600) }}"
    "{% set url = flow_run|ui_url %}{% if url %} {{ url }}{% endif %}"
)
# Slack mrkdwn: bold labels, `<url|text>` link; &, <, > in the state message must be escaped.
SLACK_BODY = """\
*Flow:* {{ flow.name }}
*Deployment:* {{ (flow.name ~ '/' ~ deployment.name) if deployment else 'none' }}
*Flow run:* {{ flow_run.name }} (`{{ flow_run.id }}`)
*State:* {{ flow_run.state.name }}
*Message:* {{ (flow_run.state.message or 'none') | replace('&', '&amp;') | replace('<', '&lt;') \
| replace('>', '&gt;') | truncate(2000) }}
*Run:* {% set url = flow_run|ui_url %}{% if url %}<{{ url }}|open in Prefect>\
{% else %}flow run {{ flow_run.id }} (set PREFECT_UI_URL on the server for a link){% endif %}"""

_PARTS = {
    "deployment": DEPLOYMENT,
    "pool": POOL,
    "run_line": RUN_LINE,
    "slack_body": SLACK_BODY,
}

# The messages, by automation (infra/alerts.yaml names them). Slack: subject and body;
# PagerDuty: the dedup key (one incident per deployment or pool) and the summary.
_TEMPLATES = {
    # a run failed (warning)
    "subject": "[data-pipelines] {{ flow_run.state.name }}: ${deployment}",
    "slack_body": "${slack_body}",
    "dedup_key": "data-pipelines/${deployment}",
    # three failures of one deployment within 24 h (critical)
    "critical_subject": "[data-pipelines] CRITICAL: ${deployment} failed 3 times within 24 h",
    "critical_slack": "Three failed, crashed or timed-out runs of this deployment within 24 "
    "hours; the last one:\n${slack_body}",
    "critical_summary": "CRITICAL: ${deployment} failed 3 times within 24 h; last ${run_line}",
    # a scheduled run not started (late)
    "late_subject": "[data-pipelines] Not started: ${deployment}",
    "late_slack": "A scheduled run has not started ${minutes} min after it turned Late: is a "
    "worker polling the work pool? (docs/operations.md, 'Worker down')\n${slack_body}",
    "late_summary": "Not started: ${deployment}; ${run_line}",
    # a run still Running past its timeout
    "running_subject": "[data-pipelines] Running too long: ${deployment}",
    "running_slack": "Still Running ${minutes} min after it started, past its timeout: the "
    "process is hung or was lost with its worker (docs/operations.md, 'Running too long')\n"
    "${slack_body}",
    "running_summary": "Running too long: ${deployment}; ${run_line}",
    # a work pool without a live worker
    "pool_dedup_key": "data-pipelines/work-pool/${pool}",
    "pool_subject": "[data-pipelines] Work pool not ready: ${pool}",
    "pool_body": "Work pool ${pool} has had no live worker for ${minutes} min: no scheduled run "
    "can start. Start a worker: `prefect worker start --pool ${pool}` (docs/operations.md, "
    "'Worker down')",
    # PagerDuty resolve: the subject is the incident's key; the resolve event carries no text
    "resolved": "resolved",
    # a schema change: the event carries the rendered message (flows/schema_events.py)
    "schema_subject": "{{ event.payload.subject }}",
    "schema_body": "{{ event.payload.body }}",
}


MESSAGE_NAMES: frozenset[str] = frozenset(_TEMPLATES)


def render(name: str, minutes: str | None = None) -> str:
    """The message `name` with its shared parts (and the window, in minutes) filled in."""
    values = dict(_PARTS) if minutes is None else {**_PARTS, "minutes": minutes}
    return Template(_TEMPLATES[name]).substitute(values)

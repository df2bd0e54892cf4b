"""Alerting as code: two notification blocks and two automations, applied idempotently.

When a pipeline stays broken a human hears about it once, in the right channel:

- warning: any flow run of a deployment tagged `dlt` that ends Failed or Crashed sends one Slack
  message (flow, deployment, run id, state message, link to the run);
- critical: three such failures of one deployment within 24 hours send to Slack and PagerDuty.

The blocks
----------
The issue names them `slack-webhook/alerts` and `pager-duty-webhook/data-pipelines`, Prefect's own
block types. We keep their names and their wire formats but not those two block classes, because
neither can reach a URL we choose, and the local stack (and the tests) must point them at a
receiver on 127.0.0.1:

- `SlackWebhook` sends through apprise, which only knows hooks.slack.com URLs: given
  `http://127.0.0.1:.../slack/alerts` it sent nothing and raised nothing (measured; apprise has no
  plugin for a plain http URL).
- `PagerDutyWebHook` sends through apprise's PagerDuty plugin, which hard-codes
  `https://events.pagerduty.com/v2/enqueue` (or the EU host) and also requires a REST API key that
  Events v2 does not need.
- A subclass with the `slack-webhook` slug would not work either: the Prefect *server* runs the
  notification and looks the block class up by slug in its own process, where only Prefect's
  classes (and installed collections) are registered.

So both are Prefect's `CustomWebhookNotificationBlock` (slug `custom-webhook`, shipped with
Prefect, so any server can run it), named after the issue's blocks:

- `custom-webhook/slack-alerts` posts Slack's incoming-webhook body, `{"text", "blocks"}`
  (Block Kit header + mrkdwn section), to the Slack webhook URL;
- `custom-webhook/pagerduty-data-pipelines` posts a PagerDuty Events v2 `trigger` event
  (`routing_key`, `event_action`, `dedup_key`, `payload{summary, source, severity: critical,
  component, custom_details}`) to the Events API URL, by default
  `https://events.pagerduty.com/v2/enqueue`.

Secrets (the Slack webhook URL, the PagerDuty routing key) live in the blocks' `secrets` field
(stored encrypted, shown obfuscated) and reach the request only through `{{placeholders}}`; they
come from dlt configuration, never from git: `[alerting] slack_webhook_url`,
`pagerduty_integration_key`, optional `pagerduty_events_url` (environment
`ALERTING__SLACK_WEBHOOK_URL`, ..., `.dlt/secrets.toml`, or the `[alerting]` table of the AWS
Secrets Manager secret `dlt/dlt_secrets_toml` read by dlt's provider; see README).

Applying
--------
`data-pipelines apply alerting` (and `data-pipelines up`, with the local receiver's URLs) saves
both blocks (overwrite) and applies each automation by name: update it when one exists, create it
when none does, delete extra copies. Applying twice leaves one of each; changing a definition here
updates it on the next apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from pipelines.environment import ConfigurationError, configure_runtime

SLACK_BLOCK_NAME = "slack-alerts"  # the slack-webhook/alerts
PAGERDUTY_BLOCK_NAME = "pagerduty-data-pipelines"  # the pager-duty-webhook/data-pipelines
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
WARNING_AUTOMATION = "data-pipelines: dlt run failed (warning)"
CRITICAL_AUTOMATION = "data-pipelines: dlt runs keep failing (critical)"
AUTOMATION_NAMES = (WARNING_AUTOMATION, CRITICAL_AUTOMATION)
FAILED_EVENTS = frozenset({"prefect.flow-run.Failed", "prefect.flow-run.Crashed"})
DLT_TAG = {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.dlt"}
CRITICAL_THRESHOLD = 3
CRITICAL_WITHIN = timedelta(hours=24)


@dataclass(frozen=True)
class AlertingSettings:
    """Where alerts go. `repr` never shows the secrets."""

    slack_webhook_url: str
    pagerduty_integration_key: str
    pagerduty_events_url: str = PAGERDUTY_EVENTS_URL

    def __repr__(self) -> str:
        return f"AlertingSettings(pagerduty_events_url={self.pagerduty_events_url!r}, ...)"


def settings_from_config() -> AlertingSettings:
    """The `[alerting]` settings from dlt config (environment, secrets.toml, Secrets Manager)."""
    configure_runtime()  # registers the Secrets Manager provider when enabled
    import dlt

    slack = dlt.secrets.get("alerting.slack_webhook_url")
    routing_key = dlt.secrets.get("alerting.pagerduty_integration_key")
    events_url = dlt.config.get("alerting.pagerduty_events_url") or PAGERDUTY_EVENTS_URL
    missing = [
        name
        for name, value in (
            ("slack_webhook_url (ALERTING__SLACK_WEBHOOK_URL)", slack),
            ("pagerduty_integration_key (ALERTING__PAGERDUTY_INTEGRATION_KEY)", routing_key),
        )
        if not value
    ]
    if missing:
        raise ConfigurationError(
            "Alerting is not configured: set [alerting] "
            + " and ".join(missing)
            + " in .dlt/secrets.toml, the environment, or the [alerting] table of the AWS "
            "Secrets Manager secret dlt/dlt_secrets_toml."
        )
    return AlertingSettings(str(slack), str(routing_key), str(events_url))


# ---- blocks ---------------------------------------------------------------------------------

# Slack incoming webhook body: `text` is the notification fallback, `blocks` the message.
# `{{subject}}`/`{{body}}` are filled by the block with the automation's rendered templates.
SLACK_JSON: dict[str, Any] = {
    "text": "{{subject}}",
    "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": "{{subject}}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "{{body}}"}},
    ],
}

# PagerDuty Events v2 "trigger" event. The dedup key is the subject (flow/deployment, no run id),
# so repeated criticals for one broken deployment update one open incident instead of paging anew.
PAGERDUTY_JSON: dict[str, Any] = {
    "routing_key": "{{routing_key}}",
    "event_action": "trigger",
    "dedup_key": "{{subject}}",
    "payload": {
        "summary": "{{subject}}",
        "source": "prefect/data-pipelines",
        "severity": "critical",
        "component": "{{name}}",
        "custom_details": {"details": "{{body}}"},
    },
    "client": "Prefect automations (data-pipelines)",
}


def slack_block(settings: AlertingSettings) -> Any:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    return CustomWebhookNotificationBlock(
        name="data-pipelines",
        url="{{slack_webhook_url}}",  # the whole URL is the Slack secret
        method="POST",
        json_data=SLACK_JSON,
        secrets={"slack_webhook_url": settings.slack_webhook_url},
        timeout=10,
    )


def pagerduty_block(settings: AlertingSettings) -> Any:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    return CustomWebhookNotificationBlock(
        name="data-pipelines",
        url=settings.pagerduty_events_url,
        method="POST",
        json_data=PAGERDUTY_JSON,
        headers={"Content-Type": "application/json"},
        secrets={"routing_key": settings.pagerduty_integration_key},
        timeout=10,
    )


def ensure_blocks(settings: AlertingSettings) -> tuple[UUID, UUID]:
    """Save (create or overwrite) both blocks; their document ids, Slack first."""
    slack_id = slack_block(settings).save(SLACK_BLOCK_NAME, overwrite=True)
    pagerduty_id = pagerduty_block(settings).save(PAGERDUTY_BLOCK_NAME, overwrite=True)
    return slack_id, pagerduty_id


# ---- automations ----------------------------------------------------------------------------

# Jinja over Prefect's documented template objects (`flow`, `flow_run`, `deployment`) and the
# `ui_url` filter (which needs PREFECT_UI_URL on the server: `prefect server start` does not set
# it; the local stack does). The flow run's state comes from the triggering event.
_DEPLOYMENT = "{{ (flow.name ~ '/' ~ deployment.name) if deployment else flow.name }}"
_SUBJECT = "[data-pipelines] {{ flow_run.state.name }}: " + _DEPLOYMENT
_CRITICAL_SUBJECT = "[data-pipelines] CRITICAL: " + _DEPLOYMENT + " failed 3 times within 24 h"
# Slack mrkdwn: bold labels, `<url|text>` link; &, <, > in the state message must be escaped.
_SLACK_BODY = """\
*Flow:* {{ flow.name }}
*Deployment:* {{ (flow.name ~ '/' ~ deployment.name) if deployment else 'none' }}
*Flow run:* {{ flow_run.name }} (`{{ flow_run.id }}`)
*State:* {{ flow_run.state.name }}
*Message:* {{ (flow_run.state.message or 'none') | replace('&', '&amp;') | replace('<', '&lt;') \
| replace('>', '&gt;') | truncate(2000) }}
*Run:* {% set url = flow_run|ui_url %}{% if url %}<{{ url }}|open in Prefect>\
{% else %}flow run {{ flow_run.id }} (set PREFECT_UI_URL on the server for a link){% endif %}"""
_PLAIN_BODY = """\
Flow: {{ flow.name }}
Deployment: {{ (flow.name ~ '/' ~ deployment.name) if deployment else 'none' }}
Flow run: {{ flow_run.name }} ({{ flow_run.id }})
State: {{ flow_run.state.name }}
Message: {{ (flow_run.state.message or 'none') | truncate(2000) }}
Run: {{ (flow_run|ui_url) or ('flow run %s (no PREFECT_UI_URL on the server)' % flow_run.id) }}"""
_CRITICAL_NOTE = "Three failed or crashed runs of this deployment within 24 hours; the last one:\n"


def _trigger(threshold: int, within: timedelta, per_deployment: bool) -> Any:
    from prefect.events.schemas.automations import EventTrigger, Posture

    return EventTrigger(
        expect=set(FAILED_EVENTS),
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related=dict(DLT_TAG),
        # Count failures per deployment: one pipeline failing three times is "stays broken";
        # three unrelated one-offs each got their warning already.
        for_each={"related:deployment:prefect.resource.id"} if per_deployment else set(),
        posture=Posture.Reactive,
        threshold=threshold,
        within=within,
    )


def automation_definitions(slack_block_id: UUID, pagerduty_block_id: UUID) -> list[Any]:
    """The two automations, as Prefect objects (not yet applied)."""
    from prefect.automations import Automation, SendNotification

    warning = Automation(
        name=WARNING_AUTOMATION,
        description="Any flow run of a deployment tagged dlt ended Failed or Crashed: Slack.",
        enabled=True,
        trigger=_trigger(1, timedelta(0), per_deployment=False),
        actions=[
            SendNotification(block_document_id=slack_block_id, subject=_SUBJECT, body=_SLACK_BODY)
        ],
    )
    critical = Automation(
        name=CRITICAL_AUTOMATION,
        description=(
            f"{CRITICAL_THRESHOLD} failed or crashed runs of one dlt-tagged deployment within "
            "24 hours: Slack and PagerDuty."
        ),
        enabled=True,
        trigger=_trigger(CRITICAL_THRESHOLD, CRITICAL_WITHIN, per_deployment=True),
        actions=[
            SendNotification(
                block_document_id=slack_block_id,
                subject=_CRITICAL_SUBJECT,
                body=_CRITICAL_NOTE + _SLACK_BODY,
            ),
            SendNotification(
                block_document_id=pagerduty_block_id,
                subject=_CRITICAL_SUBJECT,
                body=_CRITICAL_NOTE + _PLAIN_BODY,
            ),
        ],
    )
    return [warning, critical]


def apply_automations(definitions: list[Any]) -> list[str]:
    """Create or update each automation by name; extra copies of a name are deleted."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    done = []
    with get_client(sync_client=True) as client:
        for automation in definitions:
            # as Prefect's own `Automation.update` does: the API rejects `owner_resource` on PUT
            core = AutomationCore(**automation.model_dump(exclude={"id", "owner_resource"}))
            existing = sorted(client.read_automations_by_name(core.name), key=lambda a: str(a.id))
            if not existing:
                client.create_automation(core)
                done.append(f"automation {core.name!r} created")
                continue
            keep, *extra = existing
            client.update_automation(keep.id, core)
            for duplicate in extra:
                client.delete_automation(duplicate.id)
            done.append(
                f"automation {core.name!r} updated"
                + (f" ({len(extra)} duplicate(s) removed)" if extra else "")
            )
    return done


def apply(settings: AlertingSettings | None = None) -> list[str]:
    """Blocks and automations, idempotently; one line per thing done (no secrets)."""
    settings = settings or settings_from_config()
    slack_id, pagerduty_id = ensure_blocks(settings)
    lines = [
        f"block custom-webhook/{SLACK_BLOCK_NAME} saved (Slack incoming-webhook format)",
        f"block custom-webhook/{PAGERDUTY_BLOCK_NAME} saved (PagerDuty Events v2 -> "
        f"{settings.pagerduty_events_url})",
    ]
    return lines + apply_automations(automation_definitions(slack_id, pagerduty_id))


def delete_all() -> list[str]:
    """Remove our automations (tests, or an operator retiring the setup); blocks stay."""
    from prefect.client.orchestration import get_client

    done = []
    with get_client(sync_client=True) as client:
        for name in AUTOMATION_NAMES:
            for automation in client.read_automations_by_name(name):
                client.delete_automation(automation.id)
                done.append(f"automation {name!r} deleted")
    return done

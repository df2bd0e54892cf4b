"""Alerting as code: two notification blocks and two automations, applied idempotently.

Every alert says what failed and fits the failure (docs/operations.md says what each means):

- warning: any flow run of a deployment tagged `dlt` that ends Failed, Crashed, TimedOut or
  Refused sends one Slack message (flow, deployment, run id, state message, link to the run);
- critical: three Failed/Crashed/TimedOut runs of one deployment within 24 hours: Slack and a
  PagerDuty page. A run *Refused* for its input (an operator's typo, see
  `flows/pipeline_flow.py`) is not an outage and never counts toward the page;
- proactive (alerts on something that did NOT happen; Slack and PagerDuty): a scheduled run of a
  `dlt` deployment still not started `late_after_seconds` after it turned Late (worker down);
  a run still Running `running_grace_seconds` after its flow's timeout (hung or lost process;
  one automation per flow, sized from `pipelines.timeouts.flow_timeout`); any work pool the
  project defines (`infra.prefect_setup.WORK_POOLS`) Not Ready (no live worker) for
  `work_pool_not_ready_seconds`;
- schema change (Slack only, never a page): a run of a `dlt`-tagged deployment added columns
  to a table or lost some in its source (`flows/schema_events.py` emits one Prefect event per
  changed table); one Slack message naming the table, the columns and the fix. A retyped
  column fails its run (the contracts freeze data types), so the warning above carries it;
- resolve: PagerDuty incidents are keyed per deployment (`data-pipelines/<flow>/<deployment>`)
  or per pool, not per message text; a Completed run of the deployment (or the pool turning
  Ready) sends `event_action: resolve` with that key, so the incident closes when it recovers.
  PagerDuty ignores a resolve for a key with no open incident, so sending one per Completed run
  is harmless.

The windows live in dlt config `[alerting]` (.dlt/config.toml, env `ALERTING__...`), beside the
secrets; the tests shrink them through the same settings.

The blocks
----------
Alerts go to two blocks, `slack-webhook/alerts` and `pager-duty-webhook/data-pipelines`, Prefect's
own block types. We keep their names and their wire formats but not those two block classes, because
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
Prefect, so any server can run it), named after those two blocks:

- `custom-webhook/slack-alerts` posts Slack's incoming-webhook body, `{"text", "blocks"}`
  (Block Kit header + mrkdwn section), to the Slack webhook URL;
- `custom-webhook/pagerduty-data-pipelines` posts a PagerDuty Events v2 `trigger` event
  (`routing_key`, `event_action`, `dedup_key`, `payload{summary, source, severity: critical,
  component, custom_details}`) to the Events API URL, by default
  `https://events.pagerduty.com/v2/enqueue`;
- `custom-webhook/pagerduty-data-pipelines-resolve` posts the matching `resolve` event.

A custom-webhook block fills only `{{subject}}`, `{{body}}` and `{{name}}`, so for PagerDuty the
automation's subject is the dedup key and its body the one-line summary.

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

from infra.alert_templates import render
from infra.prefect_setup import WORK_POOL_NAMES
from pipelines.environment import ConfigurationError, configure_runtime
from pipelines.names import REFUSED_STATE_NAME

SLACK_BLOCK_NAME = "slack-alerts"  # stands for slack-webhook/alerts
PAGERDUTY_BLOCK_NAME = "pagerduty-data-pipelines"  # stands for pager-duty-webhook/data-pipelines
PAGERDUTY_RESOLVE_BLOCK_NAME = "pagerduty-data-pipelines-resolve"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
WARNING_AUTOMATION = "data-pipelines: dlt run failed (warning)"
CRITICAL_AUTOMATION = "data-pipelines: dlt runs keep failing (critical)"
RESOLVE_AUTOMATION = "data-pipelines: dlt run completed (resolve page)"
LATE_AUTOMATION = "data-pipelines: dlt run not started (late)"
RUNNING_AUTOMATION_PREFIX = "data-pipelines: running too long: "
WORK_POOL_AUTOMATION = "data-pipelines: work pool not ready"
WORK_POOL_RESOLVE_AUTOMATION = "data-pipelines: work pool ready (resolve page)"
SCHEMA_AUTOMATION = "data-pipelines: schema changed (Slack)"
# Outages: these count toward the page. A Refused run is Failed-typed but only warns.
FAILED_EVENTS = frozenset(
    {"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"}
)
WARNING_EVENTS = FAILED_EVENTS | {f"prefect.flow-run.{REFUSED_STATE_NAME}"}
# What ends a Late run's wait (it started, or someone dealt with it) ...
STARTED_EVENTS = frozenset(
    f"prefect.flow-run.{state}"
    for state in ("Pending", "Running", "Cancelling", "Cancelled", "Completed", "Failed", "Crashed")
)
# ... and a Running run's (any final or paused state; a retried flow would go Running again).
FINISHED_EVENTS = WARNING_EVENTS | frozenset(
    f"prefect.flow-run.{state}"
    for state in ("Completed", "Cancelling", "Cancelled", "Paused", "Suspended", "AwaitingRetry")
)
DLT_TAG = {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.dlt"}
CRITICAL_THRESHOLD = 3
PROACTIVE_MINIMUM_SECONDS = 10  # Prefect refuses a shorter `within` for proactive triggers
CRITICAL_WITHIN = timedelta(hours=24)


@dataclass(frozen=True)
class AlertWindows:
    """How long a proactive alert waits for what should have happened (dlt config [alerting])."""

    late_after_seconds: float = 900.0
    running_grace_seconds: float = 600.0
    work_pool_not_ready_seconds: float = 600.0


def windows_from_config() -> AlertWindows:
    """`[alerting]` windows from dlt config (.dlt/config.toml, env `ALERTING__...`)."""
    import dlt

    values: dict[str, Any] = {}
    for name, default in AlertWindows.__dataclass_fields__.items():
        configured = dlt.config.get(f"alerting.{name}")
        if configured in (None, ""):
            continue
        if isinstance(default.default, str):
            values[name] = str(configured)
            continue
        try:
            values[name] = float(configured)
        except (TypeError, ValueError):
            values[name] = -1.0
        # the running alert's window is a flow timeout plus this grace: any grace will do
        minimum = 0 if name == "running_grace_seconds" else PROACTIVE_MINIMUM_SECONDS
        if values[name] < minimum or values[name] < 0:
            raise ConfigurationError(
                f"[alerting] {name}={configured!r} is not a number of seconds of at least "
                f"{minimum} (Prefect's shortest proactive window is 10 s): fix it in "
                f".dlt/config.toml or ALERTING__{name.upper()}"
            )
    return AlertWindows(**values)


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

# PagerDuty Events v2. The automation's subject is the dedup key (one per deployment or pool),
# so every alert about one broken deployment updates one incident, and the resolve sent when it
# recovers closes it; the body is the one-line summary.
PAGERDUTY_JSON: dict[str, Any] = {
    "routing_key": "{{routing_key}}",
    "event_action": "trigger",
    "dedup_key": "{{subject}}",
    "payload": {
        "summary": "{{body}}",
        "source": "prefect/data-pipelines",
        "severity": "critical",
        "component": "{{subject}}",
        "custom_details": {"dedup_key": "{{subject}}"},
    },
    "client": "Prefect automations (data-pipelines)",
}
PAGERDUTY_RESOLVE_JSON: dict[str, Any] = {
    "routing_key": "{{routing_key}}",
    "event_action": "resolve",
    "dedup_key": "{{subject}}",
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


def pagerduty_block(settings: AlertingSettings, body: dict[str, Any] = PAGERDUTY_JSON) -> Any:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    return CustomWebhookNotificationBlock(
        name="data-pipelines",
        url=settings.pagerduty_events_url,
        method="POST",
        json_data=body,
        headers={"Content-Type": "application/json"},
        secrets={"routing_key": settings.pagerduty_integration_key},
        timeout=10,
    )


@dataclass(frozen=True)
class BlockIds:
    """The saved notification blocks' document ids."""

    slack: UUID
    pagerduty: UUID
    pagerduty_resolve: UUID


def ensure_blocks(settings: AlertingSettings) -> BlockIds:
    """Save (create or overwrite) the three blocks; their document ids."""
    return BlockIds(
        slack=slack_block(settings).save(SLACK_BLOCK_NAME, overwrite=True),
        pagerduty=pagerduty_block(settings).save(PAGERDUTY_BLOCK_NAME, overwrite=True),
        pagerduty_resolve=pagerduty_block(settings, PAGERDUTY_RESOLVE_JSON).save(
            PAGERDUTY_RESOLVE_BLOCK_NAME, overwrite=True
        ),
    )


# ---- automations ----------------------------------------------------------------------------

# The messages are whole templates in infra/alert_templates.py (Jinja the Prefect server
# renders when an automation fires); `render` fills in their shared parts and the window.


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.3g}"


def _flow_run_trigger(
    expect: set[str],
    *,
    threshold: int = 1,
    within: timedelta = timedelta(0),
    per_deployment: bool = False,
    flow_name: str | None = None,
    after: set[str] | None = None,
) -> Any:
    """A trigger on flow-run state events of `dlt`-tagged runs (of one flow, if named)."""
    from prefect.events.schemas.automations import EventTrigger, Posture

    related: list[dict[str, str]] = [dict(DLT_TAG)]
    if flow_name is not None:
        related.append({"prefect.resource.role": "flow", "prefect.resource.name": flow_name})
    if after:
        # Proactive: each run that entered an `after` state must reach an `expect` state within
        # the window, else fire (for_each: one bucket, and one alert, per flow run).
        for_each = {"prefect.resource.id"}
        posture = Posture.Proactive
    else:
        # Count per deployment: one pipeline failing three times is "stays broken"; three
        # unrelated one-offs each got their warning already.
        for_each = {"related:deployment:prefect.resource.id"} if per_deployment else set()
        posture = Posture.Reactive
    return EventTrigger(
        after=after or set(),
        expect=expect,
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related=related if len(related) > 1 else related[0],
        for_each=for_each,
        posture=posture,
        threshold=threshold,
        within=within,
    )


def _work_pool_trigger(
    pools: tuple[str, ...], expect: str, after: str | None = None, within: timedelta = timedelta(0)
) -> Any:
    from prefect.events.schemas.automations import EventTrigger, Posture

    return EventTrigger(
        after={after} if after else set(),
        expect={expect},
        match={"prefect.resource.id": "prefect.work-pool.*", "prefect.resource.name": list(pools)},
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive if after else Posture.Reactive,
        threshold=1,
        within=within,
    )


def _schema_change_trigger() -> Any:
    """A schema-change event (`flows/schema_events.py`) from a `dlt`-tagged run: each one."""
    from prefect.events.schemas.automations import EventTrigger, Posture

    from pipelines.names import SLACK_SCHEMA_EVENTS, TABLE_RESOURCE_PREFIX

    return EventTrigger(
        expect=set(SLACK_SCHEMA_EVENTS),
        match={"prefect.resource.id": TABLE_RESOURCE_PREFIX + "*"},
        match_related=dict(DLT_TAG),
        posture=Posture.Reactive,
        threshold=1,
        within=timedelta(0),
    )


def _page(blocks: BlockIds, dedup_key: str, summary: str) -> Any:
    from prefect.automations import SendNotification

    return SendNotification(block_document_id=blocks.pagerduty, subject=dedup_key, body=summary)


def _resolve(blocks: BlockIds, dedup_key: str) -> Any:
    from prefect.automations import SendNotification

    return SendNotification(
        block_document_id=blocks.pagerduty_resolve, subject=dedup_key, body="resolved"
    )


def _slack(blocks: BlockIds, subject: str, body: str) -> Any:
    from prefect.automations import SendNotification

    return SendNotification(block_document_id=blocks.slack, subject=subject, body=body)


def automation_definitions(
    blocks: BlockIds,
    windows: AlertWindows | None = None,
    flow_timeouts: dict[str, float] | None = None,
    work_pools: tuple[str, ...] = WORK_POOL_NAMES,
) -> list[Any]:
    """Every automation, as Prefect objects (not yet applied).

    `flow_timeouts` (flow name -> seconds) sizes the "running too long" alerts; by default the
    flows' own timeouts (`pipelines.timeouts`), read from the same config the flows read.
    `work_pools` are the pools watched for Not Ready: every pool the project defines.
    """
    from prefect.automations import Automation

    windows = windows or windows_from_config()
    if flow_timeouts is None:
        from pipelines.timeouts import flow_timeouts as configured_flow_timeouts

        flow_timeouts = configured_flow_timeouts()
    late = windows.late_after_seconds
    definitions = [
        Automation(
            name=WARNING_AUTOMATION,
            description="A flow run of a dlt-tagged deployment ended Failed, Crashed, TimedOut "
            "or Refused (bad input): Slack.",
            trigger=_flow_run_trigger(set(WARNING_EVENTS)),
            actions=[_slack(blocks, render("subject"), render("slack_body"))],
        ),
        Automation(
            name=CRITICAL_AUTOMATION,
            description=(
                f"{CRITICAL_THRESHOLD} Failed, Crashed or TimedOut runs of one dlt-tagged "
                "deployment within 24 hours (Refused runs do not count): Slack and PagerDuty."
            ),
            trigger=_flow_run_trigger(
                set(FAILED_EVENTS),
                threshold=CRITICAL_THRESHOLD,
                within=CRITICAL_WITHIN,
                per_deployment=True,
            ),
            actions=[
                _slack(blocks, render("critical_subject"), render("critical_slack")),
                _page(blocks, render("dedup_key"), render("critical_summary")),
            ],
        ),
        Automation(
            name=RESOLVE_AUTOMATION,
            description="A run of a dlt-tagged deployment Completed: resolve its PagerDuty "
            "incident, if one is open (dedup key per deployment).",
            trigger=_flow_run_trigger({"prefect.flow-run.Completed"}),
            actions=[_resolve(blocks, render("dedup_key"))],
        ),
        Automation(
            name=SCHEMA_AUTOMATION,
            description="A run of a dlt-tagged deployment added or lost columns of an existing "
            "table: one Slack message naming table, columns and fix (never a page).",
            trigger=_schema_change_trigger(),
            # the event carries the rendered message (flows/schema_events.py)
            actions=[_slack(blocks, "{{ event.payload.subject }}", "{{ event.payload.body }}")],
        ),
        Automation(
            name=LATE_AUTOMATION,
            description=f"A scheduled run of a dlt-tagged deployment still not started "
            f"{_minutes(late)} min after it turned Late (worker down?): Slack and PagerDuty.",
            trigger=_flow_run_trigger(
                set(STARTED_EVENTS),
                after={"prefect.flow-run.Late"},
                within=timedelta(seconds=late),
            ),
            actions=[
                _slack(
                    blocks, render("late_subject"), render("late_slack", minutes=_minutes(late))
                ),
                _page(blocks, render("dedup_key"), render("late_summary")),
            ],
        ),
    ]
    for flow_name, timeout in sorted(flow_timeouts.items()):
        limit = timeout + windows.running_grace_seconds
        definitions.append(
            Automation(
                name=RUNNING_AUTOMATION_PREFIX + flow_name,
                description=f"A run of {flow_name} (dlt-tagged) still Running {_minutes(limit)} "
                f"min after it started: its timeout ({timeout:g} s) plus "
                f"{windows.running_grace_seconds:g} s. Slack and PagerDuty.",
                trigger=_flow_run_trigger(
                    set(FINISHED_EVENTS),
                    after={"prefect.flow-run.Running"},
                    within=timedelta(seconds=limit),
                    flow_name=flow_name,
                ),
                actions=[
                    _slack(
                        blocks,
                        render("running_subject"),
                        render("running_slack", minutes=_minutes(limit)),
                    ),
                    _page(blocks, render("dedup_key"), render("running_summary")),
                ],
            )
        )
    not_ready = windows.work_pool_not_ready_seconds
    pools = ", ".join(work_pools)
    definitions += [
        Automation(
            name=WORK_POOL_AUTOMATION,
            description=f"Work pools {pools}: one Not Ready (no live worker) for "
            f"{_minutes(not_ready)} min: Slack and PagerDuty.",
            trigger=_work_pool_trigger(
                work_pools,
                expect="prefect.work-pool.ready",
                after="prefect.work-pool.not-ready",
                within=timedelta(seconds=not_ready),
            ),
            actions=[
                _slack(
                    blocks, render("pool_subject"), render("pool_body", minutes=_minutes(not_ready))
                ),
                _page(
                    blocks,
                    render("pool_dedup_key"),
                    render("pool_body", minutes=_minutes(not_ready)),
                ),
            ],
        ),
        Automation(
            name=WORK_POOL_RESOLVE_AUTOMATION,
            description=f"Work pools {pools}: one Ready again: resolve its PagerDuty incident.",
            trigger=_work_pool_trigger(work_pools, expect="prefect.work-pool.ready"),
            actions=[_resolve(blocks, render("pool_dedup_key"))],
        ),
    ]
    return definitions


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


def apply(
    settings: AlertingSettings | None = None,
    windows: AlertWindows | None = None,
    work_pools: tuple[str, ...] = WORK_POOL_NAMES,
) -> list[str]:
    """Blocks and automations, idempotently; one line per thing done (no secrets)."""
    settings = settings or settings_from_config()
    blocks = ensure_blocks(settings)
    lines = [
        f"block custom-webhook/{SLACK_BLOCK_NAME} saved (Slack incoming-webhook format)",
        f"block custom-webhook/{PAGERDUTY_BLOCK_NAME} saved (PagerDuty Events v2 trigger -> "
        f"{settings.pagerduty_events_url})",
        f"block custom-webhook/{PAGERDUTY_RESOLVE_BLOCK_NAME} saved (PagerDuty Events v2 resolve)",
    ]
    definitions = automation_definitions(blocks, windows, work_pools=work_pools)
    return lines + apply_automations(definitions) + _delete_retired(definitions)


def _delete_retired(definitions: list[Any]) -> list[str]:
    """Remove our automations no longer defined (a flow removed from the timeouts table)."""
    from prefect.client.orchestration import get_client

    # the silent-flow-runs automation is the platform's (`apply prefect`), not an alert
    wanted = {automation.name for automation in definitions} | {SILENT_FLOW_RUNS_AUTOMATION}
    done = []
    with get_client(sync_client=True) as client:
        for automation in client.read_automations():
            if automation.name.startswith("data-pipelines: ") and automation.name not in wanted:
                client.delete_automation(automation.id)
                done.append(f"automation {automation.name!r} deleted (no longer defined)")
    return done


def delete_all() -> list[str]:
    """Remove our automations (tests, or an operator retiring the setup); blocks stay."""
    from prefect.client.orchestration import get_client

    done = []
    with get_client(sync_client=True) as client:
        for automation in client.read_automations():
            if automation.name.startswith("data-pipelines: "):
                client.delete_automation(automation.id)
                done.append(f"automation {automation.name!r} deleted")
    return done


# ---- flow runs whose process died -------------------------------------------------------------


SILENT_FLOW_RUNS_AUTOMATION = "data-pipelines: flow runs that stopped heartbeating end Crashed"
# Prefect 3.9.1 flow runs, in-process ones included (`data-pipelines run`), emit
# `prefect.flow-run.heartbeat` every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (default 180);
# three missed in a row is a dead process.
HEARTBEAT_SECONDS = 180
MISSED_HEARTBEATS = 3


def silent_flow_runs_crash(within: float = HEARTBEAT_SECONDS * MISSED_HEARTBEATS) -> Any:
    """Prefect's "zombie flow runs" automation: no heartbeat nor end within `within` s: Crashed.

    A flow run whose process died (`kill -9`, an OOM kill, a lost machine) reports nothing:
    a worker's run is marked Crashed by its worker, but a run started in-process (the CLI, a
    script) stays Running forever, and reads as a holder in every later wait.
    """
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    ended = {f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled")}
    ended |= {"prefect.flow-run.Crashed"}
    return Automation(
        name=SILENT_FLOW_RUNS_AUTOMATION,
        description=(
            f"A flow run that sent a heartbeat and then neither another one nor an end within "
            f"{within:g} s lost its process: marked Crashed (the run guard's wait lines and the "
            "failure alerts then see it)."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *ended},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {within:g} s: its process died (killed, out of "
                "memory, or its machine was lost).",
            )
        ],
    )


def ensure_silent_flow_runs_crash(
    within: float = HEARTBEAT_SECONDS * MISSED_HEARTBEATS,
) -> list[str]:
    """Create or update the automation that marks silent flow runs Crashed (idempotent)."""
    return apply_automations([silent_flow_runs_crash(within)])

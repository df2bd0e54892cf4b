"""Alerting as code: three notification blocks, and the automations of infra/alerts.yaml.

The automations are data: infra/alerts.yaml lists each one (name, description, Prefect trigger,
actions) and is reviewed like configuration; this module only loads it, fills in the values
that have an owner elsewhere, and applies it. docs/operations.md says what each alert means.
In short, for flow runs of deployments tagged `dlt` (a new pipeline deployed with the tag is
covered with no change):

- failed (Slack): a run ends Failed, Crashed, TimedOut or Refused;
- keeps failing (Slack + PagerDuty page): 3 Failed/Crashed/TimedOut runs of one deployment
  within 24 hours. A run *Refused* for its input (an operator's typo, see
  `flows/pipeline_flow.py`) is not an outage and never counts toward the page;
- not started (Slack + page): a scheduled run still not started `late_after_seconds` after it
  turned Late (worker down);
- running too long (Slack + page): a run still Running the longest flow timeout plus
  `running_grace_seconds` after it started (below);
- schema changed (Slack only): a run added columns to a table or its source lost some
  (`flows/schema_events.py` emits one Prefect event per changed table);
- work pool not ready (Slack + page): a pool the deployments run in has had no live worker for
  `work_pool_not_ready_seconds`; pools no deployment runs in are paused
  (`infra.prefect_setup.ensure_work_pools`) and not watched;
- resolves (PagerDuty only): see below.

What a resolve answers
----------------------
PagerDuty incidents are keyed per deployment (`data-pipelines/<flow>/<deployment>`) or per pool
(`data-pipelines/work-pool/<pool>`), not per message. A resolve is sent only after trouble: the
first Completed run of a deployment after one of its runs ended Failed, Crashed or TimedOut or
went Late (the only roads to a page), and a pool turning Ready after it was Not Ready. A
successful run after successful runs sends nothing. This is one plain Prefect EventTrigger
(Reactive, `after` the trouble, `expect` Completed, `for_each` the deployment), not a
Sequence/CompoundTrigger: in Prefect 3.9.1 a composite trigger keeps its child firings per
automation, not per `for_each` value (`prefect/server/events/models/
composite_trigger_child_firing.py`), so deployment A failing and deployment B completing would
fire it with B's key. An EventTrigger with `after` keeps one bucket per deployment, opened by
the first trouble event, fired and removed by the next Completed, kept for `within` (30 days).
Prefect's `actions_on_resolve` is never called by the open-source server (only Cloud sets
`TriggerState.Resolved`), so it cannot carry the resolve either. PagerDuty ignores a resolve for
a key with no open incident (after a single failure that only reached Slack).

Running too long: one automation, not one per flow
--------------------------------------------------
A trigger has one window (`within`); there is no per-run deadline event to key on. So one
automation watches every `dlt` run with the longest flow timeout (`pipelines.timeouts`, read
at apply time) plus the grace: 8.8 h with the defaults, where the per-flow ones fired from 1.5 h
(currencies) to 8.8 h (backfill). What it gives up is covered elsewhere: each flow's own timeout
(`timeout_seconds`, the same numbers) ends a run that outlives it as TimedOut, which alerts at
once; a run whose process died stops heartbeating and is marked Crashed by the silent-flow-runs
automation below, which alerts too. What is left for this one is a process stuck where neither
reaches (inside a C call, still heartbeating); hours, not minutes, for that rare case, before
the next day's run.

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

So all three are Prefect's `CustomWebhookNotificationBlock` (slug `custom-webhook`, shipped with
Prefect, so any server can run it), named after those two blocks:

- `custom-webhook/slack-alerts` posts Slack's incoming-webhook body, `{"text", "blocks"}`
  (Block Kit header + mrkdwn section), to the Slack webhook URL;
- `custom-webhook/pagerduty-data-pipelines` posts a PagerDuty Events v2 `trigger` event
  (`routing_key`, `event_action`, `dedup_key`, `payload{summary, source, severity: critical,
  component, custom_details}`) to the Events API URL, by default
  `https://events.pagerduty.com/v2/enqueue`;
- `custom-webhook/pagerduty-data-pipelines-resolve` posts the matching `resolve` event.

A custom-webhook block fills only `{{subject}}`, `{{body}}` and `{{name}}`, so for PagerDuty the
automation's subject is the dedup key and its body the one-line summary. The messages are
templates in infra/alert_templates.py, named by the YAML.

Secrets (the Slack webhook URL, the PagerDuty routing key) live in the blocks' `secrets` field
(stored encrypted, shown obfuscated) and reach the request only through `{{placeholders}}`; they
come from dlt configuration, never from git: `[alerting] slack_webhook_url`,
`pagerduty_integration_key`, optional `pagerduty_events_url` (environment
`ALERTING__SLACK_WEBHOOK_URL`, ..., `.dlt/secrets.toml`, or the `[alerting]` table of the AWS
Secrets Manager secret `dlt/dlt_secrets_toml` read by dlt's provider; see README). The windows
live in dlt config `[alerting]` too (.dlt/config.toml, env `ALERTING__...`); the tests shrink
them through the same settings.

Applying
--------
`data-pipelines apply alerting` (and `data-pipelines up`, with the local receiver's URLs) saves
the three blocks (overwrite) and applies each automation of the file by name: create it when
none exists, update it when it differs from the file, leave it alone when it does not (Prefect
gives a trigger new ids on every update, which drops its open windows: a failure waiting for
its resolve, the count toward a page), delete extra copies, and delete every `data-pipelines:
...` automation the file no longer lists (renamed or retired ones), except the silent-flow-runs
one, which `data-pipelines apply prefect` owns. Applying twice leaves one of each; changing the
file updates them on the next apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any
from uuid import UUID

import yaml

from infra.alert_templates import MESSAGE_NAMES, render
from pipelines.environment import ConfigurationError, configure_runtime

SLACK_BLOCK_NAME = "slack-alerts"  # stands for slack-webhook/alerts
PAGERDUTY_BLOCK_NAME = "pagerduty-data-pipelines"  # stands for pager-duty-webhook/data-pipelines
PAGERDUTY_RESOLVE_BLOCK_NAME = "pagerduty-data-pipelines-resolve"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
PROACTIVE_MINIMUM_SECONDS = 10  # Prefect refuses a shorter `within` for proactive triggers


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


# ---- automations: infra/alerts.yaml ------------------------------------------------------------

ALERTS_FILE = Path(__file__).with_name("alerts.yaml")
# `to:` in the file -> the BlockIds field of that block
CHANNELS = {"slack": "slack", "pagerduty": "pagerduty", "pagerduty-resolve": "pagerduty_resolve"}
_FILE_KEYS = {"shared", "automations"}
_ENTRY_KEYS = {"name", "description", "trigger", "actions"}
# Prefect's EventTrigger fields (it ignores unknown ones, so a typo would pass silently)
_TRIGGER_KEYS = {
    "match",
    "match_related",
    "after",
    "expect",
    "for_each",
    "posture",
    "threshold",
    "within",
}
_ACTION_KEYS = {"to", "subject", "body", "minutes"}
_WHOLE_VALUE = re.compile(r"\$(\w+)")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.3g}"


def load_alerts(path: Path = ALERTS_FILE) -> dict[str, dict[str, Any]]:
    """The file's automations by key, as written (placeholders not yet filled in)."""
    data = yaml.safe_load(path.read_text())
    unknown = set(data) - _FILE_KEYS
    if unknown or not isinstance(data.get("automations"), dict):
        raise ConfigurationError(
            f"{path}: expected the top-level keys {sorted(_FILE_KEYS)} with `automations` a "
            f"mapping, found {sorted(data)}"
        )
    for key, entry in data["automations"].items():
        where = f"{path.name}: automations.{key}"
        _known_keys(where, entry, _ENTRY_KEYS, required=_ENTRY_KEYS)
        _known_keys(f"{where}.trigger", entry["trigger"], _TRIGGER_KEYS, required={"posture"})
        for index, action in enumerate(entry["actions"]):
            _known_keys(
                f"{where}.actions[{index}]", action, _ACTION_KEYS, {"to", "subject", "body"}
            )
            if action["to"] not in CHANNELS:
                raise ConfigurationError(
                    f"{where}.actions[{index}]: to={action['to']!r}, expected one of "
                    f"{sorted(CHANNELS)}"
                )
            for field in ("subject", "body"):
                if action[field] not in MESSAGE_NAMES:
                    raise ConfigurationError(
                        f"{where}.actions[{index}]: {field}={action[field]!r} is not a message "
                        "of infra/alert_templates.py"
                    )
    return data["automations"]


def _known_keys(where: str, value: Any, allowed: set[str], required: set[str]) -> None:
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where}: expected a mapping, found {value!r}")
    problems = []
    if unknown := set(value) - allowed:
        problems.append(f"unknown key(s) {sorted(unknown)} (allowed: {sorted(allowed)})")
    if missing := required - set(value):
        problems.append(f"missing {sorted(missing)}")
    if problems:
        raise ConfigurationError(f"{where}: " + "; ".join(problems))


def apply_time_values(
    windows: AlertWindows, flow_timeouts: dict[str, float], work_pools: tuple[str, ...]
) -> dict[str, Any]:
    """What `$name`/`${name}` in the file stand for, read from their owners at apply time."""
    longest_flow = max(sorted(flow_timeouts), key=lambda name: flow_timeouts[name])
    longest = flow_timeouts[longest_flow]
    seconds = {
        "late_after_seconds": windows.late_after_seconds,
        "work_pool_not_ready_seconds": windows.work_pool_not_ready_seconds,
        "running_grace_seconds": windows.running_grace_seconds,
        "longest_flow_timeout_seconds": longest,
        "running_too_long_seconds": longest + windows.running_grace_seconds,
    }
    values: dict[str, Any] = {**seconds, "longest_flow": longest_flow}
    values |= {key.removesuffix("_seconds") + "_minutes": _minutes(v) for key, v in seconds.items()}
    values["work_pools_in_service"] = list(work_pools)
    values["work_pools_in_service_text"] = ", ".join(work_pools) or "none"
    return values


def _fill(value: Any, values: dict[str, Any], where: str) -> Any:
    """`value` with `$name` (a whole value) and `${name}` (inside text) filled in."""
    if isinstance(value, dict):
        return {key: _fill(item, values, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, values, where) for item in value]
    if not isinstance(value, str):
        return value
    try:
        if whole := _WHOLE_VALUE.fullmatch(value):
            return values[whole[1]]
        return Template(value).substitute(
            {key: f"{v:g}" if isinstance(v, float) else v for key, v in values.items()}
        )
    except (KeyError, ValueError) as error:
        raise ConfigurationError(
            f"{where}: {value!r} names no value filled in at apply time ({error}); known: "
            f"{', '.join(sorted(values))}"
        ) from None


def automation_definitions(
    blocks: BlockIds,
    windows: AlertWindows | None = None,
    flow_timeouts: dict[str, float] | None = None,
    work_pools: tuple[str, ...] | None = None,
    path: Path = ALERTS_FILE,
) -> list[Any]:
    """Every automation of the file, as Prefect objects (not yet applied), in file order.

    By default the windows come from `[alerting]`, `flow_timeouts` (flow name -> seconds) from
    the flows' own timeouts (`pipelines.timeouts`, the same config the flows read), and
    `work_pools` are the pools prefect.yaml's deployments run in.
    """
    from prefect.automations import Automation, SendNotification
    from prefect.events.schemas.automations import EventTrigger
    from pydantic import ValidationError

    windows = windows or windows_from_config()
    if flow_timeouts is None:
        from pipelines.timeouts import flow_timeouts as configured_flow_timeouts

        flow_timeouts = configured_flow_timeouts()
    if work_pools is None:
        from infra.prefect_setup import pools_in_service

        work_pools = pools_in_service()
    values = apply_time_values(windows, flow_timeouts, work_pools)
    definitions = []
    for key, entry in load_alerts(path).items():
        where = f"{path.name}: automations.{key}"
        filled = _fill({k: v for k, v in entry.items() if k != "actions"}, values, where)
        actions = []
        for index, action in enumerate(entry["actions"]):
            action = _fill(action, values, f"{where}.actions[{index}]")
            minutes = action.get("minutes")
            actions.append(
                SendNotification(
                    block_document_id=getattr(blocks, CHANNELS[action["to"]]),
                    subject=render(action["subject"], minutes=minutes),
                    body=render(action["body"], minutes=minutes),
                )
            )
        try:
            trigger = EventTrigger(**filled["trigger"])
        except ValidationError as error:  # Prefect's own checks, one line
            problems = "; ".join(
                ".".join(str(part) for part in problem["loc"]) + ": " + problem["msg"]
                if problem["loc"]
                else problem["msg"]
                for problem in error.errors()
            )
            raise ConfigurationError(f"{where}.trigger: {problems}") from None
        definitions.append(
            Automation(
                name=filled["name"],
                description=" ".join(filled["description"].split()),
                trigger=trigger,
                actions=actions,
            )
        )
    return definitions


def automation_names(path: Path = ALERTS_FILE) -> dict[str, str]:
    """The automations' names by their key in the file (`failed`, `keeps-failing`, ...)."""
    return {key: entry["name"] for key, entry in load_alerts(path).items()}


def apply_automations(definitions: list[Any]) -> list[str]:
    """Create or update each automation by name; extra copies of a name are deleted.

    One that already does what its definition says is left as it is: Prefect gives a trigger
    new ids on every update, which drops its open windows (a failure waiting for its recovery's
    resolve, a count toward the page, a Late run's wait), so an apply that changes nothing (a
    deploy) must not touch them.
    """
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
            same = _what_it_does(keep) == _what_it_does(core)
            if not same:
                client.update_automation(keep.id, core)
            for duplicate in extra:
                client.delete_automation(duplicate.id)
            done.append(
                f"automation {core.name!r} {'unchanged' if same else 'updated'}"
                + (f" ({len(extra)} duplicate(s) removed)" if extra else "")
            )
    return done


def _what_it_does(automation: Any) -> Any:
    """An automation's definition, without the ids the server assigns, sets in one order."""
    from prefect.events.schemas.automations import AutomationCore

    core = AutomationCore(**automation.model_dump(exclude={"id", "owner_resource"}))

    def normalized(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: normalized(v, k) for k, v in value.items() if k != "id"}
        if isinstance(value, list):
            items = [normalized(item) for item in value]
            # a trigger's `after`, `expect` and `for_each` are sets (JSON lists, any order)
            return sorted(items) if key in {"after", "expect", "for_each"} else items
        return value

    return normalized(core.model_dump(mode="json", exclude={"owner_resource"}))


def apply(
    settings: AlertingSettings | None = None,
    windows: AlertWindows | None = None,
    work_pools: tuple[str, ...] | None = None,
) -> list[str]:
    """Blocks and automations, idempotently; one line per thing done (no secrets).

    `work_pools`: the pools the work-pool alerts watch (default: those deployments run in).
    """
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
    """Remove our automations the file no longer lists (renamed or retired ones)."""
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

"""infra/alerts.yaml as configuration: what the loader accepts, refuses and fills in. No server.

The alerts' behaviour on a real Prefect server is tests/test_alerting.py; here, the file's
promises that need no server: every pipeline is covered through the `dlt` tag, the per-pipeline
numbers come from their owner, the names and descriptions say what fires and where it goes, and
a typo is refused instead of silently dropped (Prefect's trigger models ignore unknown keys).
"""

from __future__ import annotations

import re
from pathlib import Path
from uuid import uuid4

import pytest
import yaml

from infra import alert_templates, alerting
from infra.prefect_setup import WORK_POOL_NAMES, pools_in_service
from pipelines.environment import ConfigurationError
from pipelines.names import REFUSED_STATE_NAME, SLACK_SCHEMA_EVENTS, TABLE_RESOURCE_PREFIX
from pipelines.timeouts import flow_tasks, flow_timeouts

BLOCKS = alerting.BlockIds(slack=uuid4(), pagerduty=uuid4(), pagerduty_resolve=uuid4())
WINDOWS = alerting.AlertWindows()
DLT_TAG = {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.dlt"}


def definitions(**kwargs):
    return {a.name: a for a in alerting.automation_definitions(BLOCKS, WINDOWS, **kwargs)}


def by_key() -> dict[str, object]:
    names = alerting.automation_names()
    found = definitions()
    return {key: found[name] for key, name in names.items()}


def test_every_automation_says_what_fires_it_and_where_it_goes() -> None:
    automations = by_key()
    assert len(automations) == len(alerting.load_alerts()) == len(set(alerting.automation_names()))
    channel = {BLOCKS.slack: "Slack", BLOCKS.pagerduty: "PagerDuty page"}
    for key, automation in automations.items():
        # the prefix is how `_delete_retired` finds our automations
        assert automation.name.startswith("data-pipelines: "), key
        assert "->" in automation.name, key  # what fires it -> where it goes
        assert automation.description.startswith("Fires "), key
        assert "Sends" in automation.description, key
        assert "$" not in automation.name + automation.description, key  # all filled in
        sent_to = {
            channel.get(a.block_document_id, "PagerDuty resolve") for a in automation.actions
        }
        for destination in sent_to:
            assert destination in automation.name, (key, destination)
        if sent_to == {"Slack"}:
            assert "Does not page" in automation.description, key


def test_flow_run_alerts_cover_every_pipeline_through_the_dlt_tag_never_by_flow_name() -> None:
    text = alerting.ALERTS_FILE.read_text()
    for flow_name in flow_tasks():
        assert flow_name not in text, flow_name
    for key, automation in by_key().items():
        trigger = automation.trigger
        if trigger.match.root["prefect.resource.id"].startswith("prefect.work-pool"):
            continue
        assert trigger.match_related.root == DLT_TAG, key


def test_one_running_too_long_alert_sized_from_the_longest_flow_timeout() -> None:
    running = [a for a in by_key().values() if "prefect.flow-run.Running" in a.trigger.after]
    assert len(running) == 1
    longest = max(flow_timeouts().values())
    within = running[0].trigger.within.total_seconds()
    assert within == longest + WINDOWS.running_grace_seconds
    # the message quotes the same window
    assert f"Still Running {within / 60:.3g} min after it started" in running[0].actions[0].body
    # read at apply time from the owner: a new pipeline's longer timeout moves it
    bigger = definitions(flow_timeouts={"some-new-pipeline": longest * 2})
    (moved,) = [a for a in bigger.values() if "prefect.flow-run.Running" in a.trigger.after]
    assert moved.trigger.within.total_seconds() == longest * 2 + WINDOWS.running_grace_seconds
    assert "some-new-pipeline" in moved.description


def test_resolves_follow_trouble_of_the_same_deployment_or_pool_only() -> None:
    automations = by_key()
    recovered = automations["recovered"].trigger
    assert recovered.expect == {"prefect.flow-run.Completed"}
    assert recovered.after == {
        "prefect.flow-run.Failed",
        "prefect.flow-run.Crashed",
        "prefect.flow-run.TimedOut",
    }  # not Late: a run Late for a moment alerted nobody, so it has nothing to resolve
    # the same bucket key as the incident's: one deployment
    assert recovered.for_each == automations["keeps-failing"].trigger.for_each
    assert recovered.for_each == {"related:deployment:prefect.resource.id"}
    assert recovered.within.days >= 7  # a weekly pipeline's next run can still resolve
    pool = automations["work-pool-ready-again"].trigger
    assert pool.after == {"prefect.work-pool.not-ready"}
    assert pool.expect == {"prefect.work-pool.ready"}
    for key in ("recovered", "work-pool-ready-again"):
        (action,) = automations[key].actions
        assert action.block_document_id == BLOCKS.pagerduty_resolve


def test_values_owned_elsewhere_match_their_owners() -> None:
    automations = by_key()
    warning = automations["failed"].trigger
    assert f"prefect.flow-run.{REFUSED_STATE_NAME}" in warning.expect
    # Refused never counts toward a page
    assert not any(REFUSED_STATE_NAME in e for e in automations["keeps-failing"].trigger.expect)
    schema = automations["schema-changed"].trigger
    assert schema.expect == set(SLACK_SCHEMA_EVENTS)
    assert schema.match.root["prefect.resource.id"] == TABLE_RESOURCE_PREFIX + "*"
    critical = automations["keeps-failing"]
    threshold, hours = critical.trigger.threshold, critical.trigger.within.total_seconds() / 3600
    for action in critical.actions:
        text = action.subject + action.body
        assert f"{threshold} times within {hours:g} h" in text or "Three" in text, text
    assert (threshold, hours) == (3, 24)


def test_work_pool_alerts_watch_only_pools_deployments_run_in() -> None:
    served = pools_in_service()
    assert served == ("production",)
    assert "production-k8s" in WORK_POOL_NAMES and "production-k8s" not in served
    automations = by_key()
    for key in ("work-pool-not-ready", "work-pool-ready-again"):
        trigger = automations[key].trigger
        assert trigger.match.root["prefect.resource.name"] == list(served), key
    # a pool paused meanwhile ends the wait: no alert for a pool not meant to run
    assert "prefect.work-pool.paused" in automations["work-pool-not-ready"].trigger.expect


def test_windows_come_from_alerting_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTING__LATE_AFTER_SECONDS", "60")
    name = alerting.automation_names()["not-started"]
    # windows_from_config() when none are given
    (late,) = [a for a in alerting.automation_definitions(BLOCKS) if a.name == name]
    assert late.trigger.within.total_seconds() == 60
    assert "has not started 1 min after it turned Late" in late.actions[0].body
    assert "not started 1 min later" in late.description


def write(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(alerting.ALERTS_FILE.read_text())
    change(data["automations"])
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (
            lambda a: a["failed"]["trigger"].update(treshold=3),
            r"automations\.failed\.trigger: unknown key\(s\) \['treshold'\]",
        ),
        (
            lambda a: a["failed"].update(action=[]),
            r"automations\.failed: unknown key\(s\) \['action'\]",
        ),
        (
            lambda a: a["failed"]["actions"][0].update(to="email"),
            r"to='email', expected one of \['pagerduty', 'pagerduty-resolve', 'slack'\]",
        ),
        (
            lambda a: a["failed"]["actions"][0].update(body="slack_bdy"),
            r"body='slack_bdy' is not a message of infra/alert_templates\.py",
        ),
        (
            lambda a: a["not-started"]["trigger"].update(within="$late_seconds"),
            r"automations\.not-started\.trigger\.within: '\$late_seconds' names no value",
        ),
        (
            lambda a: a["not-started"].update(description="after ${late_minutes} min"),
            r"names no value filled in at apply time",
        ),
        (
            lambda a: a["not-started"]["trigger"].update(within=5),
            r"automations\.not-started\.trigger: .*10 seconds",
        ),
    ],
    ids=[
        "trigger key typo",
        "entry key typo",
        "unknown block",
        "unknown message",
        "unknown value",
        "unknown value in text",
        "prefect refuses",
    ],
)
def test_a_mistake_in_the_file_is_refused_with_where_it_is(
    tmp_path: Path, change, refusal: str
) -> None:
    with pytest.raises(ConfigurationError, match=refusal):
        alerting.automation_definitions(BLOCKS, WINDOWS, path=write(tmp_path, change))


def test_messages_named_by_the_file_exist_and_are_all_used() -> None:
    used = {
        action[field]
        for entry in alerting.load_alerts().values()
        for action in entry.get("actions") or []
        for field in ("subject", "body")
    }
    assert used == set(alert_templates.MESSAGE_NAMES)
    # the Jinja the server renders: no `${...}` part left unfilled
    for name in used:
        rendered = alert_templates.render(name, minutes="15")
        assert not re.search(r"\$\{?\w", rendered), name

"""Alerting end to end: real Prefect server (its trigger and action services), real runs of the
`currencies-weekly/production` deployment, real HTTP to the local webhook receiver.

The session's Prefect test harness is an ephemeral server, which runs the reactive triggers and
actions services (`RunInEphemeralServers`) and evaluates proactive triggers (every 5 s), so no
second server is started. Each test applies the automations afresh (new automation ids, so no
trigger counts carry over between tests), with the proactive windows shrunk through the same
dlt config (`ALERTING__...`, `DATA_PIPELINES__TIMEOUTS__...`) the product reads.

What the server's own services would do and the harness does not run (the late-runs service
marking a run Late, the foreman marking a pool Not Ready) is done here through the same API
state changes, so the real events reach the real triggers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from dev_stack.oxr_sandbox import DEFAULT_SANDBOX_APP_ID as SANDBOX_APP_ID
from dev_stack.oxr_sandbox import OXRSandbox
from dev_stack.webhook_receiver import WebhookReceiver, is_pagerduty, is_slack
from flows.currencies import currencies_weekly_flow
from flows.exchange_rates import exchange_rates_backfill_flow
from flows.retry_policy import flow_timeout, flow_timeouts
from infra import alerting
from infra.prefect_setup import ensure_work_pools, load_prefect_file
from pipelines.timeouts import default_task_timeouts

pytestmark = pytest.mark.usefixtures("prefect_server")

DEPLOYMENT = "currencies-weekly/production"
DEDUP_KEY = "data-pipelines/currencies-weekly/production"
ROUTING_KEY = "local-routing-key-0123456789abcdef"
# Measured: 26-30 s from failure to webhook; leave room on a busy 2-core machine.
ALERT_TIMEOUT = 120


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookReceiver]:
    path = tmp_path_factory.mktemp("alerts") / "webhooks.jsonl"
    with WebhookReceiver(port=0, record_file=path) as running:
        yield running


@pytest.fixture(scope="module")
def settings(receiver: WebhookReceiver) -> alerting.AlertingSettings:
    return alerting.AlertingSettings(
        slack_webhook_url=receiver.slack_url,
        pagerduty_integration_key=ROUTING_KEY,
        pagerduty_events_url=receiver.pagerduty_url,
    )


def apply_deployment(flow: Any, entrypoint_suffix: str) -> UUID:
    """The flow's deployment with prefect.yaml's name, tags and work pool."""
    spec = next(
        d for d in load_prefect_file()["deployments"] if d["entrypoint"].endswith(entrypoint_suffix)
    )
    deployment = flow.to_deployment(
        name=spec["name"],
        tags=spec["tags"],
        description=spec["description"],
        work_pool_name=spec["work_pool"]["name"],
    )
    return deployment.apply()


@pytest.fixture(scope="module")
def deployment_id(prefect_server: None) -> UUID:
    """`currencies-weekly/production` with prefect.yaml's tags, in the `production` pool."""
    ensure_work_pools()
    return apply_deployment(currencies_weekly_flow, ":currencies_weekly_flow")


@pytest.fixture(scope="module")
def backfill_deployment_id(prefect_server: None) -> UUID:
    ensure_work_pools()
    return apply_deployment(exchange_rates_backfill_flow, ":exchange_rates_backfill_flow")


@pytest.fixture
def automations(
    receiver: WebhookReceiver, settings: alerting.AlertingSettings
) -> Iterator[list[str]]:
    alerting.delete_all()
    receiver.clear()
    yield alerting.apply(settings)
    alerting.delete_all()


def run_deployment_once(
    deployment_id: UUID, flow: Any = currencies_weekly_flow, **parameters: Any
) -> tuple[str, Any]:
    """A flow run of the deployment (carrying its tags), executed by Prefect's engine here."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
    assert "dlt" in flow_run.tags
    state = run_flow(flow, flow_run=flow_run, parameters=parameters, return_type="state")
    return str(flow_run.id), state


def flow_run_in_state(deployment_id: UUID, state: Any) -> str:
    """A run of the deployment put in `state` through the API, as a server service would."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(deployment_id)
        client.set_flow_run_state(flow_run.id, state, force=True)
    return str(flow_run.id)


def task_attempts(flow_run_id: str) -> list[int]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
        )
    return [task_run.run_count for task_run in task_runs]


def alert_on_stuck_run(
    deployment_id: UUID, state: Any, title: str, receiver: WebhookReceiver
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A run left in `state`; its flow run id, the Slack alert titled `title`, the page."""
    flow_run_id = flow_run_in_state(deployment_id, state)
    try:
        records = receiver.wait_for(lambda rs: titled(rs, title) and pagerduty(rs), ALERT_TIMEOUT)
    finally:
        cancel(flow_run_id)
    (message,) = titled(records, title)
    (page,) = pagerduty(records)
    return flow_run_id, message, page


def cancel(flow_run_id: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(flow_run_id), Cancelled(), force=True)


def slack(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if is_slack(r)]


def titled(records: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """The Slack messages whose title starts with `prefix` (other alerts may arrive too)."""
    return [r for r in slack(records) if r["body"]["text"].startswith(prefix)]


def pagerduty(records: list[dict[str, Any]], action: str = "trigger") -> list[dict[str, Any]]:
    return [r for r in records if is_pagerduty(r, action)]


def fail_runs(oxr_sandbox: OXRSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # A permanent error (the sandbox rejects the key): the run fails at once, no retries.
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__API_KEY", "revoked-app-id")


def test_a_success_sends_nothing_a_failure_one_alert_and_its_fix_one_resolve(
    oxr_sandbox: OXRSandbox,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    deployment_id: UUID,
    automations: list[str],
    receiver: WebhookReceiver,
) -> None:
    ok_id, ok_state = run_deployment_once(deployment_id)
    assert ok_state.is_completed()  # a successful cycle: nothing to say

    fail_runs(oxr_sandbox, monkeypatch)
    failed_id, failed_state = run_deployment_once(deployment_id)
    assert failed_state.is_failed()
    # the state message is the client's one-line cause and fix, not dlt's wrapper
    # (OXR's own description, quoted, sits between the code and our fix)
    message = failed_state.message
    assert message.startswith(
        "Open Exchange Rates currencies.json: HTTP 401 invalid_app_id (OXR: "
    ), message
    assert "): the app id was rejected: check it on your OXR account page" in message, message
    failed_at = time.monotonic()
    # the first webhook to arrive is the failure's Slack message (the success sent nothing)
    first, *others = receiver.wait_for(lambda rs: len(rs) >= 1, ALERT_TIMEOUT)
    assert slack([first]) and not others, [first, *others]
    received = datetime.fromisoformat(first["received_at"])
    print(
        f"Failed state -> Slack webhook: {(received - failed_state.timestamp).total_seconds():.1f}"
        f" s ({time.monotonic() - failed_at:.1f} s after the run returned)"
    )
    print(json.dumps(first, indent=2))

    # the fix: the next run completes and resolves the deployment's incident, once
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__API_KEY", SANDBOX_APP_ID)
    fixed_id, fixed_state = run_deployment_once(deployment_id)
    assert fixed_state.is_completed()
    records = receiver.wait_for(lambda rs: pagerduty(rs, "resolve"), ALERT_TIMEOUT)
    with pytest.raises(TimeoutError):  # a duplicate, or anything else, has a few seconds more
        receiver.wait_for(lambda rs: len(rs) > len(records), 3)
    records = receiver.records()
    assert len(records) == 2, records  # the failure's alert, the fix's resolve: nothing else
    (alert,) = slack(records)
    (resolve,) = pagerduty(records, "resolve")
    # sent for the fix, not for the first success
    assert datetime.fromisoformat(resolve["received_at"]) > fixed_state.timestamp
    assert resolve["body"] == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": DEDUP_KEY,
    }
    body = alert["body"]
    assert alert["path"] == "/slack/alerts"
    text = body["blocks"][1]["text"]["text"]
    assert body["text"] == "[data-pipelines] Failed: currencies-weekly/production"
    assert body["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": body["text"]},
    }
    assert failed_id in text and ok_id not in text and fixed_id not in text
    assert "*Deployment:* currencies-weekly/production" in text
    assert "*Message:* Open Exchange Rates currencies.json: HTTP 401 invalid_app_id" in text
    assert f"/runs/flow-run/{failed_id}|open in Prefect>" in text
    assert "revoked-app-id" not in str(records)


def test_three_failures_page_and_the_next_completed_run_resolves_the_incident(
    oxr_sandbox: OXRSandbox,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    deployment_id: UUID,
    automations: list[str],
    receiver: WebhookReceiver,
) -> None:
    fail_runs(oxr_sandbox, monkeypatch)
    run_ids = [run_deployment_once(deployment_id)[0] for _ in range(3)]
    records = receiver.wait_for(
        lambda rs: len(pagerduty(rs)) >= 1 and len(slack(rs)) >= 4, ALERT_TIMEOUT
    )
    (page,) = pagerduty(records)
    print(json.dumps(page, indent=2))
    event = page["body"]
    assert page["path"] == "/pagerduty/v2/enqueue"
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["source"] == "prefect/data-pipelines"
    # one incident per deployment, whatever the message says
    assert event["dedup_key"] == DEDUP_KEY
    summary = event["payload"]["summary"]
    assert summary.startswith(
        "CRITICAL: currencies-weekly/production failed 3 times within 24 h; last run "
    )
    # the run that made it three (a busy SQLite server may redeliver an earlier event)
    assert any(run_id in summary for run_id in run_ids) and "invalid_app_id" in summary
    # Slack: one warning per failure, plus the critical.
    # (counted by run id: on a busy machine an earlier test's event may be evaluated late)
    warned = {
        run_id
        for r in slack(records)
        if r["body"]["text"] == "[data-pipelines] Failed: currencies-weekly/production"
        for run_id in run_ids
        if run_id in r["body"]["blocks"][1]["text"]["text"]
    }
    assert warned == set(run_ids)
    texts = [r["body"]["text"] for r in slack(records)]
    assert (
        texts.count(
            "[data-pipelines] CRITICAL: currencies-weekly/production failed 3 times within 24 h"
        )
        == 1
    )

    # the deployment recovers: its next Completed run resolves the incident it opened
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__API_KEY", SANDBOX_APP_ID)
    assert run_deployment_once(deployment_id)[1].is_completed()
    records = receiver.wait_for(lambda rs: len(pagerduty(rs, "resolve")) >= 1, ALERT_TIMEOUT)
    resolve = pagerduty(records, "resolve")[0]
    print(json.dumps(resolve, indent=2))
    assert resolve["body"] == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": event["dedup_key"],
    }


def test_refused_runs_reach_slack_but_never_page(
    oxr_sandbox: OXRSandbox,
    data_dir: Path,
    backfill_deployment_id: UUID,
    automations: list[str],
    receiver: WebhookReceiver,
) -> None:
    for _ in range(3):  # three operator typos in a row
        _, state = run_deployment_once(
            backfill_deployment_id,
            exchange_rates_backfill_flow,
            start_date="2026-13-45",
            end_date="2026-01-07",
        )
        assert state.is_failed() and state.name == "Refused"
        assert state.message.startswith("start_date='2026-13-45' is not a valid date"), (
            state.message
        )
    records = receiver.wait_for(lambda rs: len(slack(rs)) >= 3, ALERT_TIMEOUT)
    assert {r["body"]["text"] for r in slack(records)} == {
        "[data-pipelines] Refused: exchange-rates-backfill/production"
    }
    # the critical automation sees the same events in the same order: it would have paged by now
    with pytest.raises(TimeoutError):
        receiver.wait_for(lambda rs: len(rs) > len(records), 10)
    assert not pagerduty(receiver.records())
    assert oxr_sandbox.request_count() == 0


def test_a_late_run_that_never_starts_alerts_and_pages(
    monkeypatch: pytest.MonkeyPatch,
    settings: alerting.AlertingSettings,
    deployment_id: UUID,
    automations: list[str],
    receiver: WebhookReceiver,
) -> None:
    from prefect.states import Late

    monkeypatch.setenv("ALERTING__LATE_AFTER_SECONDS", "10")  # Prefect's minimum
    alerting.apply(settings)
    # No worker polls the pool: the run stays Late (the server's late-runs service would set it)
    flow_run_id, message, page = alert_on_stuck_run(
        deployment_id, Late(), "[data-pipelines] Not started: ", receiver
    )
    assert message["body"]["text"] == "[data-pipelines] Not started: currencies-weekly/production"
    text = message["body"]["blocks"][1]["text"]["text"]
    assert "has not started 0.167 min after it turned Late" in text and flow_run_id in text
    assert page["body"]["dedup_key"] == DEDUP_KEY
    assert page["body"]["payload"]["summary"].startswith(
        "Not started: currencies-weekly/production; run "
    )


def test_a_run_still_running_past_its_timeout_alerts_and_pages(
    monkeypatch: pytest.MonkeyPatch,
    settings: alerting.AlertingSettings,
    deployment_id: UUID,
    automations: list[str],
    receiver: WebhookReceiver,
) -> None:
    from prefect.states import Running

    for task in default_task_timeouts():  # every task of every pipeline, none named
        monkeypatch.setenv(f"DATA_PIPELINES__TIMEOUTS__{task.upper()}", "1")
    monkeypatch.setenv("DATA_PIPELINES__TIMEOUTS__FLOW_MARGIN", "1")
    monkeypatch.setenv("ALERTING__RUNNING_GRACE_SECONDS", "1")
    # one automation for every flow: the longest flow timeout plus the grace, from the same
    # config that sizes the flows' own timeouts
    limit = max(flow_timeouts().values()) + 1
    assert flow_timeout("currencies-weekly") + 1 < limit - 3 and limit < 15
    alerting.apply(settings)
    # a run whose process hangs where no timeout can reach it (or died with its worker)
    started = time.monotonic()
    flow_run_id, message, page = alert_on_stuck_run(
        deployment_id, Running(), "[data-pipelines] Running too long: ", receiver
    )
    assert time.monotonic() - started >= limit - 1  # the longest window, not currencies' own
    assert message["body"]["text"] == (
        "[data-pipelines] Running too long: currencies-weekly/production"
    )
    assert flow_run_id in message["body"]["blocks"][1]["text"]["text"]
    assert page["body"]["dedup_key"] == DEDUP_KEY


def test_a_hung_run_times_out_and_alerts(
    oxr_sandbox: OXRSandbox,
    data_dir: Path,
    deployment_id: UUID,
    automations: list[str],
    receiver: WebhookReceiver,
) -> None:
    # Every request hangs past the flow's timeout. Prefect raises the flow's timeout inside the
    # running task as the task's own timeout; the retry policy must not retry it.
    timed = currencies_weekly_flow.with_options(timeout_seconds=3)
    oxr_sandbox.latency_seconds = 8
    try:
        started = time.monotonic()
        flow_run_id, state = run_deployment_once(deployment_id, timed)
        print(f"hung run ended {state.name} after {time.monotonic() - started:.1f} s")
    finally:
        oxr_sandbox.latency_seconds = 0
    assert state.is_failed() and state.name == "TimedOut", (state.name, state.message)
    assert state.message.startswith("Flow run exceeded its timeout of 3 s")
    assert task_attempts(flow_run_id) == [1]  # no retry once the flow's time was up
    records = receiver.wait_for(lambda rs: len(slack(rs)) >= 1, ALERT_TIMEOUT)
    assert slack(records)[0]["body"]["text"] == (
        "[data-pipelines] TimedOut: currencies-weekly/production"
    )


def test_a_work_pool_without_a_live_worker_alerts_then_resolves(
    monkeypatch: pytest.MonkeyPatch,
    settings: alerting.AlertingSettings,
    automations: list[str],
    receiver: WebhookReceiver,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate

    pool = f"alerting-test-{int(time.time())}"
    paused = f"alerting-paused-{int(time.time())}"  # watched, but paused: not meant to run
    monkeypatch.setenv("ALERTING__WORK_POOL_NOT_READY_SECONDS", "10")
    alerting.apply(settings, work_pools=(pool, paused))
    with get_client(sync_client=True) as client:
        # a new pool has no worker: the server marks it Not Ready (as the foreman does when
        # a worker's heartbeats stop)
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        client.create_work_pool(WorkPoolCreate(name=paused, type="process"))
        client.update_work_pool(paused, WorkPoolUpdate(is_paused=True))
        try:
            records = receiver.wait_for(
                lambda rs: titled(rs, "[data-pipelines] Work pool not ready: ") and pagerduty(rs),
                ALERT_TIMEOUT,
            )
            (message,) = titled(records, "[data-pipelines] Work pool not ready: ")
            assert message["body"]["text"] == f"[data-pipelines] Work pool not ready: {pool}"
            assert (
                f"prefect worker start --pool {pool}"
                in message["body"]["blocks"][1]["text"]["text"]
            )
            (page,) = pagerduty(records)
            assert page["body"]["dedup_key"] == f"data-pipelines/work-pool/{pool}"

            # a worker comes up: its first heartbeat makes the pool Ready, which resolves
            client.send_worker_heartbeat(
                pool, "alerting-test-worker", heartbeat_interval_seconds=30
            )
            records = receiver.wait_for(lambda rs: pagerduty(rs, "resolve"), ALERT_TIMEOUT)
            resolve = pagerduty(records, "resolve")[0]
            assert resolve["body"]["dedup_key"] == f"data-pipelines/work-pool/{pool}"
            # the paused pool's window ended with the other's: nothing about it
            assert paused not in json.dumps(receiver.records())
        finally:
            client.delete_work_pool(pool)
            client.delete_work_pool(paused)


def trigger_id(client: Any, name: str) -> str:
    """The server's id of the automation's trigger (the client's model does not carry it)."""
    (automation,) = client.read_automations_by_name(name)
    answer = client.request("GET", "/automations/{id}", path_params={"id": automation.id})
    return answer.json()["trigger"]["id"]


def test_applying_twice_leaves_one_of_each_and_updates_changes(
    settings: alerting.AlertingSettings, automations: list[str]
) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client

    assert any("created" in line for line in automations)
    definitions = alerting.automation_definitions(alerting.ensure_blocks(settings))
    names = [automation.name for automation in definitions]
    assert len(names) == len(set(names)) == len(alerting.load_alerts())  # one per entry
    # what an earlier version left: a per-flow automation this file no longer has, and the
    # silent-flow-runs one (`apply prefect`'s, not the file's)
    retired = "data-pipelines: running too long: currencies-weekly"
    definitions[0].model_copy(update={"name": retired}).create()
    alerting.ensure_silent_flow_runs_crash()
    with get_client(sync_client=True) as client:
        triggers = {name: trigger_id(client, name) for name in names}
    second = alerting.apply(settings)
    # nothing changed: left as they are (an update gives triggers new ids, dropping their
    # open windows: a failure waiting for its resolve, a count toward the page)
    assert [line for line in second if "automation" in line] == [
        f"automation {name!r} unchanged" for name in names
    ] + [f"automation {retired!r} deleted (no longer defined)"]
    with get_client(sync_client=True) as client:
        assert {name: trigger_id(client, name) for name in names} == triggers
        assert not client.read_automations_by_name(retired)
        assert client.read_automations_by_name(alerting.SILENT_FLOW_RUNS_AUTOMATION)
        # a stray copy (e.g. created by hand in the UI) is folded back into one
        definitions[0].create()
        alerting.apply(settings)
        found = {name: client.read_automations_by_name(name) for name in names}
        assert {name: len(items) for name, items in found.items()} == {name: 1 for name in names}
        by_key = alerting.automation_names()
        warning = found[by_key["failed"]][0]
        assert warning.trigger.threshold == 1
        critical = found[by_key["keeps-failing"]][0]
        assert (critical.trigger.threshold, critical.trigger.within.total_seconds()) == (
            3,
            86400,
        )
        assert len(critical.actions) == 2

        # a changed definition updates the existing automation in place
        changed = alerting.automation_definitions(alerting.ensure_blocks(settings))
        changed[0].description = "changed"
        before = trigger_id(client, by_key["failed"])
        assert alerting.apply_automations(changed)[0] == f"automation {by_key['failed']!r} updated"
        (updated,) = client.read_automations_by_name(by_key["failed"])
        assert updated.id == warning.id and updated.description == "changed"
        # what an update costs: Prefect gave the trigger a new id (its open windows are gone)
        assert trigger_id(client, by_key["failed"]) != before
        # a changed window is a change too (the windows come from [alerting])
        late = alerting.automation_definitions(
            alerting.ensure_blocks(settings), alerting.AlertWindows(late_after_seconds=60)
        )
        lines = alerting.apply_automations(late)
        assert f"automation {by_key['not-started']!r} updated" in lines
        assert f"automation {by_key['keeps-failing']!r} unchanged" in lines

        blocks = client.read_block_documents_by_type("custom-webhook")
        names = sorted(b.name for b in blocks if not b.is_anonymous)
    assert names == sorted(
        [
            alerting.SLACK_BLOCK_NAME,
            alerting.PAGERDUTY_BLOCK_NAME,
            alerting.PAGERDUTY_RESOLVE_BLOCK_NAME,
        ]
    )
    # the secrets are stored as secrets: loading without them shows only the obfuscated form
    block = CustomWebhookNotificationBlock.load(alerting.SLACK_BLOCK_NAME)
    assert settings.slack_webhook_url not in block.model_dump_json()
    assert block.url == "{{slack_webhook_url}}"


def test_apply_alerting_cli_takes_the_secrets_from_dlt_config(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from data_pipelines_cli.main import main

    monkeypatch.setenv("ALERTING__SLACK_WEBHOOK_URL", receiver.slack_url)
    monkeypatch.setenv("ALERTING__PAGERDUTY_INTEGRATION_KEY", "from-the-environment")
    monkeypatch.setenv("ALERTING__PAGERDUTY_EVENTS_URL", receiver.pagerduty_url)
    try:
        assert main(["apply", "alerting"]) == 0
        out = capsys.readouterr().out
        assert f"automation {alerting.automation_names()['failed']!r}" in out
        assert "from-the-environment" not in out and receiver.slack_url not in out
        block = CustomWebhookNotificationBlock.load(alerting.PAGERDUTY_BLOCK_NAME)
        assert block.secrets.get_secret_value() == {"routing_key": "from-the-environment"}
        assert block.url == receiver.pagerduty_url
    finally:
        alerting.delete_all()


def test_missing_alerting_settings_name_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.environment import ConfigurationError

    monkeypatch.delenv("ALERTING__SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("ALERTING__PAGERDUTY_INTEGRATION_KEY", raising=False)
    with pytest.raises(ConfigurationError) as raised:
        alerting.settings_from_config()
    assert "ALERTING__SLACK_WEBHOOK_URL" in str(raised.value)
    assert "ALERTING__PAGERDUTY_INTEGRATION_KEY" in str(raised.value)
    assert "dlt/dlt_secrets_toml" in str(raised.value)

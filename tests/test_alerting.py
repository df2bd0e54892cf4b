"""Alerting end to end: real Prefect server (its trigger and action services), real runs of the
`currencies-weekly/production` deployment, real HTTP to the local webhook receiver.

The session's Prefect test harness is an ephemeral server, which runs the reactive triggers and
actions services (`RunInEphemeralServers`), so no second server is started. Each test applies the
automations afresh (new automation ids, so no trigger counts carry over between tests).
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

from flows.currencies import currencies_weekly_flow
from infra import alerting
from infra.prefect_setup import ensure_work_pools, load_prefect_file
from local_stack.oxr_sandbox import OXRSandbox
from local_stack.webhook_receiver import WebhookReceiver, is_pagerduty, is_slack

pytestmark = pytest.mark.usefixtures("prefect_server")

DEPLOYMENT = "currencies-weekly/production"
ROUTING_KEY = "local-routing-key-0123456789abcdef"
# FIELD-NOTES measured 26-30 s from failure to webhook; leave room on a busy 2-core machine.
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


@pytest.fixture(scope="module")
def deployment_id(prefect_server: None) -> UUID:
    """`currencies-weekly/production` with prefect.yaml's tags, in the `production` pool."""
    ensure_work_pools()
    spec = next(
        d
        for d in load_prefect_file()["deployments"]
        if d["entrypoint"].endswith(":currencies_weekly_flow")
    )
    deployment = currencies_weekly_flow.to_deployment(
        name=spec["name"],
        tags=spec["tags"],
        description=spec["description"],
        work_pool_name=spec["work_pool"]["name"],
    )
    return deployment.apply()


@pytest.fixture
def automations(
    receiver: WebhookReceiver, settings: alerting.AlertingSettings
) -> Iterator[list[str]]:
    alerting.delete_all()
    receiver.clear()
    yield alerting.apply(settings)
    alerting.delete_all()


def run_deployment_once(deployment_id: UUID) -> tuple[str, Any]:
    """A flow run of the deployment (carrying its tags), executed by Prefect's engine here."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(deployment_id)
    assert "dlt" in flow_run.tags
    state = run_flow(currencies_weekly_flow, flow_run=flow_run, return_type="state")
    return str(flow_run.id), state


def slack(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if is_slack(r)]


def pagerduty(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if is_pagerduty(r)]


def fail_runs(oxr_sandbox: OXRSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # A permanent error (the sandbox rejects the key): the run fails at once, no retries.
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__API_KEY", "revoked-app-id")


def test_failed_run_sends_one_slack_message_and_success_sends_none(
    oxr_sandbox: OXRSandbox,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    deployment_id: UUID,
    automations: list[str],
    receiver: WebhookReceiver,
) -> None:
    ok_id, ok_state = run_deployment_once(deployment_id)
    assert ok_state.is_completed()

    fail_runs(oxr_sandbox, monkeypatch)
    failed_id, failed_state = run_deployment_once(deployment_id)
    assert failed_state.is_failed()
    failed_at = time.monotonic()

    records = receiver.wait_for(lambda rs: len(slack(rs)) >= 1, ALERT_TIMEOUT)
    received = datetime.fromisoformat(records[0]["received_at"])
    print(
        f"Failed state -> Slack webhook: {(received - failed_state.timestamp).total_seconds():.1f}"
        f" s ({time.monotonic() - failed_at:.1f} s after the run returned)"
    )
    print(json.dumps(records[0], indent=2))
    # Events are evaluated in order: had the Completed run (earlier) triggered anything, it
    # would be here by now. Give a duplicate a few more seconds to show up.
    with pytest.raises(TimeoutError):
        receiver.wait_for(lambda rs: len(rs) > len(records), 8)
    records = receiver.records()
    assert len(records) == 1 and not pagerduty(records)
    body = records[0]["body"]
    assert records[0]["path"] == "/slack/alerts"
    text = body["blocks"][1]["text"]["text"]
    assert body["text"] == "[data-pipelines] Failed: currencies-weekly/production"
    assert body["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": body["text"]},
    }
    assert failed_id in text and ok_id not in text
    assert "*Deployment:* currencies-weekly/production" in text
    assert "invalid_app_id" in text  # the state message says what to fix
    assert f"/runs/flow-run/{failed_id}|open in Prefect>" in text
    assert "revoked-app-id" not in str(records)


def test_three_failures_page_pagerduty_with_an_events_v2_trigger(
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
    assert event["payload"]["summary"] == (
        "[data-pipelines] CRITICAL: currencies-weekly/production failed 3 times within 24 h"
    )
    assert event["dedup_key"] == event["payload"]["summary"]
    details = event["payload"]["custom_details"]["details"]
    assert run_ids[-1] in details and "invalid_app_id" in details
    # Slack: one warning per failure, plus the critical.
    texts = [r["body"]["text"] for r in slack(records)]
    assert texts.count("[data-pipelines] Failed: currencies-weekly/production") == 3
    assert texts.count(event["payload"]["summary"]) == 1


def test_applying_twice_leaves_one_of_each_and_updates_changes(
    settings: alerting.AlertingSettings, automations: list[str]
) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client

    assert any("created" in line for line in automations)
    second = alerting.apply(settings)
    assert [line for line in second if "automation" in line] == [
        f"automation {name!r} updated" for name in alerting.AUTOMATION_NAMES
    ]
    with get_client(sync_client=True) as client:
        # a stray copy (e.g. created by hand in the UI) is folded back into one
        definitions = alerting.automation_definitions(*alerting.ensure_blocks(settings))
        definitions[0].create()
        alerting.apply(settings)
        found = {name: client.read_automations_by_name(name) for name in alerting.AUTOMATION_NAMES}
        assert {name: len(items) for name, items in found.items()} == {
            name: 1 for name in alerting.AUTOMATION_NAMES
        }
        warning = found[alerting.WARNING_AUTOMATION][0]
        assert warning.trigger.threshold == 1
        critical = found[alerting.CRITICAL_AUTOMATION][0]
        assert (critical.trigger.threshold, critical.trigger.within.total_seconds()) == (
            3,
            86400,
        )
        assert len(critical.actions) == 2

        # a changed definition updates the existing automation in place
        changed = alerting.automation_definitions(*alerting.ensure_blocks(settings))
        changed[0].description = "changed"
        alerting.apply_automations(changed)
        (updated,) = client.read_automations_by_name(alerting.WARNING_AUTOMATION)
        assert updated.id == warning.id and updated.description == "changed"

        blocks = client.read_block_documents_by_type("custom-webhook")
        names = sorted(b.name for b in blocks if not b.is_anonymous)
    assert names == sorted([alerting.SLACK_BLOCK_NAME, alerting.PAGERDUTY_BLOCK_NAME])
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
        assert "automation 'data-pipelines: dlt run failed (warning)'" in out
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

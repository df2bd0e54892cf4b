"""The AWS Secrets Manager provider against moto's server on 127.0.0.1, through dlt itself."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import dlt
import pytest

from pipelines.secrets_manager import (
    AwsSecretsManagerProvider,
    SecretNotFoundError,
)
from tests.fixtures.moto import MotoServer, moto_server  # noqa: F401

REGION = "eu-west-1"


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    """boto3 (and so the provider) sees the session's moto server through its own env vars."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server.endpoint_url)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("secretsmanager")
    for secret in client.list_secrets().get("SecretList", []):
        client.delete_secret(SecretId=secret["ARN"], ForceDeleteWithoutRecovery=True)
    return moto_server.endpoint_url


def put_secret(name: str, document: dict[str, object]) -> None:
    boto3.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(document))


def test_resolves_source_and_destination_credentials_through_dlt(
    aws_env: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_secret("dlt/open-exchange-rates", {"api_key": "oxr-from-secrets-manager"})
    put_secret("dlt/products-postgres", {"credentials": "postgresql://u:pw@db:5432/app"})
    put_secret(
        "dlt/snowflake-credentials",
        {"host": "acme-xy123", "username": "SVC_DLT", "password": "pw", "warehouse": "LOADING"},
    )
    for var in (
        "SOURCES__OPEN_EXCHANGE_RATES__API_KEY",
        "OXR_APP_ID",
        "SOURCES__PRODUCTS__CREDENTIALS",
    ):
        monkeypatch.delenv(var, raising=False)
    provider = AwsSecretsManagerProvider()
    dlt.config.register_provider(provider)
    try:
        assert dlt.secrets["sources.open_exchange_rates.api_key"] == "oxr-from-secrets-manager"
        assert dlt.secrets["sources.products.credentials"] == "postgresql://u:pw@db:5432/app"

        # the production destination picks the Snowflake credentials up, database fixed to DLT
        from environments import load_environment
        from pipelines.currencies import DATASET_NAME, PIPELINE_NAME
        from pipelines.runner import make_pipeline

        warehouse = load_environment("production").warehouse()
        pipeline = make_pipeline(PIPELINE_NAME, warehouse, DATASET_NAME)
        credentials = pipeline.destination_client().config.credentials
        assert credentials.host == "acme-xy123"
        assert credentials.username == "SVC_DLT"
        assert credentials.database == "DLT"
    finally:
        from dlt.common.configuration.container import Container
        from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

        providers = Container()[PluggableRunContext].providers.providers
        providers.remove(provider)


def test_each_secret_is_fetched_once_per_process(aws_env: str) -> None:
    put_secret("dlt/open-exchange-rates", {"api_key": "k1"})
    provider = AwsSecretsManagerProvider()
    assert provider.get_value("api_key", str, None, "sources", "open_exchange_rates")[0] == "k1"
    # change it behind the provider's back: the cached value stays for this process
    boto3.client("secretsmanager").put_secret_value(
        SecretId="dlt/open-exchange-rates", SecretString=json.dumps({"api_key": "k2"})
    )
    assert provider.get_value("api_key", str, None, "sources", "open_exchange_rates")[0] == "k1"
    assert (
        AwsSecretsManagerProvider().get_value(
            "api_key", str, None, "sources", "open_exchange_rates"
        )[0]
        == "k2"
    )


def test_missing_secret_error_names_the_secret_not_a_value(aws_env: str) -> None:
    put_secret("dlt/snowflake-credentials", {"password": "super-secret-value"})
    provider = AwsSecretsManagerProvider()
    with pytest.raises(SecretNotFoundError) as raised:
        provider.get_value("api_key", str, None, "sources", "open_exchange_rates")
    assert "dlt/open-exchange-rates" in str(raised.value)
    assert "super-secret-value" not in str(raised.value)


def test_unmapped_and_absent_keys_fall_through(aws_env: str) -> None:
    put_secret("dlt/open-exchange-rates", {"api_key": "k"})
    provider = AwsSecretsManagerProvider()
    assert provider.get_value("log_level", str, None, "runtime")[0] is None
    assert provider.get_value("base_url", str, None, "sources", "open_exchange_rates")[0] is None
    assert (
        provider.get_value("api_key", str, "currencies", "sources", "open_exchange_rates")[0]
        is None
    )

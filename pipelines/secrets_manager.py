"""A dlt config provider that reads production secrets from AWS Secrets Manager.

dlt resolves every setting through its providers in order: environment variables, then
`.dlt/secrets.toml` / `.dlt/config.toml`, then (when enabled) this one. So a value set in the
environment still wins, and Secrets Manager only fills what nothing else had.

Each dlt config section maps to one secret whose SecretString is a JSON object of that
section's keys:

- `[sources.open_exchange_rates]` -> `dlt/open-exchange-rates`: {"api_key": "..."}
- `[sources.products]` -> `dlt/products-postgres`: {"credentials": "postgresql://..."}
- `[destination.snowflake.credentials]` -> `dlt/snowflake-credentials`:
  {"host", "username", "private_key" (or "password"), "warehouse", "role"}
- `[destination.filesystem.credentials]` -> `dlt/s3-credentials`:
  {"aws_access_key_id", "aws_secret_access_key"} (or leave it out and use an IAM role)
- `[alerting]` -> `dlt/alerting`: {"slack_webhook_url", "pagerduty_integration_key"}

Enable with `DATA_PIPELINES_SECRETS=aws-secrets-manager`. The region and endpoint come from
boto3's own settings (`AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`),
the prefix `dlt/` from `DATA_PIPELINES_SECRETS_PREFIX`. Each secret is fetched at most once per
process. A mapped secret that does not exist is an error naming the secret (never a value).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from dlt.common.configuration.providers.provider import ConfigProvider

from sources.errors import ConfigurationError

BACKEND_VAR = "DATA_PIPELINES_SECRETS"
BACKEND_NAME = "aws-secrets-manager"
PREFIX_VAR = "DATA_PIPELINES_SECRETS_PREFIX"

# dlt section path -> secret name (without the prefix)
SECTION_SECRETS: dict[tuple[str, ...], str] = {
    ("sources", "open_exchange_rates"): "open-exchange-rates",
    ("sources", "products"): "products-postgres",
    ("destination", "snowflake", "credentials"): "snowflake-credentials",
    ("destination", "filesystem", "credentials"): "s3-credentials",
    ("alerting",): "alerting",
}


class SecretNotFoundError(ConfigurationError):
    """A mapped secret does not exist in Secrets Manager (the message names it)."""


class AwsSecretsManagerProvider(ConfigProvider):
    """Looks up dlt settings in the JSON secrets of SECTION_SECRETS, cached per process."""

    def __init__(self, prefix: str | None = None, client: Any = None) -> None:
        self.prefix = prefix if prefix is not None else os.environ.get(PREFIX_VAR, "dlt/")
        self._client = client
        self._cache: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "AWS Secrets Manager"

    @property
    def supports_secrets(self) -> bool:
        return True

    @property
    def supports_sections(self) -> bool:
        return True

    @property
    def locations(self) -> list[str]:
        return [self.prefix + name for name in SECTION_SECRETS.values()]

    def _secrets_client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("secretsmanager")
        return self._client

    def secret_document(self, secret_name: str) -> dict[str, Any]:
        """The parsed JSON of one secret; fetched once per process."""
        with self._lock:
            if secret_name in self._cache:
                return self._cache[secret_name]
            client = self._secrets_client()
            try:
                response = client.get_secret_value(SecretId=secret_name)
            except client.exceptions.ResourceNotFoundException:
                raise SecretNotFoundError(
                    f"AWS Secrets Manager has no secret named {secret_name!r}: create it with a "
                    "JSON object of the section's keys (see pipelines/secrets_manager.py), or "
                    "set the values through the environment or .dlt/secrets.toml."
                ) from None
            try:
                document = json.loads(response.get("SecretString") or "{}")
            except ValueError:
                raise ConfigurationError(
                    f"AWS Secrets Manager secret {secret_name!r} is not a JSON object."
                ) from None
            if not isinstance(document, dict):
                raise ConfigurationError(
                    f"AWS Secrets Manager secret {secret_name!r} is not a JSON object."
                )
            self._cache[secret_name] = document
            return document

    def get_value(
        self, key: str, hint: type[Any], pipeline_name: str | None, *sections: str
    ) -> tuple[Any | None, str]:
        path = (*sections, key)
        full_key = ".".join(path)
        if pipeline_name:  # we keep no per-pipeline secrets; dlt also asks without the name
            return None, full_key
        for section, secret in SECTION_SECRETS.items():
            if path[: len(section)] != section:
                continue
            value: Any = self.secret_document(self.prefix + secret)
            for part in path[len(section) :]:
                if not isinstance(value, dict) or part not in value:
                    return None, full_key
                value = value[part]
            return value, full_key
        return None, full_key


def register_if_enabled() -> bool:
    """Add the provider to dlt's chain when `DATA_PIPELINES_SECRETS=aws-secrets-manager`."""
    backend = os.environ.get(BACKEND_VAR, "").strip().lower()
    if not backend:
        return False
    if backend != BACKEND_NAME:
        raise ConfigurationError(
            f"{BACKEND_VAR}={backend!r} is not supported; use {BACKEND_NAME!r} or leave it unset."
        )
    import dlt
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

    providers = Container()[PluggableRunContext].providers
    if "AWS Secrets Manager" not in providers:
        dlt.config.register_provider(AwsSecretsManagerProvider())
    return True

"""How production's configuration points at the rehearsal's stand-ins: ONE place.

`production_env()` is the environment of every production process of the rehearsal (the
worker and its flow runs, `data-pipelines apply snowflake` and `verify`, the pipe stand-in, and
the tests): endpoints and non-secret settings only. `secret_documents()` is every secret, as
the AWS Secrets Manager secrets dlt's provider reads. No data folder is set: production
keeps nothing on a worker's disk, so each flow run's working folder is its own (the clone's
`.data`); a test or an operator command passes its own with `DATA_PIPELINES_DATA_DIR`.
Renaming a config section (e.g. the lead's named destinations) is a change here and nowhere
else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REGION = "us-east-1"
BUCKET = "data-pipelines-rehearsal"
# moto accepts any key; the file stands in for the worker's IAM role (boto's default chain)
AWS_CREDENTIALS = "[default]\naws_access_key_id = rehearsal\naws_secret_access_key = rehearsal\n"
# Snowflake users of the stand-in (fakesnow accepts any password; roles are not enforced)
# the loader's S3 access key, as a secret (moto accepts any)
S3_KEY = ("rehearsal-s3-key-id", "rehearsal-s3-secret-key")
LOADER = ("SVC_DLT", "rehearsal-loader-password")
ADMIN = ("REHEARSAL_ADMIN", "rehearsal-admin-password")

# Variables that could carry a secret or point production elsewhere: never inherited.
_SCRUBBED_PREFIXES = ("AWS_", "SOURCES__", "DESTINATION__", "ALERTING__", "SNOWFLAKE_ADMIN__")
_SCRUBBED = ("OXR_APP_ID", "PROVIDERS__ENABLE_AWS_SECRETS", "DATA_PIPELINES_BUCKET_URL")
# ...nor a shared working folder: each production process finds its own (fresh machines).
_SHARED_FOLDERS = ("DATA_PIPELINES_DATA_DIR", "DLT_DATA_DIR", "DLT_LOCAL_DIR", "DLT_PROJECT_DIR")


@dataclass(frozen=True)
class StandIns:
    """Where each stand-in listens (all on 127.0.0.1) and the rehearsal's data folder."""

    data_dir: Path  # the stand-ins' own files (the workers' AWS identity); no pipeline state
    snowflake_port: int
    moto_url: str
    oxr_base_url: str
    oxr_app_id: str
    products_dsn: str
    slack_webhook_url: str
    pagerduty_events_url: str
    bucket: str = BUCKET

    @property
    def bucket_url(self) -> str:
        return f"s3://{self.bucket}"

    @property
    def aws_credentials_file(self) -> Path:
        return self.data_dir / "aws-credentials"

    def snowflake_url(self, user: tuple[str, str], database: str = "DLT") -> str:
        name, password = user
        return (
            f"snowflake://{name}:{password}@rehearsal/{database}?host=127.0.0.1"
            f"&port={self.snowflake_port}&protocol=http&warehouse=LOADING&role={name}"
        )


def production_env(stand_ins: StandIns, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a production process in the rehearsal: no secret in it."""
    env = {
        key: value
        for key, value in (os.environ if base is None else base).items()
        if not key.startswith(_SCRUBBED_PREFIXES) and key not in (*_SCRUBBED, *_SHARED_FOLDERS)
    }
    env.update(
        {
            "DATA_PIPELINES_ENV": "production",
            "DATA_PIPELINES_BUCKET_URL": stand_ins.bucket_url,
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            # dlt's own provider; its AWS access is boto's default chain (the file below)
            "PROVIDERS__ENABLE_AWS_SECRETS": "true",
            "AWS_SHARED_CREDENTIALS_FILE": str(stand_ins.aws_credentials_file),
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": stand_ins.moto_url,
            "AWS_ENDPOINT_URL_S3": stand_ins.moto_url,
            "DESTINATION__FILESYSTEM__CREDENTIALS__ENDPOINT_URL": stand_ins.moto_url,
            "DESTINATION__FILESYSTEM__CREDENTIALS__REGION_NAME": REGION,
            "SOURCES__OPEN_EXCHANGE_RATES__BASE_URL": stand_ins.oxr_base_url,
            "ALERTING__PAGERDUTY_EVENTS_URL": stand_ins.pagerduty_events_url,
            # DDL settings (not secrets): the storage integration's role and the loader's key
            "SNOWFLAKE_ADMIN__AWS_ROLE_ARN": "arn:aws:iam::000000000000:role/rehearsal",
            "SNOWFLAKE_ADMIN__SVC_DLT_RSA_PUBLIC_KEY": "rehearsal-public-key",
        }
    )
    return env


def secret_documents(stand_ins: StandIns) -> dict[str, str]:
    """Secret name -> TOML fragment, written from the root as dlt's provider expects."""
    return {
        "dlt/sources/open_exchange_rates": (
            f'[sources.open_exchange_rates]\napi_key = "{stand_ins.oxr_app_id}"\n'
        ),
        "dlt/sources/products": f'[sources.products]\ncredentials = "{stand_ins.products_dsn}"\n',
        "dlt/destination/snowflake": (
            f'[destination.snowflake]\ncredentials = "{stand_ins.snowflake_url(LOADER)}"\n'
        ),
        "dlt/destination/filesystem": (
            "[destination.filesystem.credentials]\n"
            f'aws_access_key_id = "{S3_KEY[0]}"\naws_secret_access_key = "{S3_KEY[1]}"\n'
        ),
        "dlt/dlt_secrets_toml": (
            f'[alerting]\nslack_webhook_url = "{stand_ins.slack_webhook_url}"\n'
            'pagerduty_integration_key = "rehearsal-routing-key"\n\n'
            f'[snowflake_admin]\ncredentials = "{stand_ins.snowflake_url(ADMIN, "")}"\n'
        ),
    }


def admin_connection(stand_ins: StandIns) -> Any:
    """A connector session on the Snowflake stand-in as the admin user (an operator's view)."""
    import snowflake.connector

    return snowflake.connector.connect(
        user=ADMIN[0],
        password=ADMIN[1],
        account="rehearsal",
        host="127.0.0.1",
        port=stand_ins.snowflake_port,
        protocol="http",
        network_timeout=30,
        session_parameters={"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
    )


def aws_client(stand_ins: StandIns, service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=stand_ins.moto_url,
        region_name=REGION,
        aws_access_key_id="rehearsal",
        aws_secret_access_key="rehearsal",
    )


def provision_aws(stand_ins: StandIns) -> None:
    """The bucket and every secret (idempotent), and the worker's stand-in AWS identity."""
    stand_ins.data_dir.mkdir(parents=True, exist_ok=True)
    stand_ins.aws_credentials_file.write_text(AWS_CREDENTIALS)
    s3 = aws_client(stand_ins, "s3")
    existing = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
    if stand_ins.bucket not in existing:
        s3.create_bucket(Bucket=stand_ins.bucket)
    secrets = aws_client(stand_ins, "secretsmanager")
    for name, document in secret_documents(stand_ins).items():
        try:
            secrets.put_secret_value(SecretId=name, SecretString=document)
        except secrets.exceptions.ResourceNotFoundException:
            secrets.create_secret(Name=name, SecretString=document)

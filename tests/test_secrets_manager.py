"""Secrets from AWS Secrets Manager through dlt's own provider, against moto's server.

dlt builds its provider chain when a process starts, so each check runs in a fresh process
with only endpoints and the switch in its environment, as a production worker does.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.moto import MotoServer, moto_server  # noqa: F401

PROJECT_DIR = Path(__file__).resolve().parent.parent
PREFIX = "dlt-secrets-test/"


def put(moto: MotoServer, name: str, document: str) -> None:
    client = moto.client("secretsmanager")
    try:
        client.put_secret_value(SecretId=PREFIX + name, SecretString=document)
    except client.exceptions.ResourceNotFoundException:
        client.create_secret(Name=PREFIX + name, SecretString=document)


def run(
    moto: MotoServer, tmp_path: Path, code: str, enabled: bool = True
) -> subprocess.CompletedProcess[str]:
    credentials = tmp_path / "aws-credentials"
    credentials.write_text("[default]\naws_access_key_id = t\naws_secret_access_key = t\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "SOURCES__", "DESTINATION__", "ALERTING__"))
        and k != "OXR_APP_ID"
    }
    env.update(
        {
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto.endpoint_url,
            "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
            "AWS_DEFAULT_REGION": "us-east-1",
            "PROVIDERS__AWS_SECRETS__SECRET_NAME_PREFIX": PREFIX,
            "DATA_PIPELINES_DATA_DIR": str(tmp_path / "data"),
            "DATA_PIPELINES_ENV": "production",
        }
    )
    if enabled:
        env["PROVIDERS__ENABLE_AWS_SECRETS"] = "true"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_section_resolves_from_its_secret(
    moto_server: MotoServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    put(
        moto_server,
        "sources/open_exchange_rates",
        '[sources.open_exchange_rates]\napi_key = "k-sm"\n',
    )
    put(
        moto_server,
        "sources/products",
        '[sources.products]\ncredentials = "postgresql://u:pw@db/app"\n',
    )
    put(
        moto_server,
        "destination/snowflake",
        '[destination.snowflake.credentials]\nhost = "acme-xy123"\nusername = "SVC_DLT"\n'
        'password = "pw"\nwarehouse = "LOADING"\n',
    )
    put(moto_server, "dlt_secrets_toml", '[alerting]\nslack_webhook_url = "https://hooks/x"\n')
    code = (
        "import dlt\n"
        "from environments import load_environment\n"
        "from pipelines.runner import make_pipeline\n"
        "print(dlt.secrets['sources.open_exchange_rates.api_key'])\n"
        "print(dlt.secrets['sources.products.credentials'])\n"
        "print(dlt.secrets['alerting.slack_webhook_url'])\n"
        "p = make_pipeline('currencies', load_environment().warehouse(), 'x')\n"
        "c = p.destination_client().config.credentials\n"
        "print(c.host, c.username, c.database)\n"
    )
    enabled = run(moto_server, tmp_path, code)
    assert enabled.returncode == 0, enabled.stderr[-3000:]
    assert enabled.stdout.split() == [
        "k-sm",
        "postgresql://u:pw@db/app",
        "https://hooks/x",
        "acme-xy123",
        "SVC_DLT",
        "DLT",
    ]
    # the switch is what does it: without it nothing comes from Secrets Manager
    disabled = run(
        moto_server,
        tmp_path,
        "import dlt\nprint(dlt.secrets.get('sources.products.credentials'))\n",
        enabled=False,
    )
    assert disabled.stdout.split() == ["None"], disabled.stderr[-2000:]


def test_missing_secret_fails_with_the_fix_and_no_value(
    moto_server: MotoServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    put(
        moto_server,
        "dlt_secrets_toml",
        '[alerting]\nslack_webhook_url = "https://hooks/very-secret"\n',
    )
    client = moto_server.client("secretsmanager")
    for name in ("sources/products",):
        with contextlib.suppress(client.exceptions.ResourceNotFoundException):
            client.delete_secret(SecretId=PREFIX + name, ForceDeleteWithoutRecovery=True)
    result = run(
        moto_server,
        tmp_path,
        "from environments import load_environment\n"
        "from pipelines.products import products_dsn\n"
        "products_dsn(load_environment())\n",
    )
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert "[sources.products] credentials" in last_line or "SOURCES__PRODUCTS" in last_line, (
        last_line
    )
    assert "very-secret" not in result.stderr


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "-q"]))

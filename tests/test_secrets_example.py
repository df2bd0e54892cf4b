""".dlt/secrets.toml.example lists every secret the code reads, in the section it reads it from.

The secrets are found in the code, not in a list kept beside this test: literal
`dlt.secrets.get(...)` keys, every `dlt.secrets.value` argument of a dlt source (under the
source's section), and the credentials specs the code resolves. Each of those must resolve,
through dlt's own configuration resolution, from the example's values alone.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.common.configuration import resolve_configuration
from dlt.common.configuration.specs import AwsCredentials, ConnectionStringCredentials
from dlt.destinations.impl.snowflake.configuration import SnowflakeCredentials

from infra.prefect_setup import PROJECT_DIR

EXAMPLE = PROJECT_DIR / ".dlt" / "secrets.toml.example"
CODE_PACKAGES = ("sources", "pipelines", "flows", "infra", "environments", "data_pipelines_cli")
LITERAL_SECRET = re.compile(r"dlt\.secrets(?:\.get\(|\[)\s*[\"']([\w.]+)[\"']")
# Credentials the code resolves through a dlt spec: section -> (spec, values the code passes
# itself, a fragment of code that proves the code reads this section).
CREDENTIAL_SPECS: dict[str, tuple[type, dict[str, Any], str]] = {
    "destination.snowflake.credentials": (
        SnowflakeCredentials,
        {"database": "DLT"},
        "dlt.destinations.snowflake(",
    ),
    "snowflake_admin.credentials": (
        SnowflakeCredentials,
        {},
        'SnowflakeCredentials(), sections=("snowflake_admin",)',
    ),
    "destination.filesystem.credentials": (AwsCredentials, {}, "dlt.destinations.filesystem("),
}


def _code_files() -> Iterator[Path]:
    for package in CODE_PACKAGES:
        yield from (PROJECT_DIR / package).rglob("*.py")


def _example() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE.read_text())


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _source_secrets() -> set[str]:
    """`sources.<section>.<arg>` for every dlt source argument defaulting to dlt.secrets.value,
    and the DSN of every application table of the registry."""
    found = set()
    for info in pkgutil.walk_packages([str(PROJECT_DIR / "sources")], "sources."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if type(value).__name__ != "DltSourceFactoryWrapper":
                continue
            for name, parameter in inspect.signature(value).parameters.items():
                if parameter.default is dlt.secrets.value:
                    found.add(f"sources.{value.section}.{name}")
    # every application table reads its database's DSN (pipelines.application_table)
    from pipelines.registry import application_tables

    for spec in application_tables():
        assert spec.table is not None
        found.add(f"sources.{spec.table.credentials_section}.credentials")
    return found


def test_every_literal_secret_key_is_in_the_example() -> None:
    keys = {key for path in _code_files() for key in LITERAL_SECRET.findall(path.read_text())}
    assert "alerting.slack_webhook_url" in keys  # the scan finds what is there
    example = _example()
    missing = sorted(key for key in keys if _lookup(example, key) is None)
    assert not missing, f"{EXAMPLE.name} lacks {missing}"


def test_every_source_secret_is_in_the_example() -> None:
    secrets = _source_secrets()
    assert "sources.open_exchange_rates.api_key" in secrets
    assert "sources.products.credentials" in secrets
    example = _example()
    missing = sorted(key for key in secrets if _lookup(example, key) is None)
    assert not missing, f"{EXAMPLE.name} lacks {missing}"


def _flatten(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, value in tree.items():
        name = f"{prefix}__{key}" if prefix else key
        if isinstance(value, dict):
            yield from _flatten(value, name)
        else:
            yield name.upper(), str(value)


@pytest.mark.parametrize("section", sorted(CREDENTIAL_SPECS))
def test_every_credentials_spec_resolves_from_the_example(
    section: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, explicit, proof = CREDENTIAL_SPECS[section]
    code = "".join(path.read_text() for path in _code_files())
    assert proof in code, f"the code no longer reads {section}: update CREDENTIAL_SPECS"
    table = _lookup(_example(), section)
    assert isinstance(table, dict) and table, f"{EXAMPLE.name} has no [{section}]"
    # dlt resolves the spec from the example's values only (as environment variables).
    for name, value in _flatten(table, section.replace(".", "__")):
        monkeypatch.setenv(name, value)
    sections = tuple(section.split(".")[:-1])
    resolved = resolve_configuration(spec(), sections=sections, explicit_value=explicit or None)
    for key in table:
        assert getattr(resolved, key) is not None, f"[{section}] {key} did not resolve"
    if spec is not AwsCredentials:
        assert resolved.is_resolved()


def test_the_products_dsn_parses_as_dlt_credentials() -> None:
    dsn = _lookup(_example(), "sources.products.credentials")
    credentials = ConnectionStringCredentials(dsn)
    assert credentials.drivername == "postgresql" and credentials.password

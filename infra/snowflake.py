"""Snowflake DDL as versioned SQL: render, print (dry run) or apply in file order.

Files in infra/snowflake/ are applied in name order (010_, 020_, ...); each is idempotent and
sets its role (`USE ROLE`) before each part. One placeholder syntax, `{{ NAME }}`, filled from
dlt config (settings, never secrets): `BUCKET_URL` is the production bucket the pipelines write
(`[data_pipelines] bucket_url`), every other NAME is `[snowflake_admin] name` (e.g. the loader's
public key, the storage integration's IAM role ARN), or its environment form
`SNOWFLAKE_ADMIN__NAME`. SQL that still holds a placeholder after rendering is refused before
anything runs. The admin connection uses dlt's Snowflake credentials spec under
`[snowflake_admin.credentials]` (a user holding SYSADMIN, SECURITYADMIN and ACCOUNTADMIN).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

SQL_DIR = Path(__file__).resolve().parent / "snowflake"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Z0-9_]+)\s*\}\}")
# Any templating syntax at all (ours, SnowSQL's `&{var}`, Snowflake CLI's `<% var %>`): none may
# reach Snowflake, where it would create a stage or integration on a literal placeholder.
_ANY_PLACEHOLDER = re.compile(r"\{\{|\}\}|&\{|<%")
BUCKET_URL = "BUCKET_URL"


class MissingSetting(RuntimeError):
    """A placeholder in the SQL has no value; the message says how to set it."""


def how_to_set(name: str) -> str:
    if name == BUCKET_URL:
        return (
            'set [data_pipelines] bucket_url = "s3://<bucket>" in .dlt/config.toml (the '
            "bucket the pipelines write)"
        )
    return (
        f"set {name.lower()} under [snowflake_admin] in .dlt/config.toml or export "
        f"SNOWFLAKE_ADMIN__{name}=..."
    )


def sql_files(directory: Path = SQL_DIR) -> list[Path]:
    return sorted(directory.glob("[0-9][0-9][0-9]_*.sql"))


def _setting(name: str) -> str | None:
    if name == BUCKET_URL:
        # The product's own reading of the bucket: the DDL and the pipelines agree on it.
        from pipelines.environment import configured_bucket_url

        url = configured_bucket_url()
        # Snowpipe reads S3 only: any other URL (a local folder) counts as not set.
        if not url or not url.startswith("s3://"):
            return None
        return url
    import dlt

    value = dlt.config.get(f"snowflake_admin.{name.lower()}")
    return None if value in (None, "") else str(value)


def render(
    files: Iterable[Path] | None = None,
    settings: Callable[[str], str | None] = _setting,
    strict: bool = True,
) -> str:
    """All SQL files, placeholders filled, in apply order. Deterministic for equal settings.

    strict: every placeholder must have a value and none may remain (any syntax); otherwise
    (the dry run) unknown ones stay visible as written.
    """
    parts = []
    for path in files if files is not None else sql_files():
        text = path.read_text()

        def fill(match: re.Match[str], path: Path = path) -> str:
            name = match.group(1)
            value = settings(name)
            if value is None:
                if strict:
                    raise MissingSetting(f"{path.name} needs {name}: {how_to_set(name)}")
                return match.group(0)
            return value

        rendered = _PLACEHOLDER.sub(fill, text).strip()
        if strict:
            refuse_placeholders(path.name, rendered)
        parts.append(f"-- >>> {path.name}\n{rendered}\n")
    return "\n".join(parts)


def refuse_placeholders(name: str, sql: str) -> None:
    """Raise if `sql` still holds template syntax of any kind (ours or another tool's)."""
    for number, line in enumerate(sql.splitlines(), start=1):
        found = _ANY_PLACEHOLDER.search(line)
        if found:
            raise MissingSetting(
                f"{name} line {number} still holds {line.strip()!r} after rendering: write "
                "placeholders as {{ NAME }} and set each (see infra/snowflake.py)."
            )


def split_statements(sql: str) -> list[str]:
    """Statements of `sql`, comments dropped, each without its closing `;`.

    The Snowflake connector's own splitter (`snowflake.connector.util_text.split_statements`,
    the one `SnowflakeConnection.execute_string` uses): a `;` inside quotes, `--` and `/* */`
    comments or a `$$ ... $$` body (procedures, functions, tasks) does not end a statement.
    """
    from snowflake.connector.util_text import split_statements as connector_split

    statements = []
    for statement, _is_put_or_get in connector_split(io.StringIO(sql), remove_comments=True):
        statement = statement.strip()
        statement = statement.removesuffix(";").rstrip()
        if statement:
            statements.append(statement)
    return statements


def _connect() -> Any:
    import snowflake.connector
    from dlt.common.configuration import resolve_configuration
    from dlt.destinations.impl.snowflake.configuration import SnowflakeCredentials

    credentials = resolve_configuration(SnowflakeCredentials(), sections=("snowflake_admin",))
    return snowflake.connector.connect(**credentials.to_connector_params())


def execute(statements: Iterable[str], connection: Any) -> int:
    cursor = connection.cursor()
    count = 0
    for statement in statements:
        cursor.execute(statement)
        count += 1
    return count


def apply(dry_run: bool = False) -> int:
    """Print (dry run, placeholders may stay unfilled) or execute the DDL; exit code."""
    if dry_run:
        print(render(strict=False))
        return 0
    statements = split_statements(render())
    connection = _connect()
    try:
        done = execute(statements, connection)
    finally:
        connection.close()
    print(f"applied {done} statements from {len(sql_files())} files")
    return 0

"""Snowflake DDL as versioned SQL: render, print (dry run) or apply in file order.

Files in infra/snowflake/ are applied in name order (010_, 020_, ...); each is idempotent.
Placeholders `{{ NAME }}` are filled from the environment or dlt config `[snowflake_admin]`
(e.g. the loader's public key, the bucket, the storage integration's role ARN): they are
settings, never secrets. The admin connection uses dlt's Snowflake credentials spec under
`[snowflake_admin.credentials]` (a role that can create databases, roles and users).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

SQL_DIR = Path(__file__).resolve().parent / "snowflake"
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Z0-9_]+)\s*\}\}")


class MissingSetting(RuntimeError):
    """A placeholder in the SQL has no value; the message says how to set it."""


def sql_files(directory: Path = SQL_DIR) -> list[Path]:
    return sorted(directory.glob("[0-9][0-9][0-9]_*.sql"))


def _setting(name: str) -> str | None:
    value = os.environ.get(name)
    if value:
        return value
    try:
        import dlt

        return dlt.config.get(f"snowflake_admin.{name.lower()}")
    except Exception:  # config not available: treated as unset
        return None


def render(
    files: Iterable[Path] | None = None,
    settings: Callable[[str], str | None] = _setting,
    strict: bool = True,
) -> str:
    """All SQL files, placeholders filled, in apply order. Deterministic for equal settings."""
    parts = []
    for path in files if files is not None else sql_files():
        text = path.read_text()

        def fill(match: re.Match[str], path: Path = path) -> str:
            name = match.group(1)
            value = settings(name)
            if value is None:
                if strict:
                    raise MissingSetting(
                        f"{path.name} needs {name}: export {name}=... or set "
                        f"{name.lower()} under [snowflake_admin] in .dlt/config.toml"
                    )
                return match.group(0)
            return value

        parts.append(f"-- >>> {path.name}\n{_PLACEHOLDER.sub(fill, text).strip()}\n")
    return "\n".join(parts)


def split_statements(sql: str) -> list[str]:
    """Statements of `sql`, comments dropped; `;` ends a statement outside quotes."""
    statements, current, quote = [], [], ""
    for line in sql.splitlines():
        if not quote and line.strip().startswith("--"):
            continue
        for char in line + "\n":
            if quote:
                if char == quote:
                    quote = ""
            elif char in ("'", '"'):
                quote = char
            elif char == ";":
                statement = "".join(current).strip()
                if statement:
                    statements.append(statement)
                current = []
                continue
            current.append(char)
    tail = "".join(current).strip()
    if tail:
        statements.append(tail)
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

"""The local PostgreSQL cluster's record: where the application database is, for local runs.

`data-pipelines up` (dev_stack/postgres.py) starts the cluster and writes its facts to
`<data folder>/postgres/cluster.json` (a symlink leads there when the cluster lives elsewhere);
the local environment reads them here for its DSN fallback, without starting anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from pipelines.environment import data_dir

HOST = "127.0.0.1"
DEFAULT_DATABASE = "app"
RECORD_FILE = "cluster.json"


@dataclass(frozen=True)
class LocalPostgres:
    """Connection facts of a running local cluster."""

    root: Path
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str = DEFAULT_DATABASE

    def dsn_for(self, database: str) -> str:
        """A DSN for another database on the same cluster (tests use one database each)."""
        password = quote(self.password, safe="")
        return f"postgresql://{self.user}:{password}@{self.host}:{self.port}/{database}"

    @property
    def dsn(self) -> str:
        """DSN of the application database (contains the password: never log it)."""
        return self.dsn_for(self.database)

    @property
    def redacted_dsn(self) -> str:
        return f"postgresql://{self.user}:***@{self.host}:{self.port}/{self.database}"


def read_record(root: Path) -> dict[str, object] | None:
    """The facts the last start recorded under `root`, else None."""
    path = root / RECORD_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def cluster_from_record(root: Path, port: int, facts: dict[str, object]) -> LocalPostgres:
    return LocalPostgres(
        root=root,
        host=HOST,
        port=port,
        user=str(facts["user"]),
        password=str(facts["password"]),
        database=str(facts["database"]),
    )


def recorded(root: Path | None = None) -> LocalPostgres | None:
    """The facts recorded by the last start (running or not), else None; starts nothing."""
    root = (root or data_dir() / "postgres").resolve()
    facts = read_record(root)
    if facts is None or not facts.get("port"):
        return None
    return cluster_from_record(root, int(facts["port"]), facts)  # type: ignore[arg-type]

"""The local stand-in for Snowpipe: new exchange-rate files in the bucket -> local warehouse.

In production, S3 tells the pipe `SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_PIPE` about each new
object under `exchange-rates/` and Snowflake runs the pipe's COPY on it. Locally this module does
the same job on demand: it lists the files under the watched prefix, loads each one it has not
loaded before into `SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES` of the local DuckDB file
`warehouse/snowpipe.duckdb`, and remembers what it loaded (path, size, modification time, MD5,
rows, load time) in `snowpipe._local_pipe.load_history`, in the same transaction as the rows, so
each file version is loaded exactly once even if a run dies half-way.

A file that cannot be loaded (half-written, not JSON lines, a value the COPY cannot cast) never
blocks the others: like Snowpipe's COPY_HISTORY, the history records it as `LOAD_FAILED` with
its first error, the pass reports it and goes on, and later passes skip that same content
instead of failing on it again. A new version of the file (same name, other content) is tried.

One difference from Snowflake, on purpose: Snowpipe never reloads a file name it has loaded, even
if the object changed; this pipe reloads a file whose content changed. The pipeline never
rewrites a file with different rates (historical days are final, `latest` files are named after
OXR's publication time), so both behave the same for our files; locally the reload makes a
rewritten file visible instead of silently ignored, and the view keeps one row per day either way.

There is no second copy of the table shape here: the schema, table and view are the Snowflake
DDL in `infra/snowflake/020_snowpipe_exchange_rates.sql`, and the rows are produced by the pipe's
own COPY column mapping from that file, translated to DuckDB with sqlglot. DDL, files and local
table cannot drift without this module (and its tests) failing.

Run it alone: `python -m local_runtime.snowpipe` (prints what it loaded).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import json
import logging
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot

from local_runtime.snowpipe_sql import CopyMapping, copy_select_for_duckdb, json_to_duckdb
from local_runtime.warehouse import local_bucket_url, warehouse_lock, warehouse_path
from pipelines.environment import PROJECT_DIR
from pipelines.names import (
    EXCHANGE_RATES_LATEST_VIEW,
    EXCHANGE_RATES_PIPE,
    EXCHANGE_RATES_PREFIX,
    EXCHANGE_RATES_TABLE,
    SNOWPIPE_DATABASE,
)

logger = logging.getLogger(__name__)

DDL_PATH = PROJECT_DIR / "infra" / "snowflake" / "020_snowpipe_exchange_rates.sql"
PIPE_NAME = EXCHANGE_RATES_PIPE
RAW_TABLE = EXCHANGE_RATES_TABLE
USER_VIEW = EXCHANGE_RATES_LATEST_VIEW
LOAD_HISTORY_TABLE = "snowpipe._local_pipe.load_history"
# What the pipe reads: the file format's TYPE = JSON with COMPRESSION = AUTO.
DATA_FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")

_STATEMENT_END = re.compile(r";\s*$", re.MULTILINE)
_COPY = re.compile(
    r"COPY\s+INTO\s+(?P<table>[\w.$]+)\s*\((?P<columns>[^)]*)\)\s*FROM\s*\((?P<select>.*)\)"
    r"\s*FILE_FORMAT",
    re.IGNORECASE | re.DOTALL,
)


# ---- the shipped DDL, read and translated ----------------------------------------------------


@functools.cache
def ddl_statements(path: Path = DDL_PATH) -> tuple[str, ...]:
    """The statements of the versioned SQL file, comments removed, in order."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("--")]
    text = "\n".join(lines)
    return tuple(s.strip() for s in _STATEMENT_END.split(text) if s.strip())


@functools.cache
def copy_mapping(path: Path = DDL_PATH) -> CopyMapping:
    """The COPY of the `CREATE PIPE` statement in the shipped DDL."""
    for statement in ddl_statements(path):
        if re.match(r"CREATE\s+(OR\s+REPLACE\s+)?PIPE\b", statement, re.IGNORECASE):
            match = _COPY.search(statement)
            if match is None:
                break
            columns = tuple(c.strip() for c in match["columns"].split(",") if c.strip())
            return CopyMapping(match["table"], columns, match["select"].strip())
    raise ValueError(f"{path} has no CREATE PIPE ... AS COPY INTO t (cols) FROM (SELECT ...)")


@functools.cache
def local_schema_sql(path: Path = DDL_PATH) -> tuple[str, ...]:
    """The DDL's CREATE SCHEMA / TABLE / VIEW statements, translated to DuckDB."""
    wanted = re.compile(r"CREATE\s+(OR\s+REPLACE\s+)?(SCHEMA|TABLE|VIEW)\b", re.IGNORECASE)
    translated = []
    for statement in ddl_statements(path):
        if wanted.match(statement):
            tree = sqlglot.parse_one(statement, read="snowflake").transform(json_to_duckdb)
            translated.append(tree.sql(dialect="duckdb"))
    return tuple(translated)


# ---- files under the watched prefix ---------------------------------------------------------


@dataclass(frozen=True)
class StagedFile:
    """One data file under the watched prefix, as the bucket lists it."""

    path: str  # filesystem path as fsspec knows it
    stage_path: str  # relative to the watched prefix, like METADATA$FILENAME
    size: int
    last_modified: str


def _bucket_filesystem(url: str) -> tuple[Any, str]:
    """fsspec filesystem and root path for `url`, with the credentials dlt resolves for it."""
    from dlt.common.configuration import resolve_configuration
    from dlt.common.storages import FilesystemConfiguration, fsspec_from_config

    config = resolve_configuration(
        FilesystemConfiguration(bucket_url=url), sections=("destination", "filesystem")
    )
    return fsspec_from_config(config)


def _modified(info: dict[str, Any]) -> str:
    value = info.get("LastModified") or info.get("mtime") or info.get("last_modified") or ""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).isoformat()
    return value.isoformat() if isinstance(value, datetime) else str(value)


def list_staged_files(exchange_rates_url: str) -> tuple[Any, list[StagedFile]]:
    """Every data file under the watched prefix, sorted by path."""
    fs, root = _bucket_filesystem(exchange_rates_url)
    root = root.rstrip("/")
    if not fs.exists(root):
        return fs, []
    found = fs.find(root, detail=True)
    files = []
    for path, info in sorted(found.items()):
        if info.get("type", "file") != "file" or not path.endswith(DATA_FILE_SUFFIXES):
            continue
        files.append(
            StagedFile(
                path=path,
                stage_path=path[len(root) :].lstrip("/"),
                size=int(info.get("size") or 0),
                last_modified=_modified(info),
            )
        )
    return fs, files


# ---- ingestion --------------------------------------------------------------------------------


@dataclass
class IngestReport:
    """What one pass of the local pipe did."""

    files_seen: int = 0
    files_loaded: int = 0
    rows_loaded: int = 0
    loaded: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)  # {"file", "error"}, per file
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_HISTORY_DDL = f"""
create schema if not exists snowpipe._local_pipe;
create table if not exists {LOAD_HISTORY_TABLE} (
    pipe_name varchar not null,
    file_name varchar not null,
    file_size bigint not null,
    last_modified varchar,
    content_md5 varchar not null,
    row_count bigint not null,
    last_load_time timestamptz not null,
    status varchar not null
);
alter table {LOAD_HISTORY_TABLE} add column if not exists first_error varchar;
"""


_HISTORY_COLUMNS = (
    "pipe_name, file_name, file_size, last_modified, content_md5, row_count, last_load_time, status"
)


@contextmanager
def _connect(database_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    try:
        # Attached as `snowpipe` whatever the file is called, so the DDL's three-part
        # production names (SNOWPIPE.OPEN_EXCHANGE_RATES.*) resolve unchanged.
        escaped = str(database_path).replace("'", "''")
        con.execute(f"attach '{escaped}' as snowpipe")
        yield con
    finally:
        con.close()


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the shipped table and view (and the pipe's load history) if they are missing."""
    for statement in local_schema_sql():
        con.execute(statement)
    con.execute(_HISTORY_DDL)


def _already_loaded(con: duckdb.DuckDBPyConnection) -> dict[str, set[tuple[Any, ...]]]:
    rows = con.execute(
        f"select file_name, file_size, last_modified, content_md5 from {LOAD_HISTORY_TABLE} "
        "where pipe_name = ? and status in ('LOADED', 'LOAD_FAILED')",
        [PIPE_NAME],
    ).fetchall()
    seen: dict[str, set[tuple[Any, ...]]] = {}
    for name, size, modified, md5 in rows:
        seen.setdefault(name, set()).update({("stat", size, modified), ("md5", md5)})
    return seen


def ingest(exchange_rates_url: str, database_path: Path | None = None) -> IngestReport:
    """Load every new or changed file under the watched prefix, exactly once; report what."""
    started = datetime.now(UTC)
    url = exchange_rates_url
    database_path = database_path or warehouse_path(SNOWPIPE_DATABASE)
    report = IngestReport()
    fs, files = list_staged_files(url)
    report.files_seen = len(files)
    mapping = copy_mapping()
    with (
        warehouse_lock(SNOWPIPE_DATABASE),
        _connect(database_path) as con,
        tempfile.TemporaryDirectory(prefix="local-snowpipe-") as scratch,
    ):
        ensure_schema(con)
        seen = _already_loaded(con)
        batch: list[tuple[StagedFile, str, str]] = []  # file, readable local path, md5
        for staged in files:
            known = seen.get(staged.stage_path, set())
            if ("stat", staged.size, staged.last_modified) in known:
                continue
            content = fs.cat_file(staged.path)
            md5 = hashlib.md5(content).hexdigest()
            if ("md5", md5) in known:
                continue  # touched but unchanged: already loaded (or already failed)
            problem = _unreadable(content, staged.path)
            if problem is not None:
                _record_failure(con, staged, md5, problem, started, report)
                continue
            # DuckDB reads a private copy: what it loads is exactly what was hashed, and
            # remote (s3://) files need a local copy anyway (no httpfs offline).
            local_copy = Path(scratch) / f"{len(batch):06d}-{Path(staged.path).name}"
            local_copy.write_bytes(content)
            batch.append((staged, str(local_copy), md5))
        if batch:
            try:
                report.rows_loaded = _load_batch(con, mapping, batch, started)
                report.loaded = [staged.stage_path for staged, _, _ in batch]
            except duckdb.Error:
                # Some file the COPY cannot take: load them one by one, so only it fails.
                for one in batch:
                    try:
                        report.rows_loaded += _load_batch(con, mapping, [one], started)
                        report.loaded.append(one[0].stage_path)
                    except duckdb.Error as error:
                        _record_failure(con, one[0], one[2], str(error), started, report)
            report.files_loaded = len(report.loaded)
    report.seconds = round((datetime.now(UTC) - started).total_seconds(), 3)
    return report


def _load_batch(
    con: duckdb.DuckDBPyConnection,
    mapping: CopyMapping,
    batch: list[tuple[StagedFile, str, str]],
    scan_time: datetime,
) -> int:
    """One transaction: the rows of every file in `batch` and their load-history entries.

    Set-based on purpose (one read of all files, one insert each): per-file statements cost
    about 5 ms each, which a 365-day backfill would pay 365 times.
    """
    manifest = pa.table(
        {
            "local_path": [local for _, local, _ in batch],
            "stage_path": [staged.stage_path for staged, _, _ in batch],
            "file_size": pa.array([staged.size for staged, _, _ in batch], pa.int64()),
            "last_modified": [staged.last_modified for staged, _, _ in batch],
            "content_md5": [md5 for _, _, md5 in batch],
        }
    )
    con.register("manifest", manifest)
    con.execute("create or replace temp table staged_files as select * from manifest")
    con.unregister("manifest")
    con.execute(
        "create or replace temp table staged_rows as "
        "select r.json, f.stage_path, f.last_modified, ?::timestamptz as scan_time "
        "from read_ndjson_objects(?::varchar[], filename = true) r "
        "join staged_files f on r.filename = f.local_path",
        [scan_time, [local for _, local, _ in batch]],
    )
    select_sql = copy_select_for_duckdb(mapping, "staged_rows")
    con.execute("begin transaction")
    try:
        con.execute(f"insert into {mapping.table} ({', '.join(mapping.columns)}) {select_sql}")
        con.execute(
            f"insert into {LOAD_HISTORY_TABLE} ({_HISTORY_COLUMNS}) "
            "select ?, f.stage_path, f.file_size, f.last_modified, f.content_md5, "
            "coalesce(c.row_count, 0), ?::timestamptz, 'LOADED' "
            "from staged_files f left join ("
            "  select stage_path, count(*) as row_count from staged_rows group by 1"
            ") c using (stage_path)",
            [PIPE_NAME, scan_time],
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    (rows,) = con.execute("select count(*) from staged_rows").fetchone()  # type: ignore[misc]
    return int(rows)


def _unreadable(content: bytes, name: str) -> str | None:
    """Why the pipe's JSON file format cannot read this file (None if it can): cheap, in Python,
    so a broken file is reported by name instead of failing the set-based load of all files."""
    try:
        text = (gzip.decompress(content) if name.endswith(".gz") else content).decode("utf-8")
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip() and not isinstance(json.loads(line), dict):
                return f"line {number} is not a JSON object"
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def _record_failure(
    con: duckdb.DuckDBPyConnection,
    staged: StagedFile,
    md5: str,
    error: str,
    scan_time: datetime,
    report: IngestReport,
) -> None:
    """`LOAD_FAILED` in the history (as COPY_HISTORY shows it) and in this pass's report."""
    con.execute(
        f"insert into {LOAD_HISTORY_TABLE} ({_HISTORY_COLUMNS}, first_error) "
        "values (?, ?, ?, ?, ?, 0, ?, 'LOAD_FAILED', ?)",
        [PIPE_NAME, staged.stage_path, staged.size, staged.last_modified, md5, scan_time, error],
    )
    report.failed.append({"file": staged.stage_path, "error": error})
    logger.warning("Local Snowpipe could not load %s: %s", staged.stage_path, error)


def main(argv: list[str] | None = None) -> int:
    """`python -m local_runtime.snowpipe [--url URL]`: one pass of the local pipe, as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m local_runtime.snowpipe",
        description=(
            "Local Snowpipe: load new exchange-rate files from the bucket's exchange-rates/ "
            f"prefix into {RAW_TABLE} (users read {USER_VIEW})."
        ),
    )
    parser.add_argument("--url", help="watched prefix (default: the local bucket's)")
    args = parser.parse_args(argv)
    report = ingest(args.url or f"{local_bucket_url()}/{EXCHANGE_RATES_PREFIX}")
    json.dump(report.as_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

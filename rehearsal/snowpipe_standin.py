"""The rehearsal's Snowpipe: for each new object under the watched prefix, run the pipe's own COPY.

In production Snowpipe (AUTO_INGEST, fed by S3 event notifications) loads every new file under
`s3://<bucket>/exchange-rates/` into `SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES`. Here a
separate process polls the bucket (moto) and, when objects appeared, runs the `COPY INTO` of the
`CREATE PIPE` statement in `infra/snowflake/020_snowpipe_exchange_rates.sql` (the one source of
truth, rendered as `data-pipelines apply snowflake` renders it) against the Snowflake stand-in.

The stand-in reads external stages from a local mirror (fakesnow cannot reach S3 offline, see
`rehearsal/snowflake_standin.py`), so new objects are copied into the mirror first. Files the
table already loaded are skipped by the COPY's own load history, as Snowpipe never loads a file
name twice.

`python -m rehearsal.snowpipe_standin --bucket B --mirror DIR [--interval S] [--once]`;
Snowflake credentials come from dlt config (`[destination.snowflake.credentials]`, so from
Secrets Manager in the rehearsal), S3 from boto's usual settings.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PREFIX = "exchange-rates/"
_PIPE_COPY = re.compile(
    r"\bCREATE\s+PIPE\s+(IF\s+NOT\s+EXISTS\s+)?(?P<name>[\w.$]+).*?\bAS\s+(?P<copy>COPY\s+INTO\b.*)$",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class PipeDefinition:
    name: str  # DATABASE.SCHEMA.PIPE
    copy: str  # the pipe's COPY INTO, verbatim

    @property
    def database(self) -> str:
        return self.name.split(".")[0]

    @property
    def schema(self) -> str:
        return self.name.split(".")[1]


def pipe_definition(rendered_sql: str) -> PipeDefinition:
    """The pipe the DDL's `CREATE PIPE ... AS COPY INTO ...` defines, its COPY verbatim."""
    from infra.snowflake import split_statements

    for statement in split_statements(rendered_sql):
        match = _PIPE_COPY.search(statement)
        if match:
            return PipeDefinition(match.group("name").upper(), match.group("copy").strip())
    raise ValueError("the Snowflake DDL defines no CREATE PIPE ... AS COPY INTO statement")


def rendered_ddl() -> str:
    """The DDL as `data-pipelines apply snowflake` renders it (same settings, same function)."""
    from infra.snowflake import render

    return render()


@dataclass
class SyncReport:
    new_objects: list[str]
    rows_loaded: int


def mirror_new_objects(s3: Any, bucket: str, mirror: Path, seen: set[str]) -> list[str]:
    """Copy objects under the prefix that are not in the mirror yet; returns their keys."""
    new = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=PREFIX):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key in seen or key.endswith("/"):
                continue
            target = mirror / bucket / key
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
            seen.add(key)
            new.append(key)
    return new


def copy_for_files(copy: str, keys: Sequence[str]) -> str:
    """The pipe's COPY limited to the notified files, as Snowpipe runs it per notification."""
    files = ", ".join("'" + key.removeprefix(PREFIX).replace("'", "''") + "'" for key in keys)
    position = [m.start() for m in re.finditer(r"\bFILE_FORMAT\s*=", copy, re.IGNORECASE)][-1]
    return f"{copy[:position]}FILES = ({files})\n{copy[position:]}"


def sync_once(
    s3: Any, bucket: str, mirror: Path, seen: set[str], execute: Callable[[str], int], copy: str
) -> SyncReport:
    """One poll: mirror what is new, then run the pipe's COPY for those files."""
    new = mirror_new_objects(s3, bucket, mirror, seen)
    rows = execute(copy_for_files(copy, new)) if new else 0
    if new:
        logger.info("pipe stand-in: %d new object(s), %d row(s) loaded", len(new), rows)
    return SyncReport(new, rows)


def snowflake_executor(pipe: PipeDefinition) -> tuple[Callable[[str], int], Callable[[], None]]:
    """Run SQL in the pipe's schema (as Snowpipe does) with dlt's warehouse credentials."""
    import snowflake.connector
    from dlt.common.configuration import resolve_configuration
    from dlt.destinations.impl.snowflake.configuration import SnowflakeCredentials

    credentials = resolve_configuration(
        SnowflakeCredentials(), sections=("destination", "snowflake")
    )
    params = credentials.to_connector_params()
    params.update(database=pipe.database, schema=pipe.schema)
    connection = snowflake.connector.connect(**params)

    def execute(sql: str) -> int:
        cursor = connection.cursor()
        cursor.execute(sql)
        # COPY returns one row per file: (file, status, rows_parsed, rows_loaded, ...)
        rows = cursor.fetchall()
        return sum(int(row[3]) for row in rows if len(row) > 3 and str(row[3]).isdigit())

    return execute, connection.close


def run(bucket: str, mirror: Path, interval: float, once: bool) -> int:
    import boto3

    pipe = pipe_definition(rendered_ddl())
    s3 = boto3.client("s3")
    execute, close = snowflake_executor(pipe)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    seen: set[str] = set()
    try:
        while True:
            try:
                sync_once(s3, bucket, mirror, seen, execute, pipe.copy)
            except Exception:  # keep polling, as Snowpipe does; the error is in the log
                if once:
                    raise
                logger.exception("pipe stand-in: this poll failed; retrying")
            if once or stop.wait(interval):
                return 0
    finally:
        close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rehearsal.snowpipe_standin")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--mirror", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    parser.add_argument("--once", action="store_true", help="one poll, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from pipelines.environment import configure_runtime

    configure_runtime()
    started = time.monotonic()
    code = run(args.bucket, args.mirror, args.interval, args.once)
    logger.info("pipe stand-in stopped after %.0fs", time.monotonic() - started)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

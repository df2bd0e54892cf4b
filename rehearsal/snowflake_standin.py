"""The rehearsal's Snowflake: fakesnow's HTTP server, with the few gaps it has patched server side.

`python -m rehearsal.snowflake_standin --port P [--db-path DIR] [--mirror DIR]` serves
Snowflake's wire protocol on 127.0.0.1 for the real `snowflake.connector` (and so for dlt's
`snowflake` destination, unchanged). fakesnow 0.11.20 runs most of what production sends; what
it lacks is bridged HERE, never in product code, each for a reason docs/rehearsal.md lists:

1. Several statements in one request (dlt sends its CREATE TABLEs and its staging swaps as one
   multi-statement query, as Snowflake allows): split and run one by one, last result returned.
2. `PUT ... '@"SCHEMA"."%TABLE"/"load_id"' OVERWRITE = TRUE, AUTO_COMPRESS = FALSE` and
   `COPY ... FROM '@...' FILE_FORMAT = (TYPE = 'JSON', ...) MATCH_BY_COLUMN_NAME='...'`:
   fakesnow's parser wants the stage unquoted, options without commas and the match mode
   unquoted; Snowflake accepts all three.
3. `COPY INTO t FROM @stage FILE_FORMAT = (TYPE = 'JSON') MATCH_BY_COLUMN_NAME = ...` (dlt's
   default jsonl load): fakesnow matches columns by name for parquet only, so the staged JSON
   file is converted to parquet inside the stand-in's internal stage and loaded as parquet.
4. Account objects (warehouses, roles, users, grants, storage integrations) are accepted and
   ignored: fakesnow has no access control, so the rehearsal proves no privilege.
5. `CREATE PIPE ... AS COPY ...` is recorded, not run: the pipe stand-in
   (`rehearsal/snowpipe_standin.py`) plays Snowpipe. `SYSTEM$PIPE_STATUS` answers from that
   record and `INFORMATION_SCHEMA.COPY_HISTORY` from fakesnow's own load history.
6. External S3 stages: fakesnow reads files through DuckDB, whose `httpfs` extension cannot be
   downloaded offline, so a stage's `s3://bucket/...` URL is served from `--mirror`, a local
   folder the pipe stand-in fills from the bucket (moto) before each COPY.
7. COPY with a transformation over JSON (the pipe's `SELECT $1:rate_date::DATE, ...,
   METADATA$FILENAME ...`): fakesnow treats `$1:x` as a column and has no `METADATA$`
   columns, so the stand-in runs that COPY itself on fakesnow's DuckDB: the same column mapping
   translated by `local_runtime.snowpipe_sql.copy_select_for_duckdb` (the local pipe's translator),
   files skipped when the load history has them, load history written (for COPY_HISTORY).
8. TRUNCATE inside a transaction: Snowflake counts TRUNCATE as DML, so with autocommit off it
   joins the open transaction (dlt's full refresh: TRUNCATE + INSERT, then COMMIT); fakesnow
   opens its implicit transaction for INSERT/UPDATE/DELETE/MERGE/COPY only and ran the
   TRUNCATE on its own, committed at once: readers saw an empty table. The stand-in opens the
   transaction first (tests/test_rehearsal.py fails without it).

It runs in its own environment (`.venv-standin`, locked in `rehearsal/snowflake_standin_env/`,
started by `rehearsal.standin_process`), so it imports only fakesnow's packages, the standard
library and `local_runtime.snowpipe_sql` / `rehearsal.standin_process` (both import nothing
else). A stand-in that cannot serve never listens: `self_test()` runs every fakesnow piece the
patches use at start-up and, on failure, prints ONE line (`Snowflake stand-in cannot serve: ...`)
and exits 3. An unexpected error inside a request answers the client with a SQL error naming it,
never an HTTP 500 (which the connector retries for minutes).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rehearsal.standin_process import CANNOT_SERVE

# Account-level objects fakesnow cannot create; accepted as no-ops (see 4. above).
ACCOUNT_STATEMENTS: tuple[str, ...] = (
    r"^\s*CREATE\s+(OR\s+REPLACE\s+)?(WAREHOUSE|ROLE|USER|STORAGE\s+INTEGRATION)\b",
    r"^\s*ALTER\s+(WAREHOUSE|ROLE|USER|STORAGE\s+INTEGRATION|PIPE)\b",
    r"^\s*(GRANT|REVOKE)\b",
    r"^\s*USE\s+(ROLE|WAREHOUSE|SECONDARY\s+ROLES)\b",
)
_STAGE_LITERAL = re.compile(r"'(@[^']*)'")
_FILE_FORMAT = re.compile(r"FILE_FORMAT\s*=\s*\(([^)]*)\)", re.IGNORECASE)
_PUT_OPTIONS = re.compile(r",\s*(?=(OVERWRITE|AUTO_COMPRESS|PARALLEL|SOURCE_COMPRESSION)\b)", re.I)
_MATCH_LITERAL = re.compile(r"MATCH_BY_COLUMN_NAME\s*=\s*'(\w+)'", re.IGNORECASE)
_JSON_MATCH_BY_NAME = re.compile(
    r"^\s*COPY\s+INTO\s+(?P<table>\S+)\s+FROM\s+@(?P<stage>\S+)(?P<middle>.*?)"
    r"FILE_FORMAT\s*=\s*\(\s*TYPE\s*=\s*'?JSON'?[^)]*\)\s*"
    r"MATCH_BY_COLUMN_NAME\s*=\s*'?(?P<match>\w+)'?",
    re.IGNORECASE | re.DOTALL,
)
_CREATE_PIPE = re.compile(
    r"^\s*CREATE\s+(OR\s+REPLACE\s+)?PIPE\s+(IF\s+NOT\s+EXISTS\s+)?(?P<name>[\w.$\"]+)",
    re.IGNORECASE,
)
_PIPE_STATUS = re.compile(r"SYSTEM\$PIPE_STATUS\(\s*'(?P<name>[^']+)'\s*\)", re.IGNORECASE)
_COPY_HISTORY = re.compile(
    r"table\(\s*(?P<db>\w+)\.INFORMATION_SCHEMA\.COPY_HISTORY\(\s*TABLE_NAME\s*=>\s*"
    r"'(?P<table>[^']+)'\s*,\s*START_TIME\s*=>\s*(?P<start>.*?)\)\s*\)",
    re.IGNORECASE | re.DOTALL,
)
_TRANSFORM_COPY = re.compile(
    r"^\s*COPY\s+INTO\s+(?P<table>[\w.$]+)\s*\((?P<columns>[^)]*)\)\s*FROM\s*\("
    r"(?P<select>.*\bFROM\s+@(?P<stage>[\w.$]+)\s*)\)\s*"
    r"(FILES\s*=\s*\((?P<files>[^)]*)\)\s*)?FILE_FORMAT",
    re.IGNORECASE | re.DOTALL,
)
_TRUNCATE = re.compile(r"^\s*TRUNCATE\b", re.IGNORECASE)
_S3_URL = re.compile(r"URL\s*=\s*'s3://(?P<path>[^']*)'", re.IGNORECASE)

# Stage info fields connector 5 requires in a PUT answer and fakesnow 0.11.20 leaves out.
STAGE_INFO_DEFAULTS: dict[str, Any] = {
    "region": "us-central1",
    "endPoint": None,
    "storageAccount": None,
    "useRegionalUrl": False,
    "useS3RegionalUrl": False,
    "isClientSideEncrypted": False,
}

# Session parameters the stand-in's login answer adds to fakesnow's. Snowflake's own telemetry
# endpoint (/telemetry/send) does not exist here: with CLIENT_TELEMETRY_ENABLED on (Snowflake's
# default), connector 5 batches in-band telemetry and logs "Failed to export telemetry" as a
# WARNING for each batch it cannot send. A real account can switch it off the same way
# (`ALTER ACCOUNT SET CLIENT_TELEMETRY_ENABLED = FALSE`); production keeps Snowflake's default.
LOGIN_PARAMETERS: dict[str, Any] = {"CLIENT_TELEMETRY_ENABLED": False}

# pipe name (upper case, fully qualified) -> its CREATE PIPE text; lives as long as the server
PIPES: dict[str, str] = {}


def split_statements(sql: str) -> list[str]:
    """The statements of one request, split on `;` tokens (never inside strings or comments)."""
    from fakesnow.dialect import SnowflakeWithStageCommands
    from sqlglot.tokens import TokenType

    parts: list[str] = []
    start = 0
    for token in SnowflakeWithStageCommands().tokenize(sql):
        if token.token_type == TokenType.SEMICOLON:
            parts.append(sql[start : token.start].strip())
            start = token.end + 1
    parts.append(sql[start:].strip())
    return [part for part in parts if part]


def normalise_stage_syntax(sql: str) -> str:
    """Quoted stage names and comma-separated options, as fakesnow's parser wants them."""
    if not re.match(r"\s*(PUT|COPY\s+INTO)\b", sql, re.IGNORECASE):
        return sql
    sql = _STAGE_LITERAL.sub(r"\1", sql)
    sql = _MATCH_LITERAL.sub(r"MATCH_BY_COLUMN_NAME = \1", sql)
    sql = _FILE_FORMAT.sub(lambda m: "FILE_FORMAT = (" + m.group(1).replace(",", " ") + ")", sql)
    if re.match(r"\s*PUT\b", sql, re.IGNORECASE):
        sql = _PUT_OPTIONS.sub(" ", sql)
    return sql


def mirror_s3_urls(sql: str, mirror: Path | None) -> str:
    """`URL = 's3://bucket/path'` of a stage -> the same path in the local mirror folder."""
    if mirror is None or not re.match(r"\s*CREATE\b.*\bSTAGE\b", sql, re.I | re.S):
        return sql
    return _S3_URL.sub(lambda m: f"URL = '{(mirror / m.group('path')).as_uri()}/'", sql)


def _pipe_name(name: str, database: str | None, schema: str | None) -> str:
    parts = [p.strip('"').upper() for p in name.split(".")]
    if len(parts) == 1:
        parts = [str(schema).upper(), *parts]
    if len(parts) == 2:
        parts = [str(database).upper(), *parts]
    return ".".join(parts)


def pipe_status_sql(name: str, cursor: Any) -> str:
    """`SYSTEM$PIPE_STATUS` as Snowflake shapes it, from the record and the load history."""
    import snowflake.connector.errors

    if name not in PIPES:
        raise snowflake.connector.errors.ProgrammingError(
            msg=f"SQL compilation error:\nPipe '{name}' does not exist or not authorized.",
            errno=2003,
            sqlstate="02000",
        )
    database = name.split(".", 1)[0]
    cursor.execute(
        f"SELECT max(last_load_time) FROM {database}._fs_information_schema._fs_load_history "
        "WHERE status = 'LOADED'"
    )
    row = cursor.fetchone()
    status: dict[str, Any] = {"executionState": "RUNNING", "pendingFileCount": 0}
    if row and row[0] is not None:
        status["lastIngestedTimestamp"] = row[0].astimezone(UTC).isoformat()
    text = json.dumps(status).replace("'", "''")
    return f"SELECT '{text}'"


def copy_history_sql(database: str, table: str, start: str) -> str:
    """`COPY_HISTORY(...)` over fakesnow's load history (files skipped as loaded are not in it)."""
    _db, schema, name = (p.strip('"').upper() for p in table.split("."))
    return (
        "(SELECT file_name, 'Loaded' AS status, first_error_message, last_load_time, "
        "error_count, row_count FROM "
        f"{database}._fs_information_schema._fs_load_history "
        f"WHERE status = 'LOADED' AND upper(schema_name) = '{schema}' "
        f"AND upper(table_name) = '{name}' AND last_load_time >= {start})"
    )


def json_copy_as_parquet(sql: str, database: str | None, schema: str | None) -> str:
    """A jsonl COPY matched by column name -> the same file converted to parquet, then COPY."""
    match = _JSON_MATCH_BY_NAME.match(sql)
    if match is None:
        return sql
    import duckdb
    from fakesnow.transforms import stage

    var, _, path = match.group("stage").partition("/")
    catalog, stage_schema, stage_name = stage.parts_from_var(var, database, schema)
    source = Path(stage.internal_dir(f"{catalog}.{stage_schema}.{stage_name}", path))
    target = source.with_name(source.name.split(".", 1)[0] + ".converted.parquet")
    with duckdb.connect() as conn:
        conn.execute(
            f"COPY (SELECT * FROM read_json_auto('{source.as_posix()}', format = "
            "'newline_delimited')) TO " + f"'{target.as_posix()}' (FORMAT PARQUET)"
        )
    converted_path = path.rsplit("/", 1)[0] + "/" + target.name if "/" in path else target.name
    return (
        f"COPY INTO {match.group('table')} FROM @{var}/{converted_path}{match.group('middle')}"
        f"FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = {match.group('match').upper()}"
    )


def copy_with_transformation(cursor: Any, statement: str) -> str:
    """Run a `COPY INTO t (cols) FROM (SELECT ... FROM @stage) [FILES = (...)]` on DuckDB.

    Returns the SQL that answers the client with Snowflake's COPY result rows
    (file, status, rows_parsed, rows_loaded).
    """
    from fakesnow.transforms import stage

    from local_runtime.snowpipe_sql import CopyMapping, copy_select_for_duckdb

    match = _TRANSFORM_COPY.match(statement)
    assert match is not None
    conn = cursor._conn
    duck = cursor._duck_conn
    table = match.group("table").upper()
    database, schema, name = stage.parts_from_var(match.group("stage"), conn.database, conn.schema)
    row = duck.execute(
        "SELECT url FROM _fs_global._fs_information_schema._fs_stages "
        "WHERE database_name = ? AND schema_name = ? AND name = ?",
        [database, schema, name],
    ).fetchone()
    if not row or not row[0]:
        raise stage.not_found_error(f"{database}.{schema}.{name}")
    root = stage.file_path(row[0]).rstrip("/")
    if match.group("files"):
        files = [f.strip().strip("'") for f in match.group("files").split(",") if f.strip()]
    else:
        files = sorted(
            str(path.relative_to(root)) for path in Path(root).rglob("*") if path.is_file()
        )
    table_db, table_schema, table_name = ([conn.database, conn.schema, *table.split(".")])[-3:]
    history = f"{table_db}._fs_information_schema._fs_load_history"
    loaded = {
        r[0]
        for r in duck.execute(
            f"SELECT file_name FROM {history} WHERE table_name = ? AND schema_name = ?",
            [table_name, table_schema],
        ).fetchall()
    }
    new = [f for f in files if f not in loaded]
    if not new:
        return "SELECT 'Copy executed with 0 files processed.' AS status"
    columns = tuple(c.strip() for c in match.group("columns").split(",") if c.strip())
    select = re.sub(r"\bFROM\s+@[\w.$]+\s*$", "", match.group("select").strip()).strip()
    mapping = CopyMapping(table, columns, select + " FROM staged")
    scan_time = datetime.now(UTC)
    duck.execute(
        "CREATE OR REPLACE TEMP TABLE staged_rows AS SELECT r.json, "
        "substr(r.filename, length(?) + 2) AS stage_path, ?::timestamptz AS scan_time "
        "FROM read_ndjson_objects(?::varchar[], filename = true) r",
        [root, scan_time, [f"{root}/{f}" for f in new]],
    )
    duck.execute("BEGIN TRANSACTION")
    try:
        duck.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) "
            + copy_select_for_duckdb(mapping, "staged_rows")
        )
        duck.execute(
            f"INSERT INTO {history} (schema_name, file_name, table_name, last_load_time, status, "
            "row_count, row_parsed, error_count, error_limit) "
            "SELECT ?, stage_path, ?, ?::timestamptz, 'LOADED', count(*), count(*), 0, 1 "
            "FROM staged_rows GROUP BY stage_path",
            [table_schema, table_name, scan_time],
        )
        duck.execute("COMMIT")
    except BaseException:
        duck.execute("ROLLBACK")
        raise
    counts = dict(
        duck.execute("SELECT stage_path, count(*) FROM staged_rows GROUP BY 1").fetchall()
    )
    rows = " UNION ALL ".join(
        f"SELECT '{f}' AS file, 'LOADED' AS status, {counts.get(f, 0)} AS rows_parsed, "
        f"{counts.get(f, 0)} AS rows_loaded"
        for f in new
    )
    return rows


@dataclass(frozen=True)
class Pause:
    """Fault injection for tests: hold the session after statements matching `pattern`.

    A reader in another session then sees what the database shows in that instant, e.g. the
    products table right after a full refresh emptied it (it must still be the old table).
    """

    pattern: re.Pattern[str]
    seconds: float


@dataclass(frozen=True)
class Gate:
    """Fault injection for tests: hold the session after a statement matching `pattern` for as
    long as `file` exists (at most `max_seconds`), announcing it in `<file>.held`.

    A test opens the gate by deleting the file, so another writer can be started at exactly
    that point of a load (e.g. while a full refresh's rows sit in the staging table). A file
    with text in it holds only statements that also match that text as a regex (one run's own
    staging dataset, say), so other writers pass.
    """

    pattern: re.Pattern[str]
    file: Path
    max_seconds: float = 120.0

    def hold(self, statement: str) -> None:
        try:
            only = self.file.read_text().strip()
        except FileNotFoundError:
            return
        if only and not re.search(only, statement, re.IGNORECASE):
            return
        marker = self.file.with_name(self.file.name + ".held")
        marker.write_text(statement)
        deadline = time.monotonic() + self.max_seconds
        while self.file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def _join_open_transaction(cursor: Any) -> None:
    """With autocommit off, start the implicit transaction a DML statement starts in Snowflake."""
    conn = cursor._conn
    if not conn._autocommit and not conn._in_transaction:
        cursor._duck_conn.begin()
        conn._in_transaction = True


def install(
    mirror: Path | None = None, pause: Pause | None = None, gate: Gate | None = None
) -> None:
    """Patch fakesnow's cursor so the server runs what production's client sends."""
    import snowflake.connector.errors
    from fakesnow.cursor import FakeSnowflakeCursor

    # fakesnow's own execute, also when an earlier install (the self-test's) patched it: the
    # latest install's mirror, pause and gate are the ones that hold
    original = getattr(FakeSnowflakeCursor.execute, "_fakesnow_execute", None)
    original = original or FakeSnowflakeCursor.execute

    def execute(self: Any, command: str, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("server"):
            return original(self, command, *args, **kwargs)
        try:
            return serve_statements(self, command, *args, **kwargs)
        except snowflake.connector.errors.Error:
            raise
        except Exception as error:
            # fakesnow's server answers anything else with HTTP 500, which the connector retries
            # for minutes: answer a SQL error naming the cause instead, so the client fails now.
            raise snowflake.connector.errors.ProgrammingError(
                msg=f"{CANNOT_SERVE} this statement: {type(error).__name__}: {error}",
                errno=261000,
                sqlstate="XX000",
            ) from error

    def serve_statements(self: Any, command: str, *args: Any, **kwargs: Any) -> Any:
        statements = [command] if kwargs.get("binding_params") else split_statements(command)
        result = self
        for statement in statements or [command]:
            if _TRUNCATE.match(statement):
                _join_open_transaction(self)
            result = original(self, _rewrite(self, statement), *args, **kwargs)
            if pause is not None and pause.pattern.search(statement):
                time.sleep(pause.seconds)
            if gate is not None and gate.pattern.search(statement):
                gate.hold(statement)
        return result

    execute._fakesnow_execute = original  # type: ignore[attr-defined]

    def _rewrite(cursor: Any, statement: str) -> str:
        if _TRANSFORM_COPY.match(statement):
            return copy_with_transformation(cursor, statement)
        conn = cursor._conn
        if pipe := _CREATE_PIPE.match(statement):
            name = _pipe_name(pipe.group("name"), conn.database, conn.schema)
            if name not in PIPES or pipe.group(1):
                PIPES[name] = statement
            return "SELECT 'Statement executed successfully.' AS status"
        if status := _PIPE_STATUS.search(statement):
            return pipe_status_sql(status.group("name").upper(), cursor._duck_conn)
        if history := _COPY_HISTORY.search(statement):
            replacement = copy_history_sql(
                history.group("db"), history.group("table"), history.group("start")
            )
            return statement[: history.start()] + replacement + statement[history.end() :]
        statement = normalise_stage_syntax(mirror_s3_urls(statement, mirror))
        return json_copy_as_parquet(statement, conn.database, conn.schema)

    FakeSnowflakeCursor.execute = execute  # type: ignore[method-assign]


def app() -> Any:
    """fakesnow's server app, its login answer completed for snowflake-connector-python 5.

    Connector 5 (its native login) requires `masterToken` and the tokens' validity in the login
    answer, which fakesnow 0.11.20 leaves out ("Failed to login: Missing response field:
    master token"), and a PUT's stage info with its `region` ("Missing parameter in Snowflake
    response: stage info -> region"); connector 4 ignored their absence. Snowflake always
    sends them. The login answer also switches the connector's telemetry off
    (`LOGIN_PARAMETERS`): the stand-in has no endpoint to receive it.
    """
    import json as json_module
    import secrets

    import fakesnow.server
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def login(request: Request) -> Any:
        response = await fakesnow.server.login_request(request)
        answer = json_module.loads(bytes(response.body))
        data = answer.get("data") or {}
        if answer.get("success") and "masterToken" not in data:
            data.setdefault("masterToken", secrets.token_urlsafe(32))
            data.setdefault("validityInSeconds", 3600)
            data.setdefault("masterValidityInSeconds", 14400)
            data.setdefault("sessionId", secrets.randbelow(2**31))
        if answer.get("success"):
            # no telemetry endpoint here: say so at login, as an account with
            # CLIENT_TELEMETRY_ENABLED = FALSE does (see LOGIN_PARAMETERS)
            given = {parameter.get("name") for parameter in data.get("parameters", [])}
            data.setdefault("parameters", []).extend(
                {"name": name, "value": value}
                for name, value in LOGIN_PARAMETERS.items()
                if name not in given
            )
        return JSONResponse(answer, status_code=response.status_code)

    async def query(request: Request) -> Any:
        response = await fakesnow.server.query_request(request)
        answer = json_module.loads(bytes(response.body))
        data = answer.get("data") or {}
        stage_info = data.get("stageInfo")
        if isinstance(stage_info, dict):
            # fakesnow answers every PUT with overwrite false; connector 5 then makes a
            # conditional GCS upload that the stand-in's presigned URL cannot authorise. Every
            # PUT dlt sends says OVERWRITE = TRUE.
            data["overwrite"] = True
            # connector 5 reads these of every PUT's stage; Snowflake always sends them
            for key, value in STAGE_INFO_DEFAULTS.items():
                stage_info.setdefault(key, value)
        return JSONResponse(answer, status_code=response.status_code)

    patched = {"/session/v1/login-request": login, "/queries/v1/query-request": query}
    routes = [
        Route(route.path, patched[route.path], methods=["POST"]) if route.path in patched else route
        for route in fakesnow.server.routes
    ]
    return Starlette(debug=True, routes=routes)


def serve(
    port: int,
    db_path: Path | None,
    mirror: Path | None,
    pause: Pause | None,
    gate: Gate | None = None,
) -> None:
    """fakesnow's server app under uvicorn (as `fakesnow -s` runs it) until SIGTERM/SIGINT."""
    import fakesnow.server
    import uvicorn
    from fakesnow.instance import FakeSnow

    install(mirror, pause, gate)
    fakesnow.server.shared_fs = FakeSnow(
        db_path=str(db_path) if db_path else None, nop_regexes=list(ACCOUNT_STATEMENTS)
    )
    config = uvicorn.Config(app(), host="127.0.0.1", port=port, log_level="info")
    print(f"Snowflake stand-in on 127.0.0.1:{port} since {datetime.now(UTC):%H:%M:%S}")
    uvicorn.Server(config).run()  # handles SIGTERM/SIGINT itself


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("fakesnow", "sqlglot", "duckdb", "snowflake-connector-python"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} missing")
        except Exception:  # a broken install must not hide the cause being reported
            found.append(f"{package} ?")
    return ", ".join(found)


def self_test() -> str | None:
    """None when every fakesnow piece the patches use works here; else the cause, one line.

    Imports what `install`, `split_statements`, the stage rewrites and `serve` use, then runs a
    multi-statement request, a stage COPY rewrite and the pipe's translated SELECT through a
    patched fakesnow session, in memory, as the server will.
    """
    try:
        import fakesnow.server  # noqa: F401
        import uvicorn  # noqa: F401
        from fakesnow.cursor import FakeSnowflakeCursor  # noqa: F401
        from fakesnow.dialect import SnowflakeWithStageCommands  # noqa: F401
        from fakesnow.instance import FakeSnow
        from fakesnow.transforms import stage

        from local_runtime.snowpipe_sql import CopyMapping, copy_select_for_duckdb

        for name in ("parts_from_var", "internal_dir", "file_path", "not_found_error"):
            getattr(stage, name)
        app()
        if split_statements("SELECT ';'; SELECT 2") != ["SELECT ';'", "SELECT 2"]:
            return "its statement splitter no longer splits on `;` tokens"
        install()
        conn = FakeSnow(nop_regexes=list(ACCOUNT_STATEMENTS)).connect("SELF_TEST", "S")
        cursor = conn.cursor()
        cursor.execute(
            "CREATE TABLE T (A DATE, F VARCHAR); GRANT USAGE ON X TO ROLE Y", server=True
        )
        mapping = CopyMapping("T", ("A", "F"), "SELECT $1:d::DATE, METADATA$FILENAME FROM staged")
        select = copy_select_for_duckdb(mapping, "staged_rows")
        cursor._duck_conn.execute(
            'CREATE TEMP TABLE staged_rows AS SELECT \'{"d": "2026-01-02"}\'::JSON AS json, '
            "'f.jsonl' AS stage_path"
        )
        cursor._duck_conn.execute(f"INSERT INTO SELF_TEST.S.T (A, F) {select}")
        cursor.execute("SELECT count(*) FROM T", server=True)
        if cursor.fetchone() != (1,):
            return "a row inserted through the pipe's translated COPY is not read back"
        conn.close()
    except Exception as error:
        first = (str(error).strip().splitlines() or [""])[0]
        return f"{type(error).__name__}: {first}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rehearsal.snowflake_standin")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db-path", type=Path, help="keep databases as DuckDB files here")
    parser.add_argument("--mirror", type=Path, help="local folder serving s3:// stage URLs")
    parser.add_argument("--pause-after", help="tests: regex of statements to hold after")
    parser.add_argument("--pause-seconds", type=float, default=2.0)
    parser.add_argument("--hold-after", help="tests: regex of statements to hold after ...")
    parser.add_argument("--hold-file", type=Path, help="... while this file exists")
    parser.add_argument(
        "--self-test", action="store_true", help="check this environment can serve, then exit"
    )
    args = parser.parse_args(argv)
    if cause := self_test():
        print(
            f"{CANNOT_SERVE}: {cause} [{_versions()}; {sys.executable}]; install its locked "
            "environment with scripts/setup.sh (rehearsal/snowflake_standin_env/uv.lock)",
            file=sys.stderr,
            flush=True,
        )
        return 3
    if args.self_test:
        print(f"Snowflake stand-in can serve [{_versions()}]")
        return 0
    if args.db_path:
        args.db_path.mkdir(parents=True, exist_ok=True)
    pause = (
        Pause(re.compile(args.pause_after, re.IGNORECASE), args.pause_seconds)
        if args.pause_after
        else None
    )
    gate = (
        Gate(re.compile(args.hold_after, re.IGNORECASE), args.hold_file)
        if args.hold_after and args.hold_file
        else None
    )
    serve(args.port, args.db_path, args.mirror, pause, gate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

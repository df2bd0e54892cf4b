"""PostgreSQL access for application tables: ADBC connection, error classes, Arrow streaming.

Why ADBC by hand instead of `sql_table`: `adbc_driver_postgresql` reads the result with
`COPY ... TO STDOUT (FORMAT binary)` and decodes it straight into Arrow record batches in C,
so rows never become Python objects. Measured on this machine it fetches 1M rows in about the
time `psql \\copy` takes; `sql_table`'s connectorx/pyarrow backends were 3-6x slower.
dlt's `sql_table` has no ADBC backend, so the connection, the query and the
error classification live here (~100 lines).
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import pyarrow as pa

from sources.errors import PermanentSourceError, TransientSourceError

CONNECT_TIMEOUT_SECONDS = 10
# Batches decoded ahead of the consumer; bounds memory (ADBC batches are ~16 MB each).
PREFETCH_BATCHES = 4


class PostgresUnavailableError(TransientSourceError):
    """PostgreSQL could not be reached (refused, timed out, dropped): worth retrying."""


class PostgresConfigurationError(PermanentSourceError):
    """Wrong credentials, database or table: a human must fix configuration."""


@dataclass(frozen=True)
class Endpoint:
    """Where we connect, for messages: never carries the password."""

    host: str
    port: int
    database: str

    def __str__(self) -> str:
        return f"PostgreSQL at {self.host}:{self.port} (database {self.database!r})"


POSTGRES_SCHEMES = ("postgresql", "postgres")
DSN_SHAPE = "postgresql://user:password@host:5432/database"


def credentials_setting(section: str) -> str:
    """Where a table's DSN is configured, as messages name it: `[sources.<section>] credentials`."""
    return f"[sources.{section}] credentials (env SOURCES__{section.upper()}__CREDENTIALS)"


def endpoint_of(dsn: str, section: str) -> Endpoint:
    """Host, port and database of a DSN; a DSN libpq could never use fails here, permanently."""
    setting = credentials_setting(section)
    parts = urlsplit(dsn)
    if parts.scheme not in POSTGRES_SCHEMES:
        raise PostgresConfigurationError(
            f"{setting} has scheme {parts.scheme or '(none)'!r}, not PostgreSQL: "
            f"write it as {DSN_SHAPE}."
        )
    try:
        port = parts.port or 5432
    except ValueError:  # not a number, or outside 0-65535
        raise PostgresConfigurationError(
            f"{setting} has an invalid port (it must be a number from 1 to 65535): "
            f"write it as {DSN_SHAPE}."
        ) from None
    return Endpoint(parts.hostname or "localhost", port, parts.path.lstrip("/"))


def unparsable_credentials(section: str) -> PostgresConfigurationError:
    """For a DSN dlt cannot even parse (its own error may echo parts of the value)."""
    return PostgresConfigurationError(
        f"{credentials_setting(section)} is not a connection string dlt can parse (e.g. a port "
        f"that is not a number): write it as {DSN_SHAPE}."
    )


def _with_connect_timeout(dsn: str) -> str:
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    query.setdefault("connect_timeout", str(CONNECT_TIMEOUT_SECONDS))
    return urlunsplit(parts._replace(query=urlencode(query)))


# libpq's words for failures no retry can fix -> the setting to correct. Checked in order;
# anything else (refused, timed out, dropped, server starting up or shutting down, too many
# connections, a host name that does not resolve now) is treated as transient.
_PERMANENT_CONNECT_FAILURES = (
    (r'invalid URI query parameter: "([^"]+)"', "option {0!r} is not a libpq connection option"),
    (r'invalid connection option "([^"]+)"', "option {0!r} is not a libpq connection option"),
    (r"invalid port number", "the port must be a number from 1 to 65535"),
    (r'invalid integer value "[^"]*" for connection option "(\w+)"', "option {0} must be a number"),
    (r'invalid (\w+) value: "([^"]*)"', "option {0}={1!r} is not a valid value"),
    (
        r"server does not support SSL, but SSL was required",
        "sslmode requires SSL, which the "
        "server does not offer: use sslmode=prefer or disable, or enable SSL on the server",
    ),
    (
        r"(?:could not (?:open|read|load)|no such file).*(?:certificate|key|crl)",
        "an SSL file (sslrootcert, sslcert, sslkey or sslcrl) cannot be read",
    ),
    (r"password authentication failed", "the password or user is wrong"),
    (r'database "[^"]*" does not exist', "the database does not exist"),
    (r'role "[^"]*" does not exist', "the user (role) does not exist"),
    (r"is not permitted to log in", "the role is not allowed to log in"),
    (r"permission denied for database", "the user lacks CONNECT on the database"),
    (r"no pg_hba.conf entry", "the server's pg_hba.conf does not admit this user, host or sslmode"),
)


def _libpq_reason(error: BaseException, secret: str | None) -> str:
    """libpq's own words (they name host and port, never the password), scrubbed anyway."""
    text = re.sub(r"^\w+: \[libpq\] ", "", str(error)).strip().splitlines()[0]
    for form in {secret, unquote(secret)} if secret else ():
        text = text.replace(form, "***")
    return text


def classify_connect_error(error: BaseException, dsn: str, section: str) -> Exception:
    """Turn a driver error into ours: permanent for configuration, else transient.

    The driver's exception is not chained on purpose: its text could carry the DSN. Called
    while the driver's error is being handled, so nothing here may raise (an exception raised
    here would chain that error implicitly): a DSN libpq could never use is returned too.
    """
    try:
        endpoint = endpoint_of(dsn, section)
    except PostgresConfigurationError as unusable:
        unusable.__context__ = None
        return unusable
    reason = _libpq_reason(error, urlsplit(dsn).password)
    for pattern, what in _PERMANENT_CONNECT_FAILURES:
        match = re.search(pattern, reason, re.IGNORECASE)
        if match:
            return PostgresConfigurationError(
                f"{credentials_setting(section)}: {what.format(*match.groups())}; fix the DSN "
                f"({DSN_SHAPE}?option=value). Connecting to {endpoint}: {reason}"
            )
    return PostgresUnavailableError(f"{endpoint} is unreachable: {reason}")


@contextmanager
def connect(dsn: str, section: str) -> Iterator[Any]:
    """An ADBC connection; failures become Transient/Permanent source errors without secrets."""
    import adbc_driver_manager
    import adbc_driver_postgresql.dbapi as adbc_pg

    endpoint_of(dsn, section)  # a DSN libpq could never use fails here, before the driver sees it
    failure: Exception | None = None
    try:
        connection = adbc_pg.connect(_with_connect_timeout(dsn))
    except adbc_driver_manager.Error as error:
        failure = classify_connect_error(error, dsn, section)
    if failure is not None:
        # raised outside the except block, and with no cause or context: the driver's text
        # (which may quote the whole DSN) is never chained, with or without --debug
        raise failure.with_traceback(None) from None
    try:
        yield connection
    finally:
        connection.close()


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def fetch_all(connection: Any, sql: str, endpoint: Endpoint) -> list[tuple[Any, ...]]:
    """A small query's rows (catalog look-ups, session settings), errors classified like COPY's."""
    import adbc_driver_manager

    failure: BaseException | None = None
    with connection.cursor() as cursor:
        try:
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else []
        except adbc_driver_manager.Error as error:
            failure = _classify_query_error(error, endpoint)
    raise failure


def table_columns_sql(schema: str, table: str) -> str:
    """The table's column names, in table order (one per row)."""
    return (
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_schema = {quote_literal(schema)} "
        f"AND table_name = {quote_literal(table)} ORDER BY ordinal_position"
    )


# Cursor column types the source can compare on, by `pg_type.typname` of the base type.
CURSOR_TYPES = ("timestamp", "timestamptz", "date", "int2", "int4", "int8", "numeric")


def cursor_literal(value: Any, base_type: str) -> str:
    """The cursor value as a SQL literal of the cursor column's own type.

    Bound parameters would make the driver fall back from COPY to a slower path, so the cursor
    goes into the SQL text; it is a value dlt's state holds (a datetime, date or number we format
    ourselves), never user text.

    - `timestamp` (no zone) holds UTC wall-clock time in the application: the UTC wall clock;
    - `timestamptz`: the instant with its offset, `+00:00`, so the comparison is right whatever
      the session's TimeZone (a zone-less literal would be read in the session's zone);
    - `date` and numbers: as they are.
    """
    if base_type == "timestamptz":
        return "'" + _utc(value).strftime("%Y-%m-%d %H:%M:%S.%f") + "+00:00'::timestamptz"
    if base_type == "timestamp":
        return "'" + _utc(value).strftime("%Y-%m-%d %H:%M:%S.%f") + "'::timestamp"
    if base_type == "date":
        day = value.date() if isinstance(value, datetime) else value
        return f"'{day.isoformat()}'::date"
    if base_type in CURSOR_TYPES and isinstance(value, (int, float, Decimal)):
        return repr(int(value)) if isinstance(value, int) else str(Decimal(str(value)))
    raise TypeError(f"cannot compare a {base_type} cursor with {value!r}")


def _utc(value: datetime) -> datetime:
    """A naive UTC datetime (an aware one converted; a naive one is UTC already)."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def stream_batches(connection: Any, query: str, endpoint: Endpoint) -> Iterator[pa.RecordBatch]:
    """Yield the query's Arrow record batches, decoding ahead on a thread.

    The thread overlaps PostgreSQL's COPY decoding (C, releases the GIL) with whatever the
    consumer does (dlt writing parquet), which is most of the extract time for big loads.
    """

    handoff: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH_BATCHES)
    done = object()
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute(query)
                reader = cursor.fetch_record_batch()
                for batch in reader:
                    if not put(batch):
                        return
            put(done)
        except BaseException as error:  # handed to the consumer thread
            put(error)

    worker = threading.Thread(target=produce, name="postgres-adbc-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                failure = _classify_query_error(item, endpoint)
                raise failure
            yield item
    finally:
        stop.set()
        worker.join(timeout=30)


def _classify_query_error(error: BaseException, endpoint: Endpoint) -> BaseException:
    import adbc_driver_manager

    if isinstance(error, OSError) and "[libpq]" in str(error):
        # Failures while the rows stream (the session ended: server shutdown, admin kill,
        # network drop) surface through Arrow's stream reader as OSError, without a SQLSTATE.
        first_line = str(error).strip().splitlines()[0]
        return PostgresUnavailableError(f"{endpoint}: reading rows failed: {first_line}")
    if not isinstance(error, adbc_driver_manager.Error):
        return error
    sqlstate = getattr(error, "sqlstate", None) or ""
    first_line = str(error).strip().splitlines()[0]
    # SQLSTATE class 42: syntax/access rule violations (missing table or column, privileges)
    if sqlstate.startswith("42"):
        return PostgresConfigurationError(f"{endpoint}: {first_line} (SQLSTATE {sqlstate})")
    return PostgresUnavailableError(f"{endpoint}: query failed: {first_line}")

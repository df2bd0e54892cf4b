"""PostgreSQL column types through the products pipeline into DuckDB, compared with the source.

Every supported type is loaded twice: as a column present at the first (full) load, and as a
column added to an already-loaded table and picked up by an incremental run. Each value that
lands is sent back to PostgreSQL and compared there with the source row (`IS NOT DISTINCT FROM`
on the source's own type), and where the warehouse form is a rendering of ours (text, JSON,
decimal scale) the exact warehouse value is checked too. The type table in docs/products.md is
checked against what the loads produced (dlt type, DuckDB type) and dlt's Snowflake type mapper.
"""

# Fixtures are imported from tests.fixtures.postgres and requested by name (F811).
# ruff: noqa: F811

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from local_runtime.warehouse import warehouse_path
from pipelines.errors import exception_chain, is_permanent, root_cause_message
from pipelines.products import cursor_value
from sources.products import ColumnValueError, UnsupportedColumnTypeError
from tests.fixtures.postgres import (  # noqa: F401
    ProductsDatabase,
    postgres_cluster,
    products_database,
    seeded_source,
)
from tests.fixtures.postgres import local_products_pipeline as make_products_pipeline
from tests.fixtures.postgres import run_products as run

DOCS = Path(__file__).resolve().parents[1] / "docs" / "products.md"
SEED_ROWS = 20
FIRST_TEST_ID = 100_000  # audit ids of the rows carrying the typed values
NON_UTC_ZONE = "Asia/Kathmandu"  # +05:45: the source session is not UTC


@dataclass(frozen=True)
class TypeCase:
    column: str
    declared: str  # the PostgreSQL type as written in the DDL (and in the docs table)
    literals: tuple[str, ...]  # SQL literals, one per row; every column also gets a NULL row
    compare: str = "{}"  # how the source column and the landed value are compared in PostgreSQL
    compare_landed: str | None = None  # the landed value's side, when not `compare` of the type
    expected: tuple[Any, ...] | None = None  # exact warehouse values, where the form is ours
    docs_label: str | None = None  # the docs table's row name when it differs from `declared`
    extra_ddl: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        return self.docs_label or self.declared


CASES = (
    TypeCase("c_smallint", "smallint", ("-32768", "32767", "0")),
    TypeCase("c_integer", "integer", ("-2147483648", "2147483647")),
    TypeCase("c_bigint", "bigint", ("-9223372036854775808", "9223372036854775807")),
    TypeCase(
        "c_numeric_38_10",
        "numeric(38,10)",
        ("9999999999999999999999999999.9999999999", "-0.0000000001", "0", "-12.5"),
        expected=(
            Decimal("9999999999999999999999999999.9999999999"),
            Decimal("-0.0000000001"),
            Decimal("0E-10"),
            Decimal("-12.5000000000"),
        ),
    ),
    TypeCase("c_numeric_12_2", "numeric(12,2)", ("9999999999.99", "-0.01", "19.90")),
    TypeCase(
        "c_numeric",
        "numeric",
        ("123456789012345678901234567.123456789", "-0.000000001", "42"),
        docs_label="numeric (no precision)",
    ),
    TypeCase(
        "c_numeric_wide",
        "numeric(50,5)",
        ("123456789012345678901234567890123456789012345.12345", "-1"),
        compare="{}::numeric",
        expected=("123456789012345678901234567890123456789012345.12345", "-1.00000"),
        docs_label="numeric(p,s), p > 38",
    ),
    TypeCase(
        "c_real",
        "real",
        ("3.4028235e38", "1.1", "-1.17549435e-38", "'NaN'", "'-Infinity'"),
        compare="{}::float8",
        compare_landed="%s::float8",  # the landed double must be the float4 widened, exactly
    ),
    TypeCase(
        "c_double",
        "double precision",
        ("1.7976931348623157e308", "5e-324", "0.1", "'NaN'", "'Infinity'"),
    ),
    TypeCase("c_text", "text", ("'héllo wörld ✓ 😀'", "''", "E'line\\nbreak \"q\" ''s'''")),
    TypeCase("c_varchar", "varchar(10)", ("'ünïcödé'", "'abc'")),
    TypeCase("c_char", "char(3)", ("'ab'", "'xyz'"), expected=("ab ", "xyz")),
    TypeCase("c_boolean", "boolean", ("true", "false")),
    TypeCase("c_date", "date", ("'0001-01-01'", "'9999-12-31'", "'2024-02-29'")),
    TypeCase("c_time", "time", ("'00:00:00'", "'23:59:59.999999'", "'12:34:56.789'")),
    TypeCase(
        "c_timestamp",
        "timestamp",
        ("'2024-02-29 23:59:59.999999'", "'1970-01-01 00:00:00'", "'1900-01-01 12:00:00'"),
        expected=(
            datetime(2024, 2, 29, 23, 59, 59, 999999),
            datetime(1970, 1, 1),
            datetime(1900, 1, 1, 12),
        ),
    ),
    TypeCase(
        "c_timestamptz",
        "timestamptz",
        ("'2024-01-02 03:04:05.123456+02'", "'2024-06-30 23:59:59'", "'1970-01-01 00:00:00+00'"),
        expected=(
            datetime(2024, 1, 2, 1, 4, 5, 123456, tzinfo=UTC),
            datetime(2024, 6, 30, 18, 14, 59, tzinfo=UTC),  # written in the +05:45 session
            datetime(1970, 1, 1, tzinfo=UTC),
        ),
    ),
    TypeCase(
        "c_interval",
        "interval",
        (
            "'-1 year 2 mons -3 days 04:05:06.7'",
            "'0'",
            "'-0.000001 seconds'",
            "'1 day -1 second'",
            "'1 mon'",
        ),
        compare="{}::text",  # interval '=' treats 1 mon as 30 days: compare PostgreSQL's text
        expected=("P-10M-3DT4H5M6.7S", "PT0S", "PT-0.000001S", "P1DT-1S", "P1M"),
    ),
    TypeCase(
        "c_uuid",
        "uuid",
        ("'00000000-0000-0000-0000-000000000000'", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'"),
        expected=(
            "00000000-0000-0000-0000-000000000000",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ),
    ),
    TypeCase(
        "c_json",
        "json",
        ('\'{"ü": "✓", "n": 1.50}\'', "'[]'", "'null'"),
        compare="{}::jsonb",
        expected=('{"ü": "✓", "n": 1.50}', "[]", "null"),
    ),
    TypeCase(
        "c_jsonb",
        "jsonb",
        ('\'{"b": [1, 2, {"c": null}]}\'', "'\"text\"'", "'12.5000'"),
        expected=('{"b": [1, 2, {"c": null}]}', '"text"', "12.5000"),
    ),
    TypeCase(
        "c_int_array",
        "integer[]",
        ("'{1,NULL,3}'", "'{}'", "'{{1,2},{3,4}}'"),
        compare="to_jsonb({})",
        expected=("[1,null,3]", "[]", "[[1,2],[3,4]]"),
        docs_label="arrays (e.g. integer[], text[])",
    ),
    TypeCase(
        "c_text_array",
        "text[]",
        ('\'{"a","b,c","ü"}\'',),
        compare="to_jsonb({})",
        expected=('["a","b,c","ü"]',),
        docs_label="arrays (e.g. integer[], text[])",
    ),
    TypeCase(
        "c_inet",
        "inet",
        ("'192.168.0.1/24'", "'::1'", "'10.0.0.1'"),
        expected=("192.168.0.1/24", "::1/128", "10.0.0.1/32"),  # always with the netmask
    ),
    TypeCase(
        "c_cidr",
        "cidr",
        ("'10.0.0.0/8'", "'2001:db8::/32'"),
        expected=("10.0.0.0/8", "2001:db8::/32"),
    ),
    TypeCase("c_macaddr", "macaddr", ("'08:00:2B:01:02:03'",), expected=("08:00:2b:01:02:03",)),
    TypeCase(
        "c_macaddr8",
        "macaddr8",
        ("'08:00:2b:01:02:03:04:05'",),
        expected=("08:00:2b:01:02:03:04:05",),
    ),
    TypeCase(
        "c_timetz",
        "timetz",
        ("'12:00+02'", "'23:59:59.999999-05:45'"),
        expected=("12:00:00+02", "23:59:59.999999-05:45"),
    ),
    TypeCase(
        "c_xml",
        "xml",
        ("'<a b=\"1\">ü &amp; ✓</a>'",),
        compare="{}::text",  # xml has no equality operator
        expected=('<a b="1">ü &amp; ✓</a>',),
    ),
    TypeCase(
        "c_domain",
        "price_domain",
        ("19.90", "0.01"),
        expected=(Decimal("19.90"), Decimal("0.01")),
        docs_label="domain (here over numeric(10,2))",
        extra_ddl=("CREATE DOMAIN price_domain AS numeric(10,2) CHECK (VALUE > 0)",),
    ),
    TypeCase("c_bytea", "bytea", ("'\\x00ff10'::bytea", "''::bytea")),
    TypeCase(
        "c_enum",
        "mood",
        ("'happy'", "'sad'"),
        docs_label="enum",
        extra_ddl=("CREATE TYPE mood AS ENUM ('sad', 'happy')",),
    ),
    TypeCase(
        "c_money",
        "money",
        ("'92233720368547758.07'", "'-92233720368547758.08'", "'0.01'"),
        compare="{}::numeric",
        expected=(
            Decimal("92233720368547758.07"),
            Decimal("-92233720368547758.08"),
            Decimal("0.01"),
        ),
    ),
)
ROWS = max(len(case.literals) for case in CASES) + 1  # the last row holds NULL everywhere


def source_execute(dsn: str, sql: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


def add_typed_columns_and_rows(dsn: str, database: str) -> list[int]:
    """Add one column per case and ROWS audit rows after the current cursor; their ids."""
    source_execute(dsn, f"ALTER DATABASE \"{database}\" SET timezone TO '{NON_UTC_ZONE}'")
    for ddl in dict.fromkeys(d for case in CASES for d in case.extra_ddl):
        source_execute(dsn, ddl)
    columns = ", ".join(f"ADD COLUMN {case.column} {case.declared}" for case in CASES)
    source_execute(dsn, f"ALTER TABLE raw_data.products {columns}")
    ids = [FIRST_TEST_ID + row for row in range(ROWS)]
    names = ", ".join(case.column for case in CASES)
    for row, audit_id in enumerate(ids):
        values = ", ".join(
            case.literals[row] if row < len(case.literals) else "NULL" for case in CASES
        )
        source_execute(
            dsn,
            f"INSERT INTO raw_data.products (audit_id, product_id, product_name, price_usd, "
            f"operation, valid_ts, {names}) SELECT {audit_id}, 1, 'typed', 1.0, 'UPDATE', "
            f"max(valid_ts) + interval '1 second', {values} FROM raw_data.products",
        )
    return ids


def warehouse(sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse_path("DLT")), read_only=True) as conn:
        return conn.sql(sql).fetchall()


def assert_values_round_trip(dsn: str, ids: list[int]) -> None:
    names = ", ".join(case.column for case in CASES)
    landed = {
        row[0]: row[1:]
        for row in warehouse(
            f"SELECT audit_id, {names} FROM application_data.products "
            f"WHERE audit_id >= {FIRST_TEST_ID} ORDER BY audit_id"
        )
    }
    assert sorted(landed) == ids
    mismatches = []
    with psycopg.connect(dsn) as conn:
        for index, case in enumerate(CASES):
            column_sql = case.compare.format(case.column)
            landed_sql = case.compare_landed or case.compare.format("%s::" + case.declared)
            for row, audit_id in enumerate(ids):
                value = landed[audit_id][index]
                if row >= len(case.literals):
                    if value is not None:
                        mismatches.append((case.column, audit_id, "NULL became", value))
                    continue
                if case.expected is not None and value != case.expected[row]:
                    mismatches.append((case.column, audit_id, value, "!=", case.expected[row]))
                same = conn.execute(
                    f"SELECT {column_sql} IS NOT DISTINCT FROM "
                    f"(SELECT {landed_sql}) "
                    "FROM raw_data.products WHERE audit_id = %s",
                    (_as_source_literal(case, value), audit_id),
                ).fetchone()[0]
                if not same:
                    mismatches.append((case.column, audit_id, "differs in PostgreSQL", value))
    assert mismatches == []


def _as_source_literal(case: TypeCase, value: Any) -> Any:
    """The landed value in a form PostgreSQL parses back as the source type."""
    if case.declared.endswith("[]"):
        # JSON arrays back to PostgreSQL array text, via PostgreSQL's own JSON functions
        return _json_array_to_pg(value)
    if case.declared == "money":
        return str(value)
    return value


def _json_array_to_pg(text: str) -> str:
    import json

    def render(item: Any) -> str:
        if isinstance(item, list):
            return "{" + ",".join(render(i) for i in item) + "}"
        if item is None:
            return "NULL"
        return '"' + str(item).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return render(json.loads(text))


def warehouse_types() -> dict[str, str]:
    return dict(
        warehouse(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'application_data' AND table_name = 'products'"
        )
    )


def type_rows() -> dict[str, tuple[str, str, str]]:
    """Docs-table rows as loaded: source label -> (dlt type, DuckDB type, Snowflake type)."""
    from dlt.destinations import snowflake

    # production builds its destination with dlt's defaults (pipelines/environment.py)
    snowflake_mapper = snowflake().capabilities().get_type_mapper()
    schema = make_products_pipeline().default_schema
    columns = schema.get_table_columns("products")
    table = schema.get_table("products")
    duckdb_types = warehouse_types()
    rows: dict[str, tuple[str, str, str]] = {}
    for case in CASES:
        column = columns[case.column]
        dlt_type = column["data_type"]
        details = [
            f"{key}={column[key]}" for key in ("precision", "scale", "timezone") if key in column
        ]
        if details:
            dlt_type += f" ({', '.join(details)})"
        snowflake_type = snowflake_mapper.to_destination_type(column, table)
        row = (dlt_type, duckdb_types[case.column], snowflake_type)
        assert rows.setdefault(case.label, row) == row, case.label
    return rows


def documented_type_rows() -> dict[str, tuple[str, str, str]]:
    text = DOCS.read_text()
    section = text.split("## Column types", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0] and not set(cells[0]) <= {"-"} and cells[0] != "source":
            assert cells[0] not in rows, f"{cells[0]} is listed twice"
            rows[cells[0]] = (cells[1], cells[2], cells[3])
    return rows


@pytest.fixture
def typed_source(
    products_database: ProductsDatabase, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> ProductsDatabase:
    return seeded_source(products_database, monkeypatch, SEED_ROWS, lookback=None)


def test_every_type_round_trips_on_the_first_load(typed_source: ProductsDatabase) -> None:
    ids = add_typed_columns_and_rows(typed_source.dsn, typed_source.name)
    run()
    assert_values_round_trip(typed_source.dsn, ids)
    assert type_rows() == documented_type_rows()


def test_every_type_added_later_round_trips_incrementally(typed_source: ProductsDatabase) -> None:
    run()
    first_cursor = cursor_value(make_products_pipeline())
    ids = add_typed_columns_and_rows(typed_source.dsn, typed_source.name)
    run()
    assert cursor_value(make_products_pipeline()) > first_cursor
    assert_values_round_trip(typed_source.dsn, ids)
    # rows loaded before the columns existed hold NULL in them
    old = warehouse(
        f"SELECT count(*), count(c_uuid), count(c_numeric_38_10) FROM application_data.products "
        f"WHERE audit_id < {FIRST_TEST_ID}"
    )
    assert old == [(SEED_ROWS, 0, 0)]
    assert type_rows() == documented_type_rows()
    run()  # the next run re-reads the lookback window: same values, contract holds
    assert_values_round_trip(typed_source.dsn, ids)


def run_failing_on_added_column(dsn: str, declared: str, literal: str) -> BaseException:
    """Add column `added` (`declared`) and one audit row holding `literal`; run; the failure."""
    source_execute(dsn, f"ALTER TABLE raw_data.products ADD COLUMN added {declared}")
    source_execute(
        dsn,
        "INSERT INTO raw_data.products (audit_id, valid_ts, added) SELECT 900001, "
        f"max(valid_ts) + interval '1 second', {literal} FROM raw_data.products",
    )
    with pytest.raises(Exception) as failure:
        run()
    assert is_permanent(failure.value)  # the flows' retry policy: not retried
    return failure.value


def _ours(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    return next((e for e in exception_chain(error) if isinstance(e, kind)), None)


@pytest.mark.parametrize(
    ("declared", "literal"),
    [
        ("point", "'(1,2)'"),
        ("tsrange", "'[2024-01-01,2024-01-02)'"),
        ("tsvector", "'a fat cat'"),
        ("bit(4)", "B'1010'"),
    ],
)
def test_unknown_type_fails_permanently_naming_column_and_type(
    typed_source: ProductsDatabase, declared: str, literal: str
) -> None:
    run()
    before = warehouse("SELECT * FROM application_data.products ORDER BY audit_id")
    cursor_before = cursor_value(make_products_pipeline())
    error = run_failing_on_added_column(typed_source.dsn, declared, literal)
    assert isinstance(_ours(error, UnsupportedColumnTypeError), UnsupportedColumnTypeError)
    message = root_cause_message(error)
    assert "'added'" in message and declared in message, message
    assert warehouse("SELECT * FROM application_data.products ORDER BY audit_id") == before
    assert cursor_value(make_products_pipeline()) == cursor_before


@pytest.mark.parametrize(
    ("declared", "literal", "reason"),
    [
        ("numeric(12,2)", "'NaN'", "NaN"),
        ("numeric", "0.000000000001", "data loss"),  # 12 decimals: no silent rounding to 9
        ("numeric", "'Infinity'", "inf"),
        # the driver turns +/-infinity into wrapped-around garbage: refused, never loaded
        ("timestamp", "'infinity'", "infinity"),
        ("timestamptz", "'-infinity'", "infinity"),
        ("date", "'infinity'", "infinity"),
    ],
)
def test_value_the_warehouse_type_cannot_hold_fails_permanently(
    typed_source: ProductsDatabase, declared: str, literal: str, reason: str
) -> None:
    run()
    cursor_before = cursor_value(make_products_pipeline())
    error = run_failing_on_added_column(typed_source.dsn, declared, literal)
    assert isinstance(_ours(error, ColumnValueError), ColumnValueError)
    message = root_cause_message(error)
    assert "'added'" in message and reason in message, message
    assert warehouse("SELECT count(*) FROM application_data.products") == [(SEED_ROWS,)]
    assert cursor_value(make_products_pipeline()) == cursor_before


def test_docs_table_lists_each_type_once() -> None:
    documented = documented_type_rows()
    assert set(documented) == {case.label for case in CASES}


def test_hints_follow_columns_whose_names_dlt_normalises(typed_source: ProductsDatabase) -> None:
    # The plan's hints are keyed by PostgreSQL names; dlt snake-cases the warehouse names.
    source_execute(
        typed_source.dsn,
        'ALTER TABLE raw_data.products ADD COLUMN "Meta Data" jsonb, '
        'ADD COLUMN "Created At" timestamp',
    )
    source_execute(
        typed_source.dsn,
        'UPDATE raw_data.products SET "Meta Data" = \'{"a": 1}\', '
        "\"Created At\" = '2024-01-01 10:00'",
    )
    run()
    types = warehouse_types()
    assert (types["meta_data"], types["created_at"]) == ("JSON", "TIMESTAMP")
    assert warehouse("SELECT DISTINCT meta_data FROM application_data.products") == [('{"a": 1}',)]

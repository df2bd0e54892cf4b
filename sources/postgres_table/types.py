"""PostgreSQL column types -> faithful warehouse columns, planned once per run from the catalog.

ADBC decodes most types straight into Arrow types dlt understands (integers, floats, text,
bool, date, time, timestamp[tz], bytea). The rest arrive as Arrow extension types dlt refuses
(`arrow.uuid`, `arrow.json`, `arrow.opaque`) or with a meaning Arrow does not carry (money as
an integer count of cents). Each source column gets one plan, from `pg_catalog`:

- a SELECT expression: PostgreSQL renders to text what only it can render faithfully
  (uuid, inet/cidr/macaddr, interval in ISO-8601, timetz, xml) and arrays as JSON (`to_json`);
  this runs in the server's C code inside the COPY, so rows never become Python objects;
- an Arrow conversion per batch (pyarrow casts, vectorised): numeric text -> decimal128(p, s),
  money cents -> decimal128(19, frac_digits), JSON extension -> its text storage;
- a dlt column hint where Arrow alone would infer the wrong dlt type (JSON text -> `json`).

A type not in this table fails the run before any row is read, permanently, naming the column
and its type: loading it as something we have not checked could corrupt it silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sources.errors import PermanentSourceError
from sources.postgres_table.postgres import Endpoint, fetch_all, quote_identifier, quote_literal

# PostgreSQL numeric(p, s) fits an exact warehouse decimal up to 38 digits (DuckDB DECIMAL,
# Snowflake NUMBER). An unconstrained `numeric` gets dlt's default decimal, (38, 9).
MAX_DECIMAL_PRECISION = 38
UNCONSTRAINED_NUMERIC = (38, 9)
# money is an int64 count of the smallest currency unit: at most 19 digits.
MONEY_PRECISION = 19

# ADBC's Arrow types already match these: the column passes through untouched.
PASS_THROUGH = frozenset(
    {
        "int2",
        "int4",
        "int8",
        "float4",
        "float8",
        "text",
        "varchar",
        "bpchar",
        "bool",
        "time",
        "bytea",
    }
)
# PostgreSQL's own text output is the faithful form (no warehouse type holds these natively
# in both DuckDB and Snowflake); intervals print as ISO-8601 (see SESSION_SETTINGS).
AS_TEXT = frozenset({"uuid", "inet", "cidr", "macaddr", "macaddr8", "interval", "timetz", "xml"})
AS_JSON = frozenset({"json", "jsonb"})

# Set on the extraction session: how interval text is written (`P1Y2M3DT4H5M6S`), a standard
# every warehouse and language parses, unlike PostgreSQL's default `1 year 2 mons ...`.
SESSION_SETTINGS = ("SET intervalstyle = 'iso_8601'",)

CATALOG_QUERY = """
SELECT a.attname,
       format_type(a.atttypid, a.atttypmod),
       base.typname,
       base.typtype,
       base.typcategory,
       base_ns.nspname,
       CASE WHEN declared.typtype = 'd' THEN declared.typtypmod ELSE a.atttypmod END
FROM pg_attribute a
JOIN pg_type declared ON declared.oid = a.atttypid
JOIN pg_type base
  ON base.oid = CASE WHEN declared.typtype = 'd' THEN declared.typbasetype ELSE declared.oid END
JOIN pg_namespace base_ns ON base_ns.oid = base.typnamespace
WHERE a.attrelid = to_regclass({relation}) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
MONEY_SCALE_QUERY = "SELECT scale('0'::money::numeric)"


class UnsupportedColumnTypeError(PermanentSourceError):
    """A source column has a PostgreSQL type this source does not map: fix the source side."""


class ColumnValueError(PermanentSourceError):
    """A value cannot be held exactly by its warehouse type (e.g. numeric NaN): no retry helps."""


Converter = Callable[[pa.Array], pa.Array]


@dataclass(frozen=True)
class SourceColumn:
    """One column as `pg_catalog` describes it (domains resolved to their base type)."""

    name: str
    declared_type: str  # format_type(): what the user wrote, e.g. numeric(12,2), mood, uuid
    base_type: str  # pg_type.typname of the (domain's) base type, e.g. numeric, _int4
    kind: str  # pg_type.typtype: b base, e enum, c composite, r range, ...
    category: str  # pg_type.typcategory: A array, ...
    base_schema: str
    typmod: int


@dataclass(frozen=True)
class ColumnPlan:
    select: str  # the expression in the SELECT list
    convert: Converter | None = None  # per-batch Arrow conversion
    hints: dict[str, Any] = field(default_factory=dict)  # dlt column hints


def numeric_precision_scale(typmod: int) -> tuple[int, int] | None:
    """(precision, scale) of `numeric(p, s)` from its typmod; None when unconstrained."""
    if typmod < 4:
        return None
    packed = typmod - 4
    scale = ((packed & 0x7FF) ^ 1024) - 1024  # PostgreSQL 15 allows a negative scale
    return (packed >> 16) & 0xFFFF, scale


def _storage(array: pa.Array) -> pa.Array:
    """The plain Arrow array under an extension type (JSON text, numeric text)."""
    return array.storage if isinstance(array, pa.ExtensionArray) else array


def _to_decimal(column: SourceColumn, precision: int, scale: int) -> Converter:
    target = pa.decimal128(precision, scale)

    def convert(array: pa.Array) -> pa.Array:
        try:
            # Arrow's string -> decimal cast is exact: it refuses rounding and overflow.
            return _storage(array).cast(target)
        except pa.ArrowInvalid as error:
            raise ColumnValueError(
                f"Column {column.name!r} ({column.declared_type}) holds a value that "
                f"DECIMAL({precision},{scale}) cannot hold exactly ({error}). Fix the value in "
                "PostgreSQL (NaN and Infinity have no warehouse decimal), or declare the "
                f"column numeric(p,s) with p <= {MAX_DECIMAL_PRECISION} so its scale is known."
            ) from None

    return convert


def _money(scale: int) -> Converter:
    # The int64 is already the unscaled decimal: widen, then re-read it with lc_monetary's scale.
    wide, target = pa.decimal128(MONEY_PRECISION, 0), pa.decimal128(MONEY_PRECISION, scale)
    return lambda array: array.cast(wide).view(target)


# PostgreSQL's +/-infinity are the int64 (timestamps, microseconds since 2000) and int32 (dates,
# days since 2000) extremes; ADBC shifts them to 1970 and wraps around, so they arrive as these
# values, each below anything a real PostgreSQL date or timestamp (>= 4713 BC) can become.
_WRAPPED_INFINITY = {
    "timestamp": (pa.int64(), -(2**63) + 946_684_800_000_000),  # -infinity; +infinity is one less
    "date": (pa.int32(), -(2**31) + 10_957),
}


def _refuse_infinity(column: SourceColumn, kind: str, section: str) -> Converter:
    integer_type, highest_sentinel = _WRAPPED_INFINITY[kind]

    def check(array: pa.Array) -> pa.Array:
        lowest = pc.min(array.cast(integer_type)).as_py()  # one vectorised pass, no copy kept
        if lowest is not None and lowest <= highest_sentinel:
            raise ColumnValueError(
                f"Column {column.name!r} ({column.declared_type}) holds 'infinity' or "
                f"'-infinity', which no warehouse {kind} holds (Snowflake has none), so nothing "
                f"was loaded. Replace it in PostgreSQL, or point [sources.{section}] table_name "
                "at a view that maps it to NULL or to a far date."
            )
        return array

    return check


def plan_column(column: SourceColumn, money_scale: int | None, section: str) -> ColumnPlan:
    """How to select, convert and hint one column; raises for a type we have not mapped."""
    name = quote_identifier(column.name)
    builtin = column.base_schema == "pg_catalog"
    if column.category == "A":
        return ColumnPlan(f"to_json({name}) AS {name}", _storage, {"data_type": "json"})
    if column.kind == "e":  # enum labels arrive as text
        return ColumnPlan(name)
    if builtin and column.base_type == "timestamp":
        # dlt drops Arrow's "no zone" and would load it as zone-aware; keep it a plain
        # TIMESTAMP (the cursor column alone is declared UTC, by the source's own hints).
        hints = {"data_type": "timestamp", "timezone": False}
        return ColumnPlan(name, _refuse_infinity(column, "timestamp", section), hints)
    if builtin and column.base_type == "timestamptz":
        return ColumnPlan(name, _refuse_infinity(column, "timestamp", section))
    if builtin and column.base_type == "date":
        return ColumnPlan(name, _refuse_infinity(column, "date", section))
    if builtin and column.base_type in PASS_THROUGH:
        return ColumnPlan(name)
    if builtin and column.base_type in AS_TEXT:
        return ColumnPlan(f"{name}::text AS {name}")
    if builtin and column.base_type in AS_JSON:
        return ColumnPlan(name, _storage, {"data_type": "json"})
    if builtin and column.base_type == "money" and money_scale is not None:
        return ColumnPlan(name, _money(money_scale))
    if builtin and column.base_type == "numeric":
        precision, scale = numeric_precision_scale(column.typmod) or UNCONSTRAINED_NUMERIC
        if 0 <= scale <= precision <= MAX_DECIMAL_PRECISION:
            return ColumnPlan(name, _to_decimal(column, precision, scale))
        # wider than any warehouse decimal, or a negative scale: the exact digits as text
        return ColumnPlan(name, _storage)
    raise unsupported_type(column.name, column.declared_type, section)


def unsupported_type(
    name: str, declared_type: str, section: str, read_as: str = ""
) -> UnsupportedColumnTypeError:
    return UnsupportedColumnTypeError(
        f"Column {name!r} has PostgreSQL type {declared_type}{read_as}, which the {section} "
        "source does not map to a warehouse type, so nothing was loaded. Select it cast to a "
        f"supported type in a view and point [sources.{section}] table_name at the view, or add "
        "a mapping in sources/postgres_table/types.py (supported types: docs/products.md)."
    )


@dataclass(frozen=True)
class TablePlan:
    """The SELECT list, per-batch conversions and dlt hints for one source table."""

    columns: tuple[SourceColumn, ...]
    plans: tuple[ColumnPlan, ...]

    @property
    def select_list(self) -> str:
        return ", ".join(plan.select for plan in self.plans)

    @property
    def column_hints(self) -> dict[str, dict[str, Any]]:
        return {c.name: p.hints for c, p in zip(self.columns, self.plans, strict=True) if p.hints}

    def convert(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Apply the Arrow conversions (a no-op, no copy, for tables that need none)."""
        conversions = [(i, p.convert) for i, p in enumerate(self.plans) if p.convert is not None]
        if not conversions:
            return batch
        arrays = list(batch.columns)
        for index, convert in conversions:
            arrays[index] = convert(arrays[index])
        return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def check_loadable(schema: pa.Schema, columns: tuple[SourceColumn, ...], section: str) -> None:
    """Refuse, permanently, any Arrow type dlt cannot load (a driver change, an unmapped case)."""
    from dlt.common.libs.pyarrow import UnsupportedArrowTypeException, get_column_type_from_py_arrow

    declared = {c.name: c.declared_type for c in columns}
    for arrow_field in schema:
        try:
            get_column_type_from_py_arrow(arrow_field.type)
        except UnsupportedArrowTypeException:
            raise unsupported_type(
                arrow_field.name,
                declared.get(arrow_field.name, "?"),
                section,
                f" (read as Arrow {arrow_field.type}, which dlt cannot load)",
            ) from None


def read_table_plan(
    connection: Any, relation: str, endpoint: Endpoint, section: str
) -> TablePlan | None:
    """The plan for `relation` (a quoted, qualified name); None when it does not exist.

    Also applies SESSION_SETTINGS to the connection: the plan's SELECT expressions rely on them.
    """
    literal = quote_literal(relation)
    if not fetch_all(connection, f"SELECT to_regclass({literal}) IS NOT NULL", endpoint)[0][0]:
        return None
    for setting in SESSION_SETTINGS:
        fetch_all(connection, setting, endpoint)
    rows = fetch_all(connection, CATALOG_QUERY.format(relation=literal), endpoint)
    columns = tuple(SourceColumn(*row) for row in rows)
    money_scale = None
    if any(c.base_type == "money" and c.base_schema == "pg_catalog" for c in columns):
        # lc_monetary of this very session decides how many of the cents digits are decimals
        money_scale = int(fetch_all(connection, MONEY_SCALE_QUERY, endpoint)[0][0])
    return TablePlan(
        columns, tuple(plan_column(column, money_scale, section) for column in columns)
    )

"""The application's `raw_data.products` audit log: schema, a deterministic generator, activity.

Rows are generated inside PostgreSQL (`generate_series` + seeded hashes), not in Python, so a
10-million-row benchmark table takes seconds to build and the same `(rows, seed)` always gives
the same table. The shape follows an audit log: every fourth audit row creates a product
(INSERT), the others UPDATE an existing product (new price, now and then a new name) or, about
one in twenty-five, DELETE it. `audit_id` grows with `valid_ts` (commit order); `valid_ts` is a
`timestamp` holding UTC wall-clock time, whole seconds, spread over `days` from `start`.

CLI:
    python -m dev_stack.products_data seed [--rows N] [--seed S] [--dsn DSN]
    python -m dev_stack.products_data simulate-day [--changes N] [--dsn DSN]
Without `--dsn` it uses `SOURCES__PRODUCTS__CREDENTIALS`, else the running local cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from typing import TypedDict

import psycopg
from psycopg import sql

DEFAULT_SCHEMA = "raw_data"
DEFAULT_TABLE = "products"
DEFAULT_START = datetime(2025, 1, 1)
DEFAULT_DAYS = 365
DEFAULT_SEED = 42

# Share of a simulated day's audit rows, by operation (the rest are UPDATEs).
INSERT_SHARE = 0.2
DELETE_SHARE = 0.08

_ADJECTIVES = [
    "Classic", "Compact", "Deluxe", "Eco", "Ergonomic", "Essential", "Heavy-Duty", "Lightweight",
    "Modern", "Portable", "Premium", "Pro", "Rugged", "Sleek", "Smart", "Vintage",
]  # fmt: skip
_MATERIALS = [
    "Aluminium", "Bamboo", "Canvas", "Ceramic", "Copper", "Cotton", "Glass", "Leather", "Linen",
    "Oak", "Plastic", "Rubber", "Silicone", "Steel", "Walnut", "Wool",
]  # fmt: skip
_NOUNS = [
    "Backpack", "Bottle", "Chair", "Clock", "Desk", "Headphones", "Kettle", "Keyboard", "Lamp",
    "Mug", "Notebook", "Pan", "Pillow", "Speaker", "Teapot", "Umbrella", "Wallet", "Watch",
]  # fmt: skip


def _array(words: list[str]) -> str:
    return "ARRAY[" + ", ".join("'" + w.replace("'", "''") + "'" for w in words) + "]"


# posmod(hash(value, salt), n): a deterministic draw in [0, n) per (value, seed, salt).
_DRAW = "mod(mod(hashint8extended(({value})::bigint, {salt}), {n}) + {n}, {n})"


def _draw(value: str, salt: int, n: str | int) -> str:
    return _DRAW.format(value=value, salt=salt, n=n)


def _name_sql(product: str, seed: int) -> str:
    return (
        f"({_array(_ADJECTIVES)})[1 + {_draw(product, seed * 8 + 1, len(_ADJECTIVES))}]"
        f" || ' ' || ({_array(_MATERIALS)})[1 + {_draw(product, seed * 8 + 2, len(_MATERIALS))}]"
        f" || ' ' || ({_array(_NOUNS)})[1 + {_draw(product, seed * 8 + 3, len(_NOUNS))}]"
    )


def _base_price_sql(product: str, seed: int) -> str:
    # $1.00 .. $499.99, fixed per product
    return f"(({_draw(product, seed * 8 + 4, 49900)} + 100) / 100.0)::float8"


def _event_values_sql(audit: str, product: str, operation: str, seed: int) -> tuple[str, str]:
    """product_name and price_usd of an audit row: UPDATEs move the price and sometimes rename."""
    base_name = _name_sql(product, seed)
    name = (
        f"CASE WHEN {operation} = 'UPDATE' AND {_draw(audit, seed * 8 + 5, 10)} = 0"
        f" THEN {base_name} || ' v' || (2 + {_draw(audit, seed * 8 + 6, 5)}) ELSE {base_name} END"
    )
    price = (
        f"CASE WHEN {operation} = 'UPDATE' THEN round(({_base_price_sql(product, seed)}"
        f" * (0.8 + {_draw(audit, seed * 8 + 7, 400)} / 1000.0))::numeric, 2)::float8"
        f" ELSE {_base_price_sql(product, seed)} END"
    )
    return name, price


def _table(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def create_table_sql(schema: str = DEFAULT_SCHEMA, table: str = DEFAULT_TABLE) -> sql.Composed:
    """The application's DDL (without keys, which `seed` adds after the bulk insert)."""
    return sql.SQL(
        "CREATE TABLE {table} (audit_id bigint NOT NULL, product_id bigint, product_name text,"
        " price_usd double precision, operation text, valid_ts timestamp)"
    ).format(table=_table(schema, table))


def table_exists(dsn: str, schema: str = DEFAULT_SCHEMA, table: str = DEFAULT_TABLE) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()
        return row is not None and row[0] is not None


def seed(
    dsn: str,
    rows: int,
    seed: int = DEFAULT_SEED,
    *,
    schema: str = DEFAULT_SCHEMA,
    table: str = DEFAULT_TABLE,
    start: datetime = DEFAULT_START,
    days: int = DEFAULT_DAYS,
) -> int:
    """(Re)create `schema.table` with `rows` deterministic audit rows; return the row count."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    span_seconds = days * 86400
    operation = (
        "CASE WHEN mod(i, 4) = 1 THEN 'INSERT'"
        f" WHEN {_draw('i', seed * 8, 100)} < 4 THEN 'DELETE' ELSE 'UPDATE' END"
    )
    # INSERT rows create product (i + 3) / 4; other rows touch a product created before them.
    earlier_product = _draw("i", seed * 8 + 9, "((i - 1) / 4 + 1)")
    product = f"CASE WHEN mod(i, 4) = 1 THEN (i + 3) / 4 ELSE 1 + {earlier_product} END"
    name, price = _event_values_sql("audit_id", "product_id", "operation", seed)
    target = _table(schema, table)
    insert = sql.SQL(
        "INSERT INTO {target} SELECT audit_id, product_id, " + name + ", " + price + ","
        " operation, valid_ts FROM ("
        "  SELECT i AS audit_id, " + product + " AS product_id, " + operation + " AS operation,"
        "  %(start)s::timestamp"
        "    + make_interval(secs => floor((i - 1) * %(step)s::float8)) AS valid_ts"
        "  FROM generate_series(1::bigint, %(rows)s::bigint) AS i"
        ") AS events"
    ).format(target=target)
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
        conn.execute(create_table_sql(schema, table))
        conn.execute(insert, {"start": start, "step": span_seconds / rows, "rows": rows})
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (audit_id)").format(target))
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {} (valid_ts)").format(
                sql.Identifier(f"{table}_valid_ts_idx"), target
            )
        )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(target))
    return rows


class Activity(TypedDict):
    """What one simulated day added to the audit log (JSON-ready counts)."""

    inserts: int
    updates: int
    deletes: int
    total: int
    first_audit_id: int
    last_audit_id: int


def simulate_day(
    dsn: str,
    changes: int | None = None,
    *,
    seed: int = DEFAULT_SEED,
    schema: str = DEFAULT_SCHEMA,
    table: str = DEFAULT_TABLE,
) -> Activity:
    """Append one day of application activity: new INSERT/UPDATE/DELETE audit rows.

    The day is the calendar day after the latest `valid_ts`; `changes` defaults to 1% of the
    table (at least 10). Deterministic for a given table state and seed.
    """
    target = _table(schema, table)
    with psycopg.connect(dsn) as conn:
        count, max_audit, max_product, max_ts = conn.execute(
            sql.SQL(
                "SELECT count(*), coalesce(max(audit_id), 0), coalesce(max(product_id), 0),"
                " max(valid_ts) FROM {}"
            ).format(target)
        ).fetchone()
        total = changes if changes is not None else max(10, count // 100)
        inserts = max(1, round(total * INSERT_SHARE)) if max_product else total
        deletes = min(round(total * DELETE_SHARE), total - inserts)
        updates = total - inserts - deletes
        day = (max_ts or DEFAULT_START).date()
        day_seed = seed * 1000 + int(max_audit % 997)
        # Kinds come in blocks (j = 1..total), then are shuffled by a hash into commit order,
        # which assigns audit ids and timestamps over the next day.
        operation = (
            "CASE WHEN j <= %(inserts)s THEN 'INSERT'"
            " WHEN j <= %(inserts)s + %(updates)s THEN 'UPDATE' ELSE 'DELETE' END"
        )
        product = (
            "CASE WHEN j <= %(inserts)s THEN %(max_product)s + j"
            " ELSE 1 + "
            + _draw("j + %(max_audit)s", day_seed * 8 + 9, "greatest(%(max_product)s, 1)")
            + " END"
        )
        name, price = _event_values_sql("audit_id", "product_id", "operation", day_seed)
        conn.execute(
            sql.SQL(
                "INSERT INTO {target} (audit_id, product_id, product_name, price_usd, operation,"
                " valid_ts) SELECT audit_id, product_id, " + name + ", " + price + ", operation,"
                " valid_ts FROM ("
                "  SELECT %(max_audit)s + ord AS audit_id, product_id, operation,"
                "  (%(day)s::date + 1)::timestamp"
                "    + make_interval(secs => floor((ord - 1) * 86400.0 / %(total)s)) AS valid_ts"
                "  FROM (SELECT " + product + " AS product_id, " + operation + " AS operation,"
                "    row_number() OVER (ORDER BY " + _draw("j", day_seed, 1000003) + ", j) AS ord"
                "    FROM generate_series(1::bigint, %(total)s::bigint) AS j) AS shuffled"
                ") AS events"
            ).format(target=target),
            {
                "inserts": inserts,
                "updates": updates,
                "max_product": max_product,
                "max_audit": max_audit,
                "total": total,
                "day": day,
            },
        )
    return Activity(
        inserts=inserts,
        updates=updates,
        deletes=deletes,
        total=total,
        first_audit_id=max_audit + 1,
        last_audit_id=max_audit + total,
    )


def _default_dsn() -> str:
    configured = os.environ.get("SOURCES__PRODUCTS__CREDENTIALS")
    if configured:
        return configured
    from dev_stack.postgres import running

    cluster = running()
    if cluster is None:
        raise SystemExit(
            "No DSN: pass --dsn, set SOURCES__PRODUCTS__CREDENTIALS, or start the local cluster "
            "with `python -m dev_stack.postgres start`."
        )
    return cluster.dsn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dev_stack.products_data",
        description="Generate raw_data.products and simulate application activity.",
    )
    parser.add_argument("--dsn", help="PostgreSQL DSN (default: see module help)")
    commands = parser.add_subparsers(dest="command", required=True)
    seed_cmd = commands.add_parser("seed", help="(re)create raw_data.products with generated rows")
    seed_cmd.add_argument("--rows", type=int, default=5000)
    seed_cmd.add_argument("--seed", type=int, default=DEFAULT_SEED)
    day_cmd = commands.add_parser(
        "simulate-day", help="append one day of INSERT/UPDATE/DELETE rows"
    )
    day_cmd.add_argument(
        "--changes", type=int, help="audit rows to add (default: 1%% of the table)"
    )
    args = parser.parse_args(argv)
    dsn = args.dsn or _default_dsn()
    if args.command == "seed":
        print(f"raw_data.products: {seed(dsn, args.rows, args.seed)} rows")
    else:
        activity = simulate_day(dsn, args.changes)
        print(json.dumps(activity))
    return 0


if __name__ == "__main__":
    sys.exit(main())

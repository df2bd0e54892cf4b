"""The products pipeline against a real PostgreSQL cluster and a real DuckDB warehouse."""

# Fixtures are imported from tests.fixtures.postgres and requested by name (F811).
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import psycopg
import pytest

from dev_stack.postgres import LocalPostgres, default_root, ensure_running, recorded
from dev_stack.processes import free_port
from dev_stack.products_data import seed, simulate_day
from local_runtime.warehouse import warehouse_path
from pipelines.environment import ConfigurationError
from pipelines.errors import exception_chain, is_permanent, root_cause_message
from pipelines.products import SchemaContractViolation, cursor_value
from sources.errors import PermanentSourceError, TransientSourceError
from tests.fixtures.postgres import (  # noqa: F401
    ProductsDatabase,
    postgres_cluster,
    products_database,
    seeded_source,
)
from tests.fixtures.postgres import local_products_pipeline as make_products_pipeline
from tests.fixtures.postgres import run_products as run

SEED_ROWS = 2000


COLUMNS = "audit_id, product_id, product_name, price_usd, operation, valid_ts"
WAREHOUSE_TABLE = "application_data.products"


@pytest.fixture
def products(
    products_database: ProductsDatabase, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> ProductsDatabase:
    """A seeded source database, dlt pointed at it, and an empty project data folder."""
    return seeded_source(products_database, monkeypatch, SEED_ROWS, lookback=None)


def source_rows(dsn: str, columns: str = COLUMNS) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT {columns} FROM raw_data.products ORDER BY audit_id").fetchall()


def _naive_utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def warehouse(sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse_path("DLT")), read_only=True) as conn:
        return [tuple(_naive_utc(v) for v in row) for row in conn.sql(sql).fetchall()]


def warehouse_rows(columns: str = COLUMNS) -> list[tuple[Any, ...]]:
    return warehouse(f"SELECT {columns} FROM {WAREHOUSE_TABLE} ORDER BY audit_id")


def warehouse_execute(sql: str) -> None:
    with duckdb.connect(str(warehouse_path("DLT"))) as conn:
        conn.execute(sql)


def loaded_rows(run: Any) -> int:
    return int(run.summary.rows.get("products", 0))


def source_execute(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(sql, params)


def max_valid_ts(dsn: str) -> datetime:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT max(valid_ts) FROM raw_data.products").fetchone()[0]


def test_first_run_then_activity_then_nothing_new(
    products: ProductsDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No lookback: the second run must load exactly the new audit rows and nothing else.
    monkeypatch.setenv("SOURCES__PRODUCTS__LOOKBACK", "0")

    assert loaded_rows(run()) == SEED_ROWS
    assert warehouse_rows() == source_rows(products.dsn)
    assert _naive_utc(cursor_value(make_products_pipeline())) == max_valid_ts(products.dsn)

    activity = simulate_day(products.dsn)
    assert activity["inserts"] and activity["updates"] and activity["deletes"]
    assert loaded_rows(run()) == activity["total"]
    rows = warehouse_rows()
    assert len(rows) == SEED_ROWS + activity["total"]
    assert rows == source_rows(products.dsn)
    new_ids = {row[0] for row in rows if row[0] >= activity["first_audit_id"]}
    assert new_ids == set(range(activity["first_audit_id"], activity["last_audit_id"] + 1))

    assert loaded_rows(run()) == 0
    assert warehouse_rows() == rows


def test_loaded_packages_keep_no_data_files(products: ProductsDatabase) -> None:
    # A daily worker must not grow its disk by a copy of every load (.dlt/config.toml).
    info = run()
    run(full_refresh=True)
    pipeline_folder = Path(make_products_pipeline().working_dir)
    assert list(pipeline_folder.glob("load/loaded/*/completed_jobs/*")) == []
    # Every run starts from a scratch working folder restored from the warehouse, so only the
    # last run's package metadata is there, its data and its audit (`dlt pipeline products trace`).
    assert len(list(pipeline_folder.glob("load/loaded/*"))) == 2
    assert info.summary.files == {"products": 1}


def test_default_lookback_rereads_window_without_duplicates(products: ProductsDatabase) -> None:
    run()
    activity = simulate_day(products.dsn)
    second = loaded_rows(run())
    # The new rows plus the re-read hour behind the old cursor; merge keeps one copy each.
    assert activity["total"] <= second < activity["total"] + 10
    assert warehouse_rows() == source_rows(products.dsn)
    run()
    assert warehouse_rows() == source_rows(products.dsn)


def test_first_load_goes_straight_into_the_new_table_later_ones_swap(
    products: ProductsDatabase,
) -> None:
    def schemas_with_products() -> list[str]:
        query = "SELECT table_schema FROM information_schema.tables WHERE table_name = 'products'"
        return sorted(schema for (schema,) in warehouse(query))

    run()
    # no table to keep visible yet: no staging copy to swap in
    assert schemas_with_products() == ["application_data"]
    assert warehouse_rows() == source_rows(products.dsn)
    run(full_refresh=True)
    # a table exists now: the reload goes through the run's own staging and the atomic swap
    assert schemas_with_products() == ["application_data", "application_data_staging_2"]
    assert warehouse_rows() == source_rows(products.dsn)


def test_lookback_window_rows_already_loaded_are_not_loaded_again(
    products: ProductsDatabase,
) -> None:
    # Two rows inside the default 1 h window behind the cursor, there before the first run.
    newest = max_valid_ts(products.dsn)
    insert = "INSERT INTO raw_data.products VALUES (%s, 7, 'Window Lamp', 9.99, 'UPDATE', %s)"
    source_execute(products.dsn, insert, (900031, newest - timedelta(minutes=10)))
    source_execute(products.dsn, insert, (900032, newest - timedelta(minutes=20)))
    run()
    # Nothing new: the re-read window holds only rows the first run loaded.
    assert loaded_rows(run()) == 0
    activity = simulate_day(products.dsn)
    assert loaded_rows(run()) == activity["total"]
    # a row committing late inside the window is still new, and loads once
    source_execute(
        products.dsn, insert, (990033, max_valid_ts(products.dsn) - timedelta(minutes=5))
    )
    assert loaded_rows(run()) == 1
    assert loaded_rows(run()) == 0
    assert warehouse_rows() == source_rows(products.dsn)


@pytest.mark.parametrize("lookback", ["0", "1h"])
def test_ties_at_cursor_and_late_rows_load_exactly_once(
    products: ProductsDatabase, monkeypatch: pytest.MonkeyPatch, lookback: str
) -> None:
    monkeypatch.setenv("SOURCES__PRODUCTS__LOOKBACK", lookback)
    run()
    cursor = max_valid_ts(products.dsn)
    insert = "INSERT INTO raw_data.products VALUES (%s, 7, 'Late Lamp', 9.99, 'UPDATE', %s)"
    # Committed after the first run with exactly the cursor's timestamp (a tie).
    source_execute(products.dsn, insert, (900001, cursor))
    source_execute(products.dsn, insert, (900002, cursor))
    if lookback == "1h":
        # Committed late with a valid_ts 10 minutes behind the cursor (inside the window).
        source_execute(products.dsn, insert, (900003, cursor - timedelta(minutes=10)))

    run()
    expected = source_rows(products.dsn)
    assert warehouse_rows() == expected
    run()  # the window is re-read again: still one row per audit_id
    assert warehouse_rows() == expected
    assert warehouse(f"SELECT count(*) - count(DISTINCT audit_id) FROM {WAREHOUSE_TABLE}") == [(0,)]


def test_late_row_behind_the_window_needs_a_full_refresh(
    products: ProductsDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCES__PRODUCTS__LOOKBACK", "15m")
    run()
    late = max_valid_ts(products.dsn) - timedelta(hours=2)
    source_execute(
        products.dsn,
        "INSERT INTO raw_data.products VALUES (900010, 7, 'Old Lamp', 1.5, 'UPDATE', %s)",
        (late,),
    )
    run()
    assert 900010 not in {row[0] for row in warehouse_rows("audit_id")}  # documented limit
    run(full_refresh=True)
    assert warehouse_rows() == source_rows(products.dsn)


def test_full_refresh_restores_rows_deleted_from_the_warehouse(
    products: ProductsDatabase,
) -> None:
    run()
    simulate_day(products.dsn)
    run()
    warehouse_execute(f"DELETE FROM {WAREHOUSE_TABLE} WHERE audit_id % 3 = 0")
    assert len(warehouse_rows()) < len(source_rows(products.dsn))

    info = run(full_refresh=True)
    assert loaded_rows(info) == len(source_rows(products.dsn))
    assert warehouse_rows() == source_rows(products.dsn)
    assert _naive_utc(cursor_value(make_products_pipeline())) == max_valid_ts(products.dsn)
    assert loaded_rows(run()) >= 0  # the next daily run continues from the new cursor
    assert warehouse_rows() == source_rows(products.dsn)


def test_failed_full_refresh_keeps_the_previous_table(products: ProductsDatabase) -> None:
    run()
    before = warehouse_rows()
    cursor_before = cursor_value(make_products_pipeline())
    # A real failure in the load step: the warehouse refuses the swap's INSERT (NOT NULL),
    # after the staging table has loaded and the DELETE has run in the same transaction.
    warehouse_execute(f"ALTER TABLE {WAREHOUSE_TABLE} ALTER COLUMN product_name SET NOT NULL")
    source_execute(
        products.dsn,
        "INSERT INTO raw_data.products VALUES (900020, 1, NULL, 1.0, 'UPDATE', %s)",
        (max_valid_ts(products.dsn) + timedelta(seconds=1),),
    )

    with pytest.raises(Exception) as failure:
        run(full_refresh=True)
    assert "load" in str(failure.value)
    assert "NOT NULL" in "".join(traceback.format_exception(failure.value))
    assert warehouse_rows() == before  # not empty, not half: the old table
    assert not make_products_pipeline().has_pending_data

    # State lives only in the warehouse: the failed load committed no state, so the next run
    # (on any worker) starts from the cursor of the last completed load and continues from it.
    warehouse_execute(f"ALTER TABLE {WAREHOUSE_TABLE} ALTER COLUMN product_name DROP NOT NULL")
    assert loaded_rows(run()) >= 1
    assert _naive_utc(cursor_value(make_products_pipeline())) > _naive_utc(cursor_before)
    assert warehouse_rows() == source_rows(products.dsn)


def test_failed_incremental_load_does_not_advance_the_cursor(products: ProductsDatabase) -> None:
    run()
    cursor_before = cursor_value(make_products_pipeline())
    activity = simulate_day(products.dsn)
    warehouse_execute(f"ALTER TABLE {WAREHOUSE_TABLE} ALTER COLUMN product_name SET NOT NULL")
    source_execute(
        products.dsn,
        "INSERT INTO raw_data.products VALUES (900030, 1, NULL, 1.0, 'UPDATE', %s)",
        (max_valid_ts(products.dsn),),
    )
    with pytest.raises(Exception, match="load"):
        run()
    assert cursor_value(make_products_pipeline()) == cursor_before
    assert len(warehouse_rows()) == SEED_ROWS

    warehouse_execute(f"ALTER TABLE {WAREHOUSE_TABLE} ALTER COLUMN product_name DROP NOT NULL")
    assert loaded_rows(run()) >= activity["total"] + 1
    assert warehouse_rows() == source_rows(products.dsn)


def test_new_source_column_appears_in_the_warehouse(products: ProductsDatabase) -> None:
    run()
    source_execute(products.dsn, "ALTER TABLE raw_data.products ADD COLUMN category text")
    activity = simulate_day(products.dsn)
    source_execute(
        products.dsn,
        "UPDATE raw_data.products SET category = 'kitchen' WHERE audit_id >= %s",
        (activity["first_audit_id"],),
    )
    info = run()
    assert "category" in info.summary.schema_changes["products"]
    categories = dict(
        warehouse(
            f"SELECT audit_id >= {activity['first_audit_id']}, count(category) "
            f"FROM {WAREHOUSE_TABLE} GROUP BY 1"
        )
    )
    assert categories == {True: activity["total"], False: 0}
    with_category = COLUMNS + ", category"
    assert warehouse_rows(with_category) == source_rows(products.dsn, with_category)


def test_changed_column_type_fails_permanently_and_loads_nothing(
    products: ProductsDatabase,
) -> None:
    run()
    before = warehouse_rows()
    cursor_before = cursor_value(make_products_pipeline())
    source_execute(products.dsn, "ALTER TABLE raw_data.products ALTER COLUMN price_usd TYPE text")
    source_execute(
        products.dsn,
        "INSERT INTO raw_data.products VALUES (900040, 1, 'Odd', 'call us', 'UPDATE', %s)",
        (max_valid_ts(products.dsn) + timedelta(seconds=1),),
    )
    with pytest.raises(SchemaContractViolation) as failure:
        run()
    assert is_permanent(failure.value)
    assert "price_usd" in str(failure.value)
    assert warehouse_rows() == before
    assert warehouse(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'products' AND column_name = 'price_usd' "
        "AND table_schema = 'application_data'"
    ) == [("DOUBLE",)]
    assert cursor_value(make_products_pipeline()) == cursor_before


def test_unreachable_database_is_transient_and_names_host_and_port_only(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    password = "Sup3r-Secret-pw"
    monkeypatch.setenv(
        "SOURCES__PRODUCTS__CREDENTIALS", f"postgresql://loader:{password}@127.0.0.1:{port}/app"
    )
    with pytest.raises(Exception) as failure:
        run()
    error = failure.value
    assert not is_permanent(error)
    message = root_cause_message(error)
    assert f"127.0.0.1:{port}" in message and "unreachable" in message
    assert any(isinstance(e, TransientSourceError) for e in exception_chain(error))
    printed = "".join(traceback.format_exception(error))
    assert password not in printed and password not in message


def test_wrong_password_and_missing_table_are_permanent(
    products_database: ProductsDatabase, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = products_database.dsn
    wrong = dsn.replace(products_database.cluster.password, "not-the-password")
    monkeypatch.setenv("SOURCES__PRODUCTS__CREDENTIALS", wrong)
    with pytest.raises(Exception) as failure:
        run()
    assert is_permanent(failure.value)
    assert "not-the-password" not in "".join(traceback.format_exception(failure.value))

    monkeypatch.setenv("SOURCES__PRODUCTS__CREDENTIALS", dsn)  # database exists, table not
    with pytest.raises(Exception) as failure:
        run()
    assert is_permanent(failure.value)
    assert "raw_data.products does not exist" in root_cause_message(failure.value)
    assert any(isinstance(e, PermanentSourceError) for e in exception_chain(failure.value))


def test_a_worker_process_reads_an_escaped_password_without_importing_sqlalchemy(
    products: ProductsDatabase,
) -> None:
    """The DSN reaches libpq as written (percent-escapes intact) and SQLAlchemy stays out.

    dlt parses and prints URLs with SQLAlchemy when it can import it (0.2 s of every run);
    `configure_runtime` gives dlt its own URL class instead. A fresh process, as a worker's.
    """
    password = "p@ss:w/rd#%?"
    admin = products.cluster.dsn_for(products.name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE odd_reader LOGIN PASSWORD '{password}'")
        conn.execute("GRANT USAGE ON SCHEMA raw_data TO odd_reader")
        conn.execute("GRANT SELECT ON raw_data.products TO odd_reader")
    try:
        host, port = products.cluster.host, products.cluster.port
        dsn = f"postgresql://odd_reader:{quote(password, safe='')}@{host}:{port}/{products.name}"
        code = (
            "import json, sys\n"
            "from environments import load_environment\n"
            "from pipelines import products\n"
            "run = products.run(load_environment())\n"
            "print(json.dumps([run.summary.rows, 'sqlalchemy' in sys.modules]))\n"
        )
        env = {**os.environ, "SOURCES__PRODUCTS__CREDENTIALS": dsn}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        rows, imported_sqlalchemy = json.loads(done.stdout.strip().splitlines()[-1])
        assert rows == {"products": SEED_ROWS}
        assert imported_sqlalchemy is False
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP OWNED BY odd_reader")
            conn.execute("DROP ROLE odd_reader")


def test_local_environment_falls_back_to_the_recorded_local_cluster(
    products: ProductsDatabase, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCES__PRODUCTS__CREDENTIALS")
    # The session cluster, recorded as this data folder's local cluster for its database.
    local_root = default_root()  # data_dir/postgres, or where the server user can reach it
    local_root.mkdir(parents=True, exist_ok=True)
    facts = json.loads((products.cluster.root / "cluster.json").read_text())
    (local_root / "cluster.json").write_text(json.dumps({**facts, "database": products.name}))
    try:
        assert recorded() is not None
        assert loaded_rows(run()) == SEED_ROWS
    finally:
        if not local_root.is_relative_to(data_dir):
            shutil.rmtree(local_root, ignore_errors=True)

    monkeypatch.setenv("DATA_PIPELINES_ENV", "production")
    with pytest.raises(ConfigurationError, match="SOURCES__PRODUCTS__CREDENTIALS"):
        run()


def test_cluster_start_is_idempotent(postgres_cluster: LocalPostgres) -> None:
    again = ensure_running(postgres_cluster.root)
    assert (again.port, again.dsn) == (postgres_cluster.port, postgres_cluster.dsn)
    assert "password" not in repr(again) and postgres_cluster.password not in repr(again)


def test_generator_is_deterministic(products_database: ProductsDatabase) -> None:
    checksum = (
        "SELECT md5(string_agg(concat_ws('|', audit_id, product_id, product_name, price_usd,"
        " operation, valid_ts), ',' ORDER BY audit_id)) FROM raw_data.products"
    )
    seed(products_database.dsn, 500, seed=7)
    first = source_rows(products_database.dsn, f"({checksum})")
    seed(products_database.dsn, 500, seed=7)
    assert source_rows(products_database.dsn, f"({checksum})") == first
    seed(products_database.dsn, 500, seed=8)
    assert source_rows(products_database.dsn, f"({checksum})") != first


def test_cli_prints_no_password(postgres_cluster: LocalPostgres, capsys: Any) -> None:
    assert shutil.which("runuser")  # the cluster runs as the postgres user
    from dev_stack.postgres import main

    assert main(["status"]) in (0, 1)
    assert postgres_cluster.password not in capsys.readouterr().out

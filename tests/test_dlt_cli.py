"""dlt's own CLI works on our pipelines, as in any dlt project: the repair the docs prescribe.

Run from the repo root with nothing exported but the data folder (the run-context plugin,
pipelines/dlt_plugin.py), and from elsewhere with the variables `.data/stack.env` exports.
"""

# ruff: noqa: F811

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from environments import load_environment
from local_runtime.warehouse import warehouse_path
from pipelines import products
from pipelines.environment import PROJECT_DIR
from tests.fixtures.postgres import (  # noqa: F401
    ProductsDatabase,
    postgres_cluster,
    products_database,
    seeded_source,
)

DLT = str(Path(sys.executable).with_name("dlt"))


def dlt_cli(*args: str, cwd: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`dlt ARGS` as an operator types it: no DLT_* variables unless `extra_env` has them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    env.update(extra_env)
    return subprocess.run(
        [DLT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def products_rows() -> int | None:
    with duckdb.connect(str(warehouse_path("DLT")), read_only=True) as conn:
        found = conn.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'application_data' and table_name = 'products'"
        ).fetchone()
        if not found or not found[0]:
            return None
        return conn.execute("select count(*) from application_data.products").fetchone()[0]


def test_docs_repair_commands_reach_the_real_warehouse(
    products_database: ProductsDatabase, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded_source(products_database, monkeypatch, 300, lookback=None)
    environment = load_environment("local")
    products.run(environment)
    assert products_rows() == 300
    from_repo = {"DATA_PIPELINES_DATA_DIR": str(data_dir)}

    info = dlt_cli("pipeline", "products", "info", cwd=PROJECT_DIR, extra_env=from_repo)
    assert info.returncode == 0, info.stderr
    assert "dlt.destinations.duckdb" in info.stdout and "application_data" in info.stdout
    trace = dlt_cli("pipeline", "products", "trace", cwd=PROJECT_DIR, extra_env=from_repo)
    assert trace.returncode == 0, trace.stderr
    assert "load" in trace.stdout.lower()

    # docs/products.md, "Schema contract": the deliberate migration, from a shell that sourced
    # .data/stack.env (any directory): it exports the data folder and dlt's project folder
    sourced = {"DATA_PIPELINES_DATA_DIR": str(data_dir), "DLT_PROJECT_DIR": str(PROJECT_DIR)}
    dropped = dlt_cli(
        "--yes", "pipeline", "products", "drop", "products", cwd=data_dir, extra_env=sourced
    )
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    assert products_rows() is None  # the table in the warehouse the pipelines load is gone
    products.run(environment, full_refresh=True)
    assert products_rows() == 300

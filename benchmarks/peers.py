"""Peers of the products pipeline for `bench_products`: what else could load the same rows.

- `sql_table-pyarrow`, `sql_table-connectorx`: what a dlt user would write instead of our
  source: `dlt.sources.sql_database.sql_table` on `raw_data.products`, incremental on
  `valid_ts` (same 1 h lag and closed range as ours), merge on `audit_id`, into the same
  warehouse file (dataset `peer_<backend>`). connectorx streams Arrow batches
  (`return_type="arrow_stream"`): its default reads the whole table into one frame.
- `scanner`: DuckDB's postgres scanner, the floor of "no framework" (one `CREATE TABLE AS
  SELECT` / one DELETE + INSERT). Its extension ships on PyPI only for DuckDB 1.4.4
  (`duckdb-ext-postgres`) while we pin 1.5.6, and 1.5.6 refuses to load it ("Missing DB
  manager", also with `allow_extensions_metadata_mismatch`); DuckDB would otherwise download
  it at run time, which fails offline. So it runs in a throwaway venv with duckdb 1.4.4 under
  the benchmark folder, into its own DuckDB file (a 1.4 process should not write a file
  that 1.5.6 owns).

Each runs in a child process and prints `{"seconds", "rows"}` like our own child runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

SCANNER_DUCKDB = "duckdb==1.4.4"
SCANNER_EXTENSION = "duckdb-ext-postgres==1.4.4.20260205"
LOOKBACK_SECONDS = 3600  # the products source's default lookback, kept equal for the peers


def sql_table_child(backend: str) -> None:
    """One `sql_table` run (full on the first call, incremental after), timed in-process."""
    import dlt
    from dlt.sources.sql_database import sql_table

    from local_runtime.warehouse import warehouse_path
    from pipelines.names import WAREHOUSE_DATABASE

    dsn = os.environ["SOURCES__PRODUCTS__CREDENTIALS"]
    backend_kwargs = {"tz": "UTC"} if backend == "pyarrow" else {"return_type": "arrow_stream"}
    data_dir = Path(os.environ["DATA_PIPELINES_DATA_DIR"])
    started = time.perf_counter()
    table = sql_table(
        credentials=dsn,
        schema="raw_data",
        table="products",
        backend=backend,
        backend_kwargs=backend_kwargs,
        incremental=dlt.sources.incremental("valid_ts", lag=LOOKBACK_SECONDS, range_start="closed"),
        primary_key="audit_id",
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
    )
    pipeline = dlt.pipeline(
        pipeline_name=f"peer_{backend}",
        destination=dlt.destinations.duckdb(str(warehouse_path(WAREHOUSE_DATABASE))),
        dataset_name=f"peer_{backend}",
        pipelines_dir=str(data_dir / "dlt" / "peers"),
    )
    info = pipeline.run(table)
    info.raise_on_failed_jobs()
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("products", 0)
    print(json.dumps({"seconds": time.perf_counter() - started, "rows": rows}))


SCANNER_SCRIPT = """
import json, sys, time
import duckdb
extension, dsn, target, mode, lookback = sys.argv[1:]
started = time.perf_counter()
warehouse = duckdb.connect(target)
warehouse.execute(f"LOAD '{extension}'")
warehouse.execute(f"ATTACH '{dsn}' AS source (TYPE postgres, READ_ONLY)")
warehouse.execute("BEGIN")
if mode == "full":
    rows = warehouse.execute(
        "CREATE OR REPLACE TABLE products AS FROM source.raw_data.products"
    ).fetchone()[0]
else:
    (cursor,) = warehouse.execute("SELECT max(valid_ts) FROM products").fetchone()
    warehouse.execute(
        "CREATE TEMP TABLE changed AS FROM source.raw_data.products WHERE valid_ts >= ?",
        [cursor - __import__("datetime").timedelta(seconds=int(lookback))],
    )
    warehouse.execute("DELETE FROM products WHERE audit_id IN (SELECT audit_id FROM changed)")
    rows = warehouse.execute("INSERT INTO products FROM changed").fetchone()[0]
warehouse.execute("COMMIT")
warehouse.close()
print(json.dumps({"seconds": time.perf_counter() - started, "rows": rows}))
"""


def scanner_python(base: Path) -> tuple[str, str]:
    """The throwaway venv's python and the extension file (made once per benchmark folder)."""
    venv = base / "scanner-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run(["uv", "venv", "-q", "-p", sys.executable, str(venv)], check=True)
        subprocess.run(
            ["uv", "pip", "install", "-q", "-p", str(python), SCANNER_DUCKDB, SCANNER_EXTENSION],
            check=True,
        )
    found = subprocess.run(
        [
            str(python),
            "-c",
            "import duckdb_ext, pathlib; print(next(pathlib.Path(duckdb_ext.__path__[0])"
            ".rglob('postgres_scanner.duckdb_extension')))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return str(python), found.stdout.strip()


def scanner_command(base: Path, mode: str, env: dict[str, str]) -> list[str]:
    """The child command for a scanner run (`full` or `incremental`)."""
    python, extension = scanner_python(base)
    target = Path(env["DATA_PIPELINES_DATA_DIR"]) / "scanner.duckdb"
    dsn = env["SOURCES__PRODUCTS__CREDENTIALS"]
    return [python, "-c", SCANNER_SCRIPT, extension, dsn, str(target), mode, str(LOOKBACK_SECONDS)]

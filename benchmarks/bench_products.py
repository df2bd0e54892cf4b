"""Products pipeline benchmark: ours, its peers and the floors, on the same rows, same run.

    python -m benchmarks.bench_products [--rows 1000000] [--rss-rows 10000000]

Everything runs on a throwaway cluster and data folder under /tmp (removed at the end). For
each table size (`--rows`, then `--rss-rows`; 0 skips the second):
1. seed the rows in PostgreSQL;
2. reference: `psql -c "\\copy (select * from raw_data.products) to FILE csv"` (best of 2);
3. full loads: ours (first run = full load, then a full refresh at the first size), "no dlt"
   (ADBC -> DuckDB by hand, one transaction), the peers a dlt user would write
   (`sql_table` with the pyarrow and connectorx backends, benchmarks/peers.py) and the floor
   of "no framework" (DuckDB's postgres scanner, `CREATE TABLE AS`);
4. `simulate_day` changes 1% of the rows, then one incremental run of each;
5. (first size) our run with no new activity: the per-run fixed cost.

Ratios: full loads ÷ `\\copy` of the same size, incremental runs ÷ the same loader's full load.
Each load runs in a child process (as a worker would), timed around the load call inside the
child (imports done); "process s" is the child's wall time with interpreter start and imports.
Peak RSS comes from `os.wait4` (the child's `ru_maxrss`). The load average (/proc/loadavg) is
printed with every row: this machine is shared, so compare ratios within one run and re-run
rows taken under load. Figures, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import peers

TARGET_FULL_VS_COPY = 1.5
TARGET_INCREMENTAL_VS_FULL = 0.08
TARGET_FIXED_COST_SECONDS = 0.3
TARGET_PEAK_RSS_BYTES = 512 * 2**20
TARGET_RSS_GROWTH = 1.2  # 10M-row peak RSS / 1M-row peak RSS
SQL_TABLE_BACKENDS = ("pyarrow", "connectorx")
CHILD_TIMEOUT_SECONDS = 900


def _child(mode: str) -> None:
    """Runs inside the child process: one pipeline run, timing printed as JSON."""
    if mode.startswith("no-dlt-"):
        _hand_written_load(mode)
        return
    if mode.startswith("sql_table-"):
        peers.sql_table_child(mode.removeprefix("sql_table-"))
        return
    from benchmarks.run_pipeline import load_environment, preload, run_products

    preload("products")
    started = time.perf_counter()  # as a flow's task: the environment is chosen, then the run
    rows = run_products(load_environment("local"), full_refresh=mode == "full-refresh")
    seconds = time.perf_counter() - started
    code = sys.modules["pipelines.products"].__file__  # whose pipeline ran (--base-tree)
    print(json.dumps({"seconds": seconds, "rows": rows, "code": code}))


def _hand_written_load(mode: str) -> None:
    """The "no dlt" reference: the least a loader with our semantics must do on this machine.

    Full: DELETE + INSERT from the Arrow stream in one DuckDB transaction (atomic without a
    staging table). Incremental: rows from the newest warehouse `valid_ts` minus the 1 h
    lookback, merged on audit_id (DELETE matching ids + INSERT) in one transaction.
    """
    import adbc_driver_postgresql.dbapi as adbc_pg
    import duckdb

    dsn = os.environ["SOURCES__PRODUCTS__CREDENTIALS"]
    target = Path(os.environ["DATA_PIPELINES_DATA_DIR"]) / "no_dlt.duckdb"
    started = time.perf_counter()
    warehouse = duckdb.connect(str(target))
    query = "SELECT * FROM raw_data.products"
    if mode == "no-dlt-incremental":
        (cursor,) = warehouse.execute("SELECT max(valid_ts) FROM products").fetchone()
        query += f" WHERE valid_ts >= '{cursor}'::timestamp - interval '1 hour'"
    with adbc_pg.connect(dsn) as source, source.cursor() as cursor:
        cursor.execute(query)
        batches = cursor.fetch_record_batch()  # full: scanned by name in the SQL
        warehouse.execute("BEGIN")
        if mode == "no-dlt-full":
            warehouse.execute("CREATE TABLE IF NOT EXISTS products AS FROM batches LIMIT 0")
            warehouse.execute("DELETE FROM products")
            rows = warehouse.execute("INSERT INTO products FROM batches").fetchone()[0]
        else:
            changed = batches.read_all()  # noqa: F841 (1% of the rows)
            warehouse.execute(
                "DELETE FROM products WHERE audit_id IN (SELECT audit_id FROM changed)"
            )
            rows = warehouse.execute("INSERT INTO products FROM changed").fetchone()[0]
        warehouse.execute("COMMIT")
    warehouse.close()
    print(json.dumps({"seconds": time.perf_counter() - started, "rows": rows}))


@dataclass(frozen=True)
class _Tree:
    """Whose pipeline code a child of ours runs: this tree's, or an older commit's.

    An older commit's child runs with that tree's own venv (`python`) and this tree's driver
    (`_child`, benchmarks/run_pipeline.py) in front of that tree's code on `path`; `-P` keeps
    the working folder off sys.path, so `benchmarks` is this tree's and everything else theirs.
    """

    label: str
    python: tuple[str, ...] = (sys.executable,)
    path: str | None = None  # PYTHONPATH for the child; None: this tree
    cwd: str | None = None

    @property
    def is_base(self) -> bool:
        return self.path is not None

    def command(self, mode: str) -> list[str]:
        return [*self.python, "-m", "benchmarks.bench_products", "--child", mode]

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        if not self.is_base:
            return env
        tree_env = {k: v for k, v in env.items() if k not in ("DLT_PROJECT_DIR", "VIRTUAL_ENV")}
        tree_env["PYTHONPATH"] = str(self.path)
        return tree_env


CURRENT = _Tree("this tree")


def _base_tree(python: str, tree: Path, label: str, base: Path) -> _Tree:
    """An older commit checked out at `tree` with its venv's `python` (scripts/bench_commit.sh)."""
    driver = base / "driver"
    driver.mkdir(exist_ok=True)
    link = driver / "benchmarks"
    if not link.exists():
        link.symlink_to(Path(__file__).resolve().parent, target_is_directory=True)
    return _Tree(label, (python, "-P"), f"{driver}{os.pathsep}{tree.resolve()}", str(tree))


def _warm_bytecode(env: dict[str, str], trees: list[_Tree], ours_only: bool) -> None:
    """Compile once what a run imports, so children time the pipeline, not the compiler.

    This machine sets PYTHONDONTWRITEBYTECODE and the venv ships no .pyc files, so every
    process would compile dlt, sqlalchemy and pyarrow from source (~1-2 s). Children write
    bytecode to a cache inside the benchmark folder instead, warmed here by a small real run.
    """
    for tree in trees:
        _run_child("daily", env, tree=tree)
    if not ours_only:
        for backend in SQL_TABLE_BACKENDS:
            _run_child(f"sql_table-{backend}", env)


def _run_child(
    mode: str,
    env: dict[str, str],
    command: list[str] | None = None,
    tree: _Tree = CURRENT,
) -> dict[str, Any]:
    started = time.perf_counter()
    process = subprocess.Popen(
        command or tree.command(mode),
        env=tree.environment(env),
        cwd=tree.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # wait4 gives this child's own resource usage (peak RSS), not the sum of all children;
    # the timer bounds a hung child (it would otherwise block wait4 forever).
    watchdog = threading.Timer(CHILD_TIMEOUT_SECONDS, process.kill)
    watchdog.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        watchdog.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = process.stdout.read(), process.stderr.read()  # type: ignore[union-attr]
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"benchmark child {mode} failed:\n{stderr[-4000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    if tree.is_base and not str(result.get("code", "")).startswith(str(tree.cwd)):
        raise RuntimeError(f"child {mode} of {tree.label} ran {result.get('code')}, not its tree")
    result["process_seconds"] = wall
    result["peak_rss_bytes"] = usage.ru_maxrss * 1024
    return result


def _copy_reference(dsn: str, target: Path, repeats: int = 2) -> float:
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(
            [psql, dsn, "-qc", f"\\copy (select * from raw_data.products) to '{target}' csv"],
            check=True,
        )
        best = min(best, time.perf_counter() - started)
    return best


def _environment(dsn: str, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATA_PIPELINES_ENV": "local",
            "DATA_PIPELINES_DATA_DIR": str(data_dir),
            "DLT_DATA_DIR": str(data_dir / "dlt"),
            "DLT_LOCAL_DIR": str(data_dir / "warehouse"),
            "SOURCES__PRODUCTS__CREDENTIALS": dsn,
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "PYTHONPYCACHEPREFIX": str(data_dir.parent / "pycache"),
        }
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    (data_dir / "dlt").mkdir(parents=True, exist_ok=True)
    (data_dir / "warehouse").mkdir(parents=True, exist_ok=True)
    (data_dir / "warehouse").mkdir(parents=True, exist_ok=True)
    return env


def _create_database(cluster: Any, name: str) -> str:
    import psycopg

    with psycopg.connect(cluster.dsn_for("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return str(cluster.dsn_for(name))


def _fmt_rows(rows: int) -> str:
    return f"{rows:,}"


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class _Report:
    """Rows of (step, result, reference seconds) printed as one table with ratios."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, dict[str, Any], float | None, str]] = []

    def add(
        self, name: str, result: dict[str, Any], reference: float | None = None, of: str = ""
    ) -> dict[str, Any]:
        result["load_average"] = _load_average()
        self.rows.append((name, result, reference, of))
        print(self._line(name, result, reference, of), flush=True)  # progress, if a step fails
        return result

    @staticmethod
    def _line(name: str, result: dict[str, Any], reference: float | None, of: str) -> str:
        seconds, count = result["seconds"], result.get("rows", 0)
        rate = f"{count / seconds:>10,.0f}" if seconds and count else f"{'-':>10}"
        ratio = f"{seconds / reference:6.2f}x {of:<6}" if reference else ""
        peak = result.get("peak_rss_bytes")
        rss = f"{peak / 2**20:>5,.0f} MiB" if peak else ""
        process = f"{result['process_seconds']:>9.2f}" if "process_seconds" in result else ""
        return (
            f"{name:<48} {seconds:>7.2f} {_fmt_rows(count):>11} {rate} {ratio:>14} "
            f"{rss:>9} {process:>9}  {result['load_average']}"
        )

    def print(self) -> None:
        print(
            f"{'step':<48} {'wall s':>7} {'rows':>11} {'rows/s':>10} {'ratio':>14} "
            f"{'peak RSS':>9} {'process s':>9}  load avg"
        )
        for row in self.rows:
            print(self._line(*row))


def _copy(dsn: str, target: Path, repeats: int, rows: int) -> dict[str, Any]:
    return {"seconds": _copy_reference(dsn, target, repeats), "rows": rows}


def _scanner(base: Path, mode: str, env: dict[str, str]) -> dict[str, Any]:
    return _run_child(f"scanner-{mode}", env, peers.scanner_command(base, mode, env))


def _ours(
    report: _Report,
    trees: list[_Tree],
    envs: dict[_Tree, dict[str, str]],
    out: dict[_Tree, dict[str, Any]],
    key: str,
    mode: str,
    name: str,
    reference: str | None = None,
    of: str = "",
) -> None:
    """One of our steps for every tree, back to back (same data, same minutes)."""
    for tree in trees:
        ref = out[tree][reference]["seconds"] if reference else None
        who = "ours" if not tree.is_base else f"ours@{tree.label}"
        result = _run_child(mode, envs[tree], tree=tree)
        out[tree][key] = report.add(name.format(who=who), result, ref, of)


def _size(
    report: _Report,
    base: Path,
    cluster: Any,
    label: str,
    rows: int,
    all_steps: bool,
    trees: list[_Tree],
    ours_only: bool,
) -> dict[_Tree, dict[str, Any]]:
    """Every figure for one table size; returns, per tree, the results the verdicts need."""
    from dev_stack.products_data import seed, simulate_day

    dsn = _create_database(cluster, f"bench_{label}")
    started = time.perf_counter()
    seed(dsn, rows)
    print(f"seeded {_fmt_rows(rows)} rows in {time.perf_counter() - started:.1f} s")
    # each tree loads into a warehouse of its own, from the same PostgreSQL rows
    envs = {
        tree: _environment(
            dsn, base / f"data_{label}" if not tree.is_base else base / f"data_{label}_base"
        )
        for tree in trees
    }
    env = envs[CURRENT]
    size = _fmt_rows(rows)
    copy_result = _copy(dsn, base / "p.csv", 2, rows)
    copy = report.add(f"[{size}] psql \\copy (select *) to csv", copy_result)
    ref = copy["seconds"]
    out: dict[_Tree, dict[str, Any]] = {tree: {"copy": copy} for tree in trees}
    ours = (report, trees, envs, out)
    # no cursor yet: a full load
    _ours(*ours, "full", "daily", f"[{size}] {{who}}: first full load", "copy", "copy")
    if all_steps:
        _ours(
            *ours,
            "refresh",
            "full-refresh",
            f"[{size}] {{who}}: full refresh (swap)",
            "copy",
            "copy",
        )
    peer_full = {}
    if not ours_only:
        out[CURRENT]["no_dlt_full"] = report.add(
            f"[{size}] no dlt: ADBC -> DuckDB, one transaction",
            _run_child("no-dlt-full", env),
            ref,
            "copy",
        )
        for backend in SQL_TABLE_BACKENDS:
            peer_full[backend] = report.add(
                f"[{size}] peer: sql_table {backend}, first load",
                _run_child(f"sql_table-{backend}", env),
                ref,
                "copy",
            )
        out[CURRENT]["scanner_full"] = report.add(
            f"[{size}] floor: DuckDB postgres scanner, CTAS",
            _scanner(base, "full", env),
            ref,
            "copy",
        )
    activity = simulate_day(dsn, changes=rows // 100)
    _ours(
        *ours,
        "incremental",
        "daily",
        f"[{size}] {{who}}: incremental, {activity['total']:,} changes (1%)",
        "full",
        "full",
    )
    if not ours_only:
        for backend in SQL_TABLE_BACKENDS:
            report.add(
                f"[{size}] peer: sql_table {backend}, incremental 1%",
                _run_child(f"sql_table-{backend}", env),
                peer_full[backend]["seconds"],
                "full",
            )
        report.add(
            f"[{size}] no dlt: incremental 1%, one transaction",
            _run_child("no-dlt-incremental", env),
            out[CURRENT]["no_dlt_full"]["seconds"],
            "full",
        )
        report.add(
            f"[{size}] floor: scanner incremental 1%",
            _scanner(base, "incremental", env),
            out[CURRENT]["scanner_full"]["seconds"],
            "full",
        )
    if all_steps:
        _ours(*ours, "idle", "daily", f"[{size}] {{who}}: no new activity")
    return out


def _side_by_side(trees: list[_Tree], small: dict[_Tree, dict[str, Any]], rows: int) -> None:
    """The figures that compare two trees, one column per tree (same data, same minutes)."""
    figures = [
        ("no new rows, s", lambda r: r["idle"]["seconds"], TARGET_FIXED_COST_SECONDS, "s"),
        (
            f"{_fmt_rows(rows)} full load / \\copy",
            lambda r: r["full"]["seconds"] / r["copy"]["seconds"],
            TARGET_FULL_VS_COPY,
            "x",
        ),
        ("full load, s", lambda r: r["full"]["seconds"], None, "s"),
        (
            "full refresh / \\copy",
            lambda r: r["refresh"]["seconds"] / r["copy"]["seconds"],
            None,
            "x",
        ),
        (
            "incremental 1% / full load",
            lambda r: r["incremental"]["seconds"] / r["full"]["seconds"],
            TARGET_INCREMENTAL_VS_FULL,
            "x",
        ),
        ("incremental 1%, s", lambda r: r["incremental"]["seconds"], None, "s"),
        (
            f"peak RSS at {_fmt_rows(rows)} (full load), MiB",
            lambda r: r["full"]["peak_rss_bytes"] / 2**20,
            None,
            "",
        ),
    ]
    print(f"{'side by side':<40} " + " ".join(f"{t.label:>12}" for t in trees) + "  target")
    for name, value, target, unit in figures:
        cells = " ".join(f"{value(small[t]):>11.2f}{unit or ' '}" for t in trees)
        goal = f"<= {target:g}{unit}" if target is not None else ""
        print(f"{name:<40} {cells}  {goal}".rstrip())


def benchmark(
    rows: int,
    rss_rows: int,
    ours_only: bool = False,
    base_tree: tuple[str, Path, str] | None = None,
) -> None:
    from dev_stack.postgres import ensure_running, stop

    base = Path(tempfile.mkdtemp(prefix="bench-products-"))
    base.chmod(0o755)  # the server user must reach its data folder
    trees = [CURRENT]
    if base_tree is not None:
        trees.insert(0, _base_tree(*base_tree, base=base))
    report = _Report()
    print(f"load average at start: {_load_average()} ({os.cpu_count()} cores)")
    try:
        cluster = ensure_running(base / "postgres")
        print(f"cluster: PostgreSQL on {cluster.host}:{cluster.port}, data under {base}")
        from dev_stack.products_data import seed

        warm_dsn = _create_database(cluster, "bench_warmup")
        seed(warm_dsn, 1000)
        for tree in trees:
            warm = "data_warmup" if not tree.is_base else "data_warmup_base"
            _warm_bytecode(_environment(warm_dsn, base / warm), [tree], ours_only or tree.is_base)
        if not ours_only:
            peers.scanner_python(base)
        sized = _size(report, base, cluster, "small", rows, True, trees, ours_only)
        big = (
            _size(report, base, cluster, "big", rss_rows, False, trees, ours_only)[CURRENT]
            if rss_rows
            else None
        )
    finally:
        stop(base / "postgres")
        shutil.rmtree(base, ignore_errors=True)
    small = sized[CURRENT]

    print()
    report.print()
    print()
    verdicts = [
        (
            f"{_fmt_rows(rows)}: full load / \\copy",
            small["full"]["seconds"] / small["copy"]["seconds"],
            TARGET_FULL_VS_COPY,
            "x",
        ),
        (
            f"{_fmt_rows(rows)}: incremental 1% / full",
            small["incremental"]["seconds"] / small["full"]["seconds"],
            TARGET_INCREMENTAL_VS_FULL,
            "x",
        ),
        ("no new activity (fixed cost)", small["idle"]["seconds"], TARGET_FIXED_COST_SECONDS, "s"),
    ]
    if big is not None:
        growth = big["full"]["peak_rss_bytes"] / small["full"]["peak_rss_bytes"]
        verdicts += [
            (
                f"{_fmt_rows(rss_rows)}: full load / \\copy",
                big["full"]["seconds"] / big["copy"]["seconds"],
                TARGET_FULL_VS_COPY,
                "x",
            ),
            (
                f"{_fmt_rows(rss_rows)}: incremental 1% / full",
                big["incremental"]["seconds"] / big["full"]["seconds"],
                TARGET_INCREMENTAL_VS_FULL,
                "x",
            ),
            (
                f"{_fmt_rows(rss_rows)}: peak RSS, MiB",
                big["full"]["peak_rss_bytes"] / 2**20,
                TARGET_PEAK_RSS_BYTES / 2**20,
                "",
            ),
            (
                f"peak RSS {_fmt_rows(rss_rows)} / {_fmt_rows(rows)}",
                growth,
                TARGET_RSS_GROWTH,
                "x",
            ),
        ]
    for name, value, target, unit in verdicts:
        verdict = "meets" if value <= target else "MISSES"
        print(f"{name:<40} {value:8.2f}{unit:<2} target <= {target:g}{unit}: {verdict}")
    if len(trees) > 1:
        print()
        _side_by_side(trees, sized, rows)
    print(f"load average at end: {_load_average()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_products")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rss-rows", type=int, default=10_000_000, help="0 skips the RSS run")
    parser.add_argument(
        "--ours-only",
        action="store_true",
        help="only \\copy and our pipeline (no peers, no 'no dlt' loader, no DuckDB scanner)",
    )
    parser.add_argument(
        "--base-python",
        help="an older commit's venv python: its pipeline beside ours (scripts/bench_commit.sh)",
    )
    parser.add_argument("--base-tree", type=Path, help="that commit's checkout")
    parser.add_argument("--base-label", default="base", help="its column's name (the commit)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child)
        return 0
    if (args.base_python is None) != (args.base_tree is None):
        parser.error("--base-python and --base-tree go together")
    base_tree = (args.base_python, args.base_tree, args.base_label) if args.base_python else None
    benchmark(args.rows, args.rss_rows, args.ours_only, base_tree)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

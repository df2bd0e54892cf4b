"""The CLI follows the environment: `query` and `verify` reach production's warehouse or refuse.

Each case runs the real console entry in a fresh process with `DATA_PIPELINES_ENV=production`
and no Snowflake settings (or settings pointing at a closed loopback port), and checks what an
operator reads: at most 3 lines, the missing setting and where dlt looked, exit 2; never the
local DuckDB answer. The parser itself is checked for `--version`, `--debug` after the command,
and help on every command and argument.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from data_pipelines_cli.main import build_parser

PROJECT_DIR = Path(__file__).resolve().parent.parent


def run_cli(args: list[str], tmp_path: Path, **env: str) -> tuple[int, list[str], str]:
    data = tmp_path / "data"
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SOURCES__", "OXR_", "DATA_PIPELINES_", "DLT_", "DESTINATION__"))
    }
    environment.update(DATA_PIPELINES_DATA_DIR=str(data), **env)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "data_pipelines_cli.main", *args],
        cwd=PROJECT_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    print(f"{' '.join(args)}: exit {done.returncode} in {time.monotonic() - started:.2f} s")
    return done.returncode, done.stderr.splitlines(), done.stdout


def local_warehouse_with_a_marker(tmp_path: Path) -> None:
    """A local DLT database whose answer would show if production's query went local."""
    folder = tmp_path / "data" / "warehouse"
    folder.mkdir(parents=True)
    with duckdb.connect(str(folder / "dlt.duckdb")) as con:
        con.execute("create schema marker; create table marker.t as select 'LOCAL-ANSWER' as v")


@pytest.mark.parametrize("args", [["query", "select v from dlt.marker.t"], ["verify"]])
def test_production_without_snowflake_settings_names_the_missing_one_exit_2(
    tmp_path: Path, args: list[str]
) -> None:
    local_warehouse_with_a_marker(tmp_path)
    code, stderr, stdout = run_cli(args, tmp_path, DATA_PIPELINES_ENV="production")
    assert code == 2, stderr
    assert 1 <= len(stderr) <= 3, stderr
    line = stderr[0]
    assert "destination.snowflake.credentials" in line  # the missing setting
    assert "looked in" in line and "DESTINATION__SNOWFLAKE__CREDENTIALS" in line  # where
    assert "Traceback" not in "\n".join(stderr)
    assert "LOCAL-ANSWER" not in stdout and stdout.strip() == ""


def test_production_query_goes_to_snowflake_not_the_local_file(tmp_path: Path) -> None:
    """Credentials at a closed port: the query fails reaching Snowflake, naming it."""
    local_warehouse_with_a_marker(tmp_path)
    password = "pw-canary-7d1e"
    code, stderr, stdout = run_cli(
        ["query", "select v from dlt.marker.t"],
        tmp_path,
        DATA_PIPELINES_ENV="production",
        DESTINATION__SNOWFLAKE__CREDENTIALS=(
            f"snowflake://loader:{password}@acct/DLT?host=127.0.0.1&port=9&protocol=http"
            "&login_timeout=5"
        ),
    )
    assert code == 1 and len(stderr) == 1, stderr
    assert stderr[0].startswith("The production warehouse (snowflake) gave no answer")
    assert password not in stderr[0] and "LOCAL-ANSWER" not in stdout


def test_local_query_reads_the_local_warehouse_and_refuses_bad_sql(tmp_path: Path) -> None:
    local_warehouse_with_a_marker(tmp_path)
    code, stderr, stdout = run_cli(["query", "select v from DLT.marker.t"], tmp_path)
    assert code == 0 and "LOCAL-ANSWER" in stdout, stderr
    code, stderr, _ = run_cli(["query", "select * from DLT.marker.nope"], tmp_path)
    assert code == 2 and len(stderr) == 1, stderr
    assert stderr[0].startswith("The local warehouse refused the query") and "nope" in stderr[0]


def test_version(tmp_path: Path) -> None:
    code, stderr, stdout = run_cli(["--version"], tmp_path)
    assert code == 0, stderr
    assert re.fullmatch(r"data-pipelines \S+ \(dlt \S+, prefect \S+, Python \S+\)\n", stdout)


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_is_accepted_before_or_after_the_command(tmp_path: Path, where: str) -> None:
    args = ["backfill", "2026-13-45"]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    code, stderr, _ = run_cli(args, tmp_path)
    assert code == 2
    assert stderr[0] == "Traceback (most recent call last):"
    assert stderr[-1].startswith("start_date='2026-13-45' is not a valid date")


def test_without_debug_a_configuration_error_is_one_line(tmp_path: Path) -> None:
    code, stderr, _ = run_cli(["query", "select 1"], tmp_path, DATA_PIPELINES_ENV="staging")
    assert code == 2 and len(stderr) == 1, stderr
    assert "DATA_PIPELINES_ENV='staging' is not a known environment" in stderr[0]


def test_every_command_and_argument_has_help() -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    listed = {choice.dest: choice.help for choice in commands._choices_actions}
    missing = []
    for name, command in commands.choices.items():
        if not listed.get(name):
            missing.append(f"{name}: no help line")
        if not command.description:
            missing.append(f"{name}: no description")
        for action in command._actions:
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {action.dest}: no help")
    assert missing == []

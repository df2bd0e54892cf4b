"""One data folder: in a shell that sourced `.data/stack.env`, another
`DATA_PIPELINES_DATA_DIR` moves everything (warehouse, dlt state, bucket), for our commands and
for dlt's CLI, and the first folder gets nothing.

The stack.env is the one `data-pipelines up` writes (`dev_stack.stack._write_shell_env`); the
shell is bash, sourcing it as an operator does.
"""

# ruff: noqa: F811

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from dev_stack.stack import Stack, _write_shell_env
from pipelines.environment import PROJECT_DIR
from tests.fixtures.postgres import (  # noqa: F401
    ProductsDatabase,
    postgres_cluster,
    products_database,
    seeded_source,
)

RUN_PRODUCTS = (
    "python -c 'from environments import load_environment; from pipelines import products; "
    "products.run(load_environment())'"
)


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DLT_", "DATA_PIPELINES_", "PREFECT_API_URL"))
    }
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_another_data_folder_in_a_sourced_stack_shell_moves_everything(
    products_database: ProductsDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_folder, other = tmp_path / "stack-data", tmp_path / "other-data"
    stack_folder.mkdir()
    monkeypatch.setenv("DATA_PIPELINES_DATA_DIR", str(stack_folder))
    worker_env = {
        "PREFECT_API_URL": "",  # no server here: the run guard falls back to its file lock
        "DATA_PIPELINES_DATA_DIR": str(stack_folder),
        "DATA_PIPELINES_ENV": "local",
        "PREFECT_HOME": str(stack_folder / "prefect"),
    }
    _write_shell_env(Stack("", "", "", "", worker_env=worker_env))
    stack_env = stack_folder / "stack.env"
    assert "DLT_DATA_DIR=" not in stack_env.read_text()
    seeded_source(products_database, monkeypatch, 50, lookback=None)
    before = files(stack_folder)

    # a shell with a stale DLT_LOCAL_DIR (an older stack.env) is put right by sourcing the new one
    done = bash(
        f"export DLT_LOCAL_DIR={shlex.quote(str(stack_folder / 'warehouse'))}\n"
        f"source {shlex.quote(str(stack_env))}\n"
        f"export DATA_PIPELINES_DATA_DIR={shlex.quote(str(other))}\n"
        f"export SOURCES__PRODUCTS__CREDENTIALS={shlex.quote(products_database.dsn)}\n"
        f"{RUN_PRODUCTS} && "
        'data-pipelines query "select count(*) from DLT.APPLICATION_DATA.PRODUCTS" && '
        "dlt pipeline products info\n",
        cwd=tmp_path,  # not the repository: dlt finds the project through DLT_PROJECT_DIR
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert files(stack_folder) == before  # nothing landed in the stack's folder
    assert (other / "warehouse" / "dlt.duckdb").is_file()
    assert (other / "dlt" / "pipelines" / "products" / "state.json").is_file()
    assert "50" in done.stdout  # `query` read the other folder's warehouse
    assert str(other / "warehouse") in done.stdout or "application_data" in done.stdout


def test_a_dlt_folder_exported_outside_the_data_folder_is_refused(tmp_path: Path) -> None:
    done = bash(
        f"export DATA_PIPELINES_DATA_DIR={shlex.quote(str(tmp_path / 'data'))}\n"
        f"export DLT_LOCAL_DIR={shlex.quote(str(tmp_path / 'stack' / 'warehouse'))}\n"
        f"{shlex.quote(str(PROJECT_DIR / '.venv' / 'bin' / 'data-pipelines'))} "
        'query "select 1"',
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("DLT_LOCAL_DIR=") and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "data").exists()

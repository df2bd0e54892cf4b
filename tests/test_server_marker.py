"""The `server` marker stays honest: `make test-fast` (`-m "not server"`) never starts a server.

tests/conftest.py marks every test using a server fixture; with DATA_PIPELINES_TESTS_NO_SERVERS=1
every server starter refuses, naming the test. Checked here on a throwaway test module run by
a pytest of its own with the suite's conftest as a plugin; no server starts either way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent

MODULE = """
import pytest


def test_starts_a_standin_unmarked(tmp_path):
    from rehearsal import standin_process

    standin_process.start(1, [], tmp_path / "standin.log")


def test_starts_postgres_unmarked(tmp_path):
    from dev_stack import postgres

    postgres.ensure_running(tmp_path / "cluster")


def test_uses_the_cluster_fixture(postgres_cluster):
    raise AssertionError("never runs under -m 'not server'")


def test_uses_a_bucket_through_another_fixture(s3_bucket):
    raise AssertionError("never runs under -m 'not server'")


def test_needs_nothing():
    pass
"""


def fast_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    module = tmp_path / "test_marker_probe.py"
    module.write_text(MODULE)
    env = {**os.environ, "DATA_PIPELINES_TESTS_NO_SERVERS": "1"}
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "tests.conftest"),
            *("-p", "tests.fixtures.postgres", "-p", "tests.fixtures.moto"),
            *("-q", "-m", "not server", "--rootdir", str(tmp_path), str(module), *args),
        ],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_fast_run_deselects_server_fixtures_and_refuses_unmarked_servers(tmp_path: Path) -> None:
    result = fast_run(tmp_path, "-rf")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "2 failed, 1 passed, 2 deselected" in out, out
    for test, what in (
        ("test_starts_a_standin_unmarked", "the Snowflake stand-in"),
        ("test_starts_postgres_unmarked", "a PostgreSQL cluster"),
    ):
        assert f"test_marker_probe.py::{test} starts {what} in a run without servers" in out, out
    assert "mark it `@pytest.mark.server`" in out

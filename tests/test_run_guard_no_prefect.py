"""A local run with no Prefect API configured never imports Prefect (~1 s, ~80 MB).

Whether an API may be configured is decided the way Prefect's settings would find one: the
environment, then the active profile in the profiles file, then the working folder's files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent

LOCAL_RUN = """
import sys, time
began = time.perf_counter()
from environments import load_environment
from pipelines import currencies
currencies.run(load_environment())
print("prefect imported:", sorted(m for m in sys.modules if m.split(".")[0] == "prefect")[:3])
"""

API_URL = """
from environments.run_guard import prefect_api_url
print("api:", prefect_api_url())
"""


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), **extra)
    return env


def run(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_local_run_without_a_prefect_api_imports_no_prefect(
    data_dir: Path, oxr_sandbox, tmp_path: Path
) -> None:
    out = run(LOCAL_RUN, clean_env(tmp_path))
    assert "prefect imported: []" in out, out
    assert list((data_dir / "warehouse").glob("*.duckdb")), "the run loaded nothing"


@pytest.mark.parametrize("selected_by", ["file", "PREFECT_PROFILE"])
def test_an_api_named_by_the_active_profile_is_found(tmp_path: Path, selected_by: str) -> None:
    home = tmp_path / "prefect-home"
    home.mkdir()
    (home / "profiles.toml").write_text(
        f'active = "{"team" if selected_by == "file" else "ephemeral"}"\n'
        '[profiles.ephemeral]\nPREFECT_SERVER_ALLOW_EPHEMERAL_MODE = "true"\n'
        '[profiles.team]\nPREFECT_API_URL = "http://127.0.0.1:4999/api"\n'
    )
    extra = {"PREFECT_PROFILE": "team"} if selected_by == "PREFECT_PROFILE" else {}
    assert "api: http://127.0.0.1:4999/api" in run(API_URL, clean_env(tmp_path, **extra))


def test_a_profile_without_an_api_is_none(tmp_path: Path) -> None:
    home = tmp_path / "prefect-home"
    home.mkdir()
    (home / "profiles.toml").write_text(
        'active = "ephemeral"\n[profiles.ephemeral]\nPREFECT_SERVER_ALLOW_EPHEMERAL_MODE = "true"\n'
    )
    assert "api: None" in run(API_URL, clean_env(tmp_path))

"""The CLI's failures: one stderr line (the cause and its fix), exit 2 or 1, nothing started.

Bad input is refused before anything starts: each case runs the real console entry in a fresh
process and checks that Prefect was never imported (so no temporary Prefect server, which
costs 10-25 s and hundreds of stderr lines) and that no file was written in the data folder.
The time each took is printed (`-s`), not asserted: speed belongs to benchmarks, not to tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dev_stack.oxr_sandbox import DEFAULT_SANDBOX_APP_ID as SANDBOX_APP_ID
from dev_stack.oxr_sandbox import OXRSandbox

# Runs `main` as the console script does, then says whether Prefect was ever imported.
_ENTRY = (
    "import sys\n"
    "from data_pipelines_cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "print('prefect imported' if 'prefect' in sys.modules else 'prefect not imported')\n"
    "sys.exit(code)\n"
)
PROJECT_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def written(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


def run_cli(args: list[str], tmp_path: Path, **env: str) -> tuple[int, list[str], str, Path]:
    data = tmp_path / "data"
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SOURCES__", "OXR_", "DATA_PIPELINES_", "DLT_"))
    }
    environment.update(DATA_PIPELINES_DATA_DIR=str(data), **env)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _ENTRY, *args],
        cwd=PROJECT_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    print(
        f"data-pipelines {' '.join(args)}: exit {done.returncode} in "
        f"{time.monotonic() - started:.2f} s: {done.stderr.strip()}"
    )
    return done.returncode, done.stderr.splitlines(), done.stdout, data


@pytest.mark.parametrize(
    ("args", "cause"),
    [
        (["backfill", "2026-13-45"], "start_date='2026-13-45' is not a valid date: use YYYY-MM-DD"),
        (
            ["backfill", "2026-01-10", "2026-01-01"],
            "start_date=2026-01-10 is after end_date=2026-01-01",
        ),
        (["backfill", "2999-01-01", "2999-01-02"], "start_date=2999-01-01 is in the future"),
        (
            ["backfill", "2026-01-01", "2026-01-03"],
            "Open Exchange Rates configuration: HTTP 401 "
            "missing_app_id: no app id was sent: set SOURCES__OPEN_EXCHANGE_RATES__API_KEY",
        ),
        (["run", "exchange-rates"], "Open Exchange Rates configuration: HTTP 401 missing_app_id"),
    ],
    ids=["bad-date", "end-before-start", "future", "missing-key-backfill", "missing-key-run"],
)
def test_bad_input_is_one_line_exit_2_before_anything_starts(
    args: list[str], cause: str, tmp_path: Path
) -> None:
    code, stderr, stdout, data = run_cli(args, tmp_path)
    assert code == 2
    assert len(stderr) == 1 and stderr[0].startswith(cause), stderr
    assert "prefect not imported" in stdout
    assert written(data) == []


def test_unreachable_products_database_is_one_line_exit_2_without_the_password(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens there
    dsn = f"postgresql://loader:s3cret-pw@127.0.0.1:{port}/shop"
    code, stderr, stdout, data = run_cli(
        ["run", "products"], tmp_path, SOURCES__PRODUCTS__CREDENTIALS=dsn
    )
    assert code == 2
    assert len(stderr) == 1, stderr
    assert stderr[0].startswith(f"PostgreSQL at 127.0.0.1:{port} (database 'shop') is unreachable")
    assert "Check host and port in [sources.products] credentials" in stderr[0]
    assert "s3cret-pw" not in stderr[0]
    assert "prefect not imported" in stdout
    assert written(data) == []  # (reading the configuration may create empty folders)


def test_debug_adds_the_traceback(tmp_path: Path) -> None:
    code, stderr, _, _ = run_cli(["--debug", "backfill", "2026-13-45"], tmp_path)
    assert code == 2
    assert stderr[0] == "Traceback (most recent call last):"
    assert stderr[-1].startswith("start_date='2026-13-45' is not a valid date")


@pytest.mark.usefixtures("prefect_server")
def test_failures_inside_a_run_end_with_one_line_2_permanent_1_transient(
    oxr_sandbox: OXRSandbox,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from data_pipelines_cli.main import main

    # permanent: the key passes the pre-check (usage.json) but the run's request is refused
    oxr_sandbox.inject_faults("error_body", status=403, message="access_restricted")
    assert main(["run", "currencies"]) == 2
    err = capfd.readouterr().err
    # the run's own log lines stay on the console, its tracebacks only in the Prefect UI
    assert "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("Open Exchange Rates currencies.json: HTTP 403 access_restricted")
    )
    oxr_sandbox.reset()

    # transient: OXR keeps answering 503 through dlt's attempts and every Prefect retry
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__API_KEY", SANDBOX_APP_ID)
    oxr_sandbox.inject_faults("503", count=100)
    assert main(["run", "currencies"]) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("Open Exchange Rates currencies.json: HTTP 503")

"""Shared fixtures: the real parts the suite runs against.

- the OXR sandbox on a free loopback port (one per session, reset per test);
- Prefect's test harness (a real local API server on SQLite), started once per session;
- a project-local data folder per test, so dlt state and warehouse files never leak.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before any project module is imported: keep the real retry ladder's shape but make it fast,
# keep Prefect and dlt quiet and offline.
os.environ.setdefault("DATA_PIPELINES_RETRY_DELAY_SCALE", "0.001")
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.3")
# dlt's own log lines go to the flow run's logs, as on the worker (dev_stack/stack.py).
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "dlt")
# ...and outside a flow run (pipelines called directly) they stay local, without a warning.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# The harness server has no UI and `ui_url` (alert links) needs a base: the local stack's.
os.environ.setdefault("PREFECT_UI_URL", "http://127.0.0.1:4200")
# dlt's HTTP retries: real attempts, short waits.
os.environ.setdefault("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.05")
os.environ.setdefault("RUNTIME__REQUEST_MAX_RETRY_DELAY", "2")

from dev_stack.oxr_sandbox import DEFAULT_SANDBOX_APP_ID, OXRSandbox

SANDBOX_APP_ID = DEFAULT_SANDBOX_APP_ID


@pytest.fixture(scope="session")
def oxr_sandbox_server() -> Iterator[OXRSandbox]:
    with OXRSandbox(port=0, app_ids=(SANDBOX_APP_ID,)) as sandbox:
        yield sandbox


@pytest.fixture
def oxr_sandbox(
    oxr_sandbox_server: OXRSandbox, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OXRSandbox]:
    """The session's sandbox, reset, with dlt configured to use it through the environment."""
    oxr_sandbox_server.reset()
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__BASE_URL", oxr_sandbox_server.base_url)
    monkeypatch.setenv("SOURCES__OPEN_EXCHANGE_RATES__API_KEY", SANDBOX_APP_ID)
    yield oxr_sandbox_server
    oxr_sandbox_server.reset()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project data folder; dlt state, warehouse and bucket all live inside it."""
    folder = tmp_path / "data"
    (folder / "dlt").mkdir(parents=True)
    (folder / "warehouse").mkdir()
    monkeypatch.setenv("DATA_PIPELINES_DATA_DIR", str(folder))
    monkeypatch.setenv("DLT_DATA_DIR", str(folder / "dlt"))
    monkeypatch.setenv("DLT_LOCAL_DIR", str(folder / "warehouse"))
    monkeypatch.setenv("DATA_PIPELINES_ENV", "local")
    monkeypatch.delenv("DATA_PIPELINES_BUCKET_URL", raising=False)
    return folder


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One real Prefect API server (SQLite) for the whole session; it takes ~35 s to start."""
    from prefect.testing.utilities import prefect_test_harness

    from infra.prefect_setup import ensure_pipeline_concurrency_limits

    with prefect_test_harness(server_startup_timeout=120):
        # the platform as `data-pipelines apply prefect` leaves it: every pipeline run on this
        # API takes its `dlt-pipeline:<name>` limit (environments/run_guard.py)
        ensure_pipeline_concurrency_limits()
        yield

"""The run guard on a real Prefect server: one run per dlt pipeline across processes and machines.

The session's Prefect server (its limits created as `data-pipelines apply prefect` does) stands
for production's; crash recovery after `kill -9` needs the server's lease repossessor, which a
test harness does not run: tests/test_deployments.py covers it on the local stack's server.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from dev_stack.processes import free_port
from environments import run_guard
from environments.run_guard import (
    POLL_SECONDS,
    holder_variable,
    prefect_run_guard,
)
from pipelines.errors import is_permanent
from pipelines.locks import LockWaitTimeout
from pipelines.names import pipeline_concurrency_tag
from pipelines.registry import PIPELINES
from sources.errors import ConfigurationError

PROJECT_DIR = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("prefect_server")


def api_url() -> str:
    return str(PREFECT_API_URL.value())


def active_slots(pipeline: str) -> int:
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(pipeline_concurrency_tag(pipeline))
    return int(limit.active_slots)


def test_every_pipeline_has_a_strict_limit_of_one() -> None:
    with get_client(sync_client=True) as client:
        for name in PIPELINES:
            limit = client.read_global_concurrency_limit_by_name(f"dlt-pipeline:{name}")
            assert (limit.limit, limit.active) == (1, True)


@contextmanager
def held_elsewhere(pipeline: str) -> Iterator[threading.Event]:
    """Another thread holds the pipeline (it meets us only on the server, as a machine) until
    the block ends or the yielded event is set."""
    held, release = threading.Event(), threading.Event()

    def first_run() -> None:
        with prefect_run_guard(pipeline, api_url=api_url()):
            held.set()
            release.wait(120)

    holder = threading.Thread(target=first_run)
    holder.start()
    try:
        assert held.wait(30)
        yield release
    finally:
        release.set()
        holder.join(30)


def test_a_second_holder_waits_names_the_holder_and_starts_when_the_first_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="environments.run_guard")
    with held_elsewhere("currencies") as release:
        assert active_slots("currencies") == 1
        with (  # a bounded wait ends, transient
            pytest.raises(LockWaitTimeout) as timeout,
            prefect_run_guard("currencies", api_url=api_url(), max_wait=1),
        ):
            pass
        assert not is_permanent(timeout.value)
        assert "dlt-pipeline:currencies" in str(timeout.value)
        waiting = [r.getMessage() for r in caplog.records if "Waiting for" in r.getMessage()]
        assert waiting and "held by a run outside any Prefect flow run" in waiting[0], waiting

        release_at: list[float] = []
        threading.Timer(1.0, lambda: (release_at.append(time.monotonic()), release.set())).start()
        with prefect_run_guard("currencies", api_url=api_url()):
            got = time.monotonic()
            assert active_slots("currencies") == 1
    # the hand-over costs at most one poll (Prefect's own wait could be up to ~45 s)
    assert got - release_at[0] < POLL_SECONDS * 1.25 + 2, got - release_at[0]
    assert active_slots("currencies") == 0


def test_the_guard_is_reentrant_for_its_thread() -> None:
    with prefect_run_guard("products", api_url=api_url()):
        with prefect_run_guard("products", api_url=api_url(), max_wait=0):  # a run's audit
            assert active_slots("products") == 1
        assert active_slots("products") == 1
    assert active_slots("products") == 0


def test_a_failing_run_frees_its_slot_at_once() -> None:
    with pytest.raises(ZeroDivisionError), prefect_run_guard("exchange_rates", api_url=api_url()):
        1 / 0  # noqa: B018
    assert active_slots("exchange_rates") == 0


def test_a_missing_limit_is_a_configuration_error_naming_the_fix() -> None:
    with (
        pytest.raises(ConfigurationError) as error,
        prefect_run_guard("no_such_pipeline", api_url=api_url()),
    ):
        pytest.fail("ran without its limit")
    assert is_permanent(error.value)
    assert "data-pipelines apply prefect" in str(error.value)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_wait_is_quiet_and_says_when_it_starts_lasts_and_ends(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No ERROR line while waiting (Prefect logs one per refused attempt); INFO lines say why.

    Prefect's own loggers do not propagate to the root, so the records are taken where they are
    made: on Prefect's loggers and ours.
    """
    monkeypatch.setattr(run_guard, "REPORT_EVERY_SECONDS", 4.0)
    seen = Records()
    watched = [logging.getLogger(n) for n in ("prefect", "prefect._internal.concurrency")]
    watched.append(logging.getLogger("environments.run_guard"))  # propagates to the root
    old_level = watched[-1].level
    watched[-1].setLevel(logging.INFO)
    for source in watched:
        source.addHandler(seen)
    release_at: list[float] = []
    try:
        with held_elsewhere("currencies"):
            threading.Timer(9.0, lambda: release_at.append(time.monotonic())).start()
            with (
                pytest.raises(LockWaitTimeout),
                prefect_run_guard("currencies", api_url=api_url(), max_wait=9),
            ):
                pass
            # a second waiter, while the first still waits: its own start line
            with (
                pytest.raises(LockWaitTimeout),
                prefect_run_guard("currencies", api_url=api_url(), max_wait=1),
            ):
                pass
        with prefect_run_guard("currencies", api_url=api_url()):
            pass
    finally:
        for source in watched:
            source.removeHandler(seen)
        watched[-1].setLevel(old_level)
    root_errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    errors = [r.getMessage() for r in [*seen.records, *root_errors] if r.levelno >= logging.ERROR]
    assert errors == [], errors
    ours = [r.getMessage() for r in seen.records if r.name == "environments.run_guard"]
    assert sum(m.startswith("Waiting for the currencies pipeline") for m in ours) == 2, ours
    assert sum(m.startswith("Still waiting for the currencies pipeline") for m in ours) >= 1, ours
    assert all("held by a run outside any Prefect flow run" in m for m in ours if "held" in m)


def test_a_refused_acquisition_of_the_guard_logs_no_error() -> None:
    """The 423 race (the slot looked free, another run took it first) stays quiet too."""
    seen = Records()
    source = logging.getLogger("prefect._internal.concurrency")
    source.addHandler(seen)
    try:
        with held_elsewhere("exchange_rates"):
            from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError
            from prefect.concurrency.sync import concurrency

            run_guard._quiet_prefect_acquisition_errors()
            for _ in range(3):  # what the guard does when its read raced another run
                with (
                    pytest.raises(ConcurrencySlotAcquisitionError),
                    concurrency(
                        pipeline_concurrency_tag("exchange_rates"),
                        occupy=1,
                        lease_duration=run_guard.LEASE_SECONDS,
                        strict=True,
                        max_retries=0,
                        raise_on_lease_renewal_failure=True,
                    ),
                ):
                    pass
            time.sleep(1)  # the service logs from its own thread, after the caller has its error
    finally:
        source.removeHandler(seen)
    assert [r.getMessage() for r in seen.records if r.levelno >= logging.ERROR] == []


def test_an_inactive_limit_is_refused_naming_the_fix(data_dir: Path, oxr_sandbox) -> None:
    """A limit switched off (one click in the UI) would let every run in: refused, one line."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    name = pipeline_concurrency_tag("currencies")
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active=False))
    try:
        with (
            pytest.raises(ConfigurationError) as error,
            prefect_run_guard("currencies", api_url=api_url()),
        ):
            pytest.fail("ran under an inactive limit")
        assert is_permanent(error.value)
        assert "inactive" in str(error.value) and "data-pipelines apply prefect" in str(error.value)
        result = subprocess.run(
            [str(Path(sys.executable).with_name("data-pipelines")), "run", "currencies"],
            cwd=PROJECT_DIR,
            env={**os.environ, "PREFECT_API_URL": api_url()},
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        with get_client(sync_client=True) as client:
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active=True))
    assert result.returncode == 2, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "inactive" in last and "data-pipelines apply prefect" in last, result.stderr
    assert "Traceback" not in result.stderr
    assert oxr_sandbox.request_count() <= 1, oxr_sandbox.requests()  # the key check at most
    assert not list((data_dir / "warehouse").glob("*.duckdb")), "something was written"


def test_the_holder_record_is_removed_when_the_run_ends() -> None:
    with prefect_run_guard("products", api_url=api_url()):
        deadline = time.monotonic() + 10
        while True:
            with get_client(sync_client=True) as client:
                record = client.read_variable_by_name(holder_variable("products"))
            if record is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert record is not None and record.value["pid"] == os.getpid()
    with get_client(sync_client=True) as client:
        assert client.read_variable_by_name(holder_variable("products")) is None


def test_unreachable_api_loads_nothing_and_is_transient(data_dir: Path, oxr_sandbox) -> None:
    """A run whose Prefect API does not answer never loads unguarded: it fails, retryable.

    In a process of its own, as on a worker (Prefect keeps one acquisition client per process).
    """
    dead = f"http://127.0.0.1:{free_port()}/api"
    code = (
        "import sys\nfrom environments import load_environment\n"
        "from pipelines import currencies\nfrom pipelines.errors import report_failure\n"
        "try:\n    currencies.run(load_environment())\n"
        "except Exception as error:\n    sys.exit(report_failure(error))\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_DIR,
        env={**os.environ, "PREFECT_API_URL": dead},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - started < 60
    assert result.returncode == 1, result.stderr  # transient: a retry may pass
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"The Prefect API at {dead} did not answer")
    ), result.stderr
    assert oxr_sandbox.request_count() == 0, oxr_sandbox.requests()
    assert not list((data_dir / "warehouse").glob("*.duckdb")), "something was written"


@pytest.mark.parametrize(
    "command", [["run", "products"], ["backfill", "2026-01-01", "2026-01-02"]], ids=" ".join
)
def test_the_cli_says_in_one_line_which_prefect_api_is_down(
    command: list[str], tmp_path: Path
) -> None:
    """Checked before anything starts: one line naming the API and what to check, exit 1."""
    dead = f"http://127.0.0.1:{free_port()}/api"
    started = time.monotonic()
    result = subprocess.run(
        [str(Path(sys.executable).with_name("data-pipelines")), *command],
        cwd=PROJECT_DIR,
        env={
            # a process of its own: dlt's folders follow its data folder
            **{k: v for k, v in os.environ.items() if not k.startswith("DLT_")},
            "PREFECT_API_URL": dead,
            "DATA_PIPELINES_DATA_DIR": str(tmp_path / "data"),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr  # transient
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"The Prefect API at {dead} did not answer (connection refused)")
    assert "PREFECT_API_URL" in lines[0] and "Traceback" not in result.stderr
    assert time.monotonic() - started < 30
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.duckdb"))


def test_a_prefect_api_lost_mid_run_is_one_transient_line(capsys: pytest.CaptureFixture) -> None:
    """After the up-front check: Prefect's transport error is said as what it is."""
    import httpx

    from data_pipelines_cli.main import report_failure

    dead = f"http://127.0.0.1:{free_port()}/api"
    try:
        httpx.get(f"{dead}/flow_runs/", timeout=5)
    except httpx.ConnectError as refused:
        error = RuntimeError("flow run failed")
        error.__cause__ = refused
    with temporary_settings(updates={PREFECT_API_URL: dead}):
        code = report_failure(error, debug=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"The Prefect API at {dead} did not answer, so the run stopped")


def test_production_without_a_prefect_api_refuses_in_one_line(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_API", "DLT_", "DATA_PIPELINES_"))
    }
    env.update(
        DATA_PIPELINES_ENV="production",
        DATA_PIPELINES_DATA_DIR=str(tmp_path / "data"),
        PREFECT_HOME=str(tmp_path / "prefect-home"),  # no profile pointing at a server
    )
    result = subprocess.run(
        [str(Path(sys.executable).with_name("data-pipelines")), "run", "currencies"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "PREFECT_API_URL" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.duckdb"))

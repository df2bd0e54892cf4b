"""Shared fixtures: the real parts the suite runs against.

- the OXR sandbox on a free loopback port (one per session, reset per test);
- Prefect's test harness (a real local API server on SQLite), started once per session;
- a project-local data folder per test, so dlt state and warehouse files never leak.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# --- Which tests need a server: the `server` marker, and `make test-fast`'s guard -------------
#
# A test needs a server when it uses one of these fixtures, directly or through another
# fixture: it is marked `server` at collection, so the marker cannot be forgotten. Modules
# that start a server of their own (a module fixture, or a benchmark in a subprocess) say
# `pytestmark = pytest.mark.server` themselves. `make test-fast` runs `-m "not server"` with
# DATA_PIPELINES_TESTS_NO_SERVERS=1: then every server starter below refuses, naming the test,
# so an unmarked test that starts one fails instead of slowing the inner loop down.
SERVER_FIXTURES = {
    "postgres_cluster": "a PostgreSQL cluster",
    "products_database": "a PostgreSQL cluster",
    "prefect_server": "a Prefect server",
    "moto_server": "moto",
    "s3_bucket": "moto",
    "snowflake_standin": "the Snowflake stand-in",
    "stand_ins": "the rehearsal's stand-ins",
}
NO_SERVERS_VAR = "DATA_PIPELINES_TESTS_NO_SERVERS"


# --- How `make test` spreads the suite over its workers (`--dist loadscope`) ------------------
#
# Every module's tests stay on one worker (its module fixtures start once: a local stack, a
# Prefect server of its own, the stand-ins), except in the modules below, whose tests are split
# by test function: each function's tests (its parameters) stay together, and each worker that
# runs one starts the module's fixtures for itself (a Prefect server: ~15 s, more when busy).
# They are the long ones: lease waits, restarted servers, whole stacks in subprocesses; on one
# worker each made a tail of minutes. (xdist's own `--dist loadgroup` cannot do this under
# pytest 9: it renames items through `item._nodeid`, which pytest 9 no longer reads, so its
# groups are silently ignored. The scheduler below groups by node id instead.)
SPLIT_BY_FUNCTION = (
    "test_fencing_standin",
    "test_guard_server_faults",
    "test_crash_recovery",
    "test_benchmarks",
)
# A short test that rides with a long one of its module: one server start less.
SAME_WORKER_AS = {
    "test_crash_recovery.test_apply_prefect_lists_one_limit_per_pipeline": (
        "test_crash_recovery.test_products_run_waits_for_a_holder_and_starts_soon_after_it_is_killed"
    ),
}
# The longest groups first (measured with `--durations=0`, module fixtures included), so the
# other workers fill in around them instead of waiting for them at the end; every other group
# follows in collection order. Only the order depends on this list, never a result.
LONGEST_FIRST = (
    "test_deployments",
    "test_fencing_standin.test_a_holder_partitioned_from_prefect_loses_the_slot_and_cannot_commit",
    "test_alerting",
    "test_guard_server_faults.test_a_restarted_server_loses_the_lease_and_the_next_run_starts_without_an_operator",
    "test_rehearsal",
    "test_crash_recovery.test_backfill_killed_mid_load_is_finished_by_another_worker_without_a_doubled_day",
    "test_crash_recovery.test_products_run_waits_for_a_holder_and_starts_soon_after_it_is_killed",
    "test_benchmarks.test_bench_run_guard_crash_recovery",
    "test_benchmarks.test_bench_latency",
    "test_guard_server_faults.test_a_killed_holder_is_never_named_and_its_flow_run_ends_crashed",
    "test_guard_server_faults.test_an_in_process_flow_run_killed_with_no_next_run_ends_crashed",
    "test_benchmarks.test_bench_enqueue",
    "test_fencing_standin",  # its other function: the lost-slot tests
    "test_benchmarks",  # the short ones
)


def group_of(nodeid: str) -> str:
    """A test's scheduling group, from its node id: its module, or in the modules split by
    function its module and function (`tests/test_a.py::test_f[x]` -> `test_a.test_f`)."""
    path, _, rest = nodeid.partition("::")
    module = path.rsplit("/", 1)[-1].removesuffix(".py")
    if module not in SPLIT_BY_FUNCTION:
        return module
    name = f"{module}.{rest.split('[', 1)[0].rsplit('::', 1)[-1]}"
    return SAME_WORKER_AS.get(name, name)


def _rank(group: str) -> int:
    """Position of `group` in LONGEST_FIRST (its own name, else its module's), else last."""
    for name in (group, group.split(".", 1)[0]):
        if name in LONGEST_FIRST:
            return LONGEST_FIRST.index(name)
    return len(LONGEST_FIRST)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under `--dist loadscope` (scripts/test.sh): one unit of work per group, not per module."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)
    # longest groups first; stable, so a group's tests keep their order and stay together
    items.sort(key=lambda item: _rank(group_of(item.nodeid)))


class ServerInFastRun(RuntimeError):
    """A test run without servers (`make test-fast`) tried to start one."""


def _refuse(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
        raise ServerInFastRun(
            f"{test} starts {what} in a run without servers ({NO_SERVERS_VAR}=1, "
            "`make test-fast`): mark it `@pytest.mark.server` (or use the shared fixtures of "
            "tests/conftest.py, which mark it)"
        )

    return refuse


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(NO_SERVERS_VAR) != "1":
        return
    # Prefect's ephemeral server (a flow run without PREFECT_API_URL) refuses too, in child
    # processes as well: Prefect's own setting, inherited through the environment. (Its test
    # harness is started by the `prefect_server` fixture only, which marks its tests.)
    os.environ["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] = "false"
    import moto.server

    from dev_stack import postgres, prefect_server, stack
    from rehearsal import standin_process

    patches = [
        (postgres, "ensure_running", "a PostgreSQL cluster"),
        (prefect_server.PrefectServerProcess, "start", "a Prefect server"),
        (moto.server.ThreadedMotoServer, "start", "moto"),
        (standin_process, "start", "the Snowflake stand-in"),
        (stack, "up", "the local stack"),
    ]
    for owner, name, what in patches:
        setattr(owner, name, _refuse(what))

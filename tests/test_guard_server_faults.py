"""The run guard when the orchestrator misbehaves: a restarted server, a killed holder.

A real `prefect server start` (the test harness runs no lease repossessor), restarted on the
same database and port as an operator restarts a self-hosted server; holders and waiters are
processes of their own, as on machines of the pool.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings

from dev_stack.prefect_server import PrefectServerProcess, restartable_prefect_server
from environments.run_guard import LEASE_SECONDS, holder_variable
from infra.prefect_setup import ensure_pipeline_concurrency_limits
from pipelines.names import pipeline_concurrency_tag
from tests.fixtures.prefect_pool import QUICK_REPOSSESSOR

# a restartable Prefect server of its own (module fixture `server`)
pytestmark = pytest.mark.server
PROJECT_DIR = Path(__file__).resolve().parent.parent
# What an operator may expect after a restart: the lease, plus a minute.
RESTART_BOUND_SECONDS = LEASE_SECONDS + 60

HOLDER = """
import pathlib, sys, time
from environments.run_guard import prefect_run_guard
finish = pathlib.Path(sys.argv[1])
try:
    with prefect_run_guard(sys.argv[2], api_url=sys.argv[3]):
        print("held", flush=True)
        deadline = time.monotonic() + 600
        while not finish.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
finally:
    print("released", time.time(), flush=True)
"""

FLOW_HOLDER = """
import sys, time
from prefect import flow
from environments.run_guard import prefect_run_guard

@flow(name="guard-holder")
def hold() -> None:
    with prefect_run_guard(sys.argv[1], api_url=sys.argv[2]):
        print("held", flush=True)
        time.sleep(600)

hold()
"""

WAITER = """
import logging, sys, time
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
from environments.run_guard import prefect_run_guard
with prefect_run_guard(sys.argv[1], api_url=sys.argv[2]):
    print("got", time.time(), flush=True)
"""


@pytest.fixture(scope="module")
def server() -> Iterator[PrefectServerProcess]:
    with restartable_prefect_server(QUICK_REPOSSESSOR) as server, client_of(server):
        ensure_pipeline_concurrency_limits()
        yield server


@contextmanager
def client_of(server: PrefectServerProcess) -> Iterator[SyncPrefectClient]:
    with (
        temporary_settings(updates={PREFECT_API_URL: server.api_url}),
        get_client(sync_client=True) as client,
    ):
        yield client


def env(server: PrefectServerProcess) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    environment.update(
        PREFECT_API_URL=server.api_url, PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW="ignore"
    )
    return environment


def python(code: str, *args: str, server: PrefectServerProcess, out: Path) -> subprocess.Popen:
    with out.open("w") as handle:
        return subprocess.Popen(
            [sys.executable, "-c", code, *args],
            cwd=PROJECT_DIR,
            env=env(server),
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def wait_for_line(path: Path, pattern: str, process: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, path.read_text())
        if match:
            return match.group(0)
        assert process.poll() is None, path.read_text()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} within {timeout:.0f} s:\n{path.read_text()[-3000:]}")


def active_slots(server: PrefectServerProcess, pipeline: str) -> int:
    with client_of(server) as client:
        found = client.read_global_concurrency_limit_by_name(pipeline_concurrency_tag(pipeline))
    return int(found.active_slots)


def kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


def test_a_restarted_server_loses_the_lease_and_the_next_run_starts_without_an_operator(
    server: PrefectServerProcess, tmp_path: Path
) -> None:
    """Leases live in the server's memory: after a restart the slot stays counted taken with
    no lease to expire. The holder finishes its run; the next run starts within lease + 60 s,
    never while the holder still runs."""
    finish = tmp_path / "finish"
    holder_log, waiter_log = tmp_path / "holder.log", tmp_path / "waiter.log"
    holder = python(
        HOLDER, str(finish), "currencies", server.api_url, server=server, out=holder_log
    )
    waiter = None
    try:
        wait_for_line(holder_log, "held", holder, 120)
        away = server.restart()
        assert active_slots(server, "currencies") == 1  # counted taken; its lease is gone
        waiter = python(WAITER, "currencies", server.api_url, server=server, out=waiter_log)
        wait_for_line(waiter_log, "Waiting for the currencies pipeline", waiter, 120)
        time.sleep(20)  # the holder goes on working after the restart; the waiter waits
        assert "got" not in waiter_log.read_text()
        finish.touch()
        released = float(wait_for_line(holder_log, r"released [\d.]+", holder, 180).split()[1])
        got = float(
            wait_for_line(waiter_log, r"got [\d.]+", waiter, RESTART_BOUND_SECONDS + 60).split()[1]
        )
        assert waiter.wait(60) == 0, waiter_log.read_text()[-3000:]
    finally:
        kill(holder)
        if waiter is not None:
            kill(waiter)
    waited = got - released
    print(
        f"server away {away:.1f} s; the next run got the slot {waited:.1f} s after the "
        f"holder ended (bound {RESTART_BOUND_SECONDS:g} s)"
    )
    assert 0 < waited < RESTART_BOUND_SECONDS, waiter_log.read_text()[-3000:]
    assert "Freed 'dlt-pipeline:currencies'" in waiter_log.read_text()
    assert not re.search(r"^(ERROR|CRITICAL)", waiter_log.read_text(), re.MULTILINE)
    assert active_slots(server, "currencies") == 0


def test_a_killed_holder_is_never_named_and_its_flow_run_ends_crashed(
    server: PrefectServerProcess, tmp_path: Path
) -> None:
    holder_log, waiter_log = tmp_path / "holder.log", tmp_path / "waiter.log"
    holder = python(FLOW_HOLDER, "products", server.api_url, server=server, out=holder_log)
    waiter = None
    try:
        wait_for_line(holder_log, "held", holder, 120)
        deadline = time.monotonic() + 30
        with client_of(server) as client:
            (dead,) = [r for r in client.read_flow_runs() if r.state_type == StateType.RUNNING]
            while client.read_variable_by_name(holder_variable("products")) is None:
                assert time.monotonic() < deadline, "the holder never said who it is"
                time.sleep(0.2)
        kill(holder)
        killed = time.monotonic()
        waiter = python(WAITER, "products", server.api_url, server=server, out=waiter_log)
        wait_for_line(waiter_log, "got", waiter, LEASE_SECONDS + 90)
        started_after = time.monotonic() - killed
        assert waiter.wait(60) == 0, waiter_log.read_text()[-3000:]
    finally:
        kill(holder)
        if waiter is not None:
            kill(waiter)
    print(f"the next run got the slot {started_after:.1f} s after its holder was killed")
    lines = [line for line in waiter_log.read_text().splitlines() if "aiting for" in line]
    print("\n".join(lines))
    assert lines, waiter_log.read_text()
    assert not any(dead.name in line or str(dead.id) in line for line in lines), lines
    assert "held by no live run" in lines[0], lines
    with client_of(server) as client:
        state = client.read_flow_run(dead.id).state
    assert state is not None and state.type == StateType.CRASHED, state


SILENT_FLOW = """
import time
from prefect import flow

@flow(name="silent-holder")
def work() -> None:
    print("running", flush=True)
    time.sleep(600)

work()
"""


def test_an_in_process_flow_run_killed_with_no_next_run_ends_crashed(
    server: PrefectServerProcess, tmp_path: Path
) -> None:
    """No later run takes over: Prefect's flow-run heartbeats and the automation
    `data-pipelines apply prefect` creates mark it Crashed (here with 30 s heartbeats)."""
    from infra.alerting import ensure_silent_flow_runs_crash

    within = 60.0
    with client_of(server):
        ensure_silent_flow_runs_crash(within=within)
    with client_of(server) as client:
        before = {r.id for r in client.read_flow_runs()}
    log = tmp_path / "flow.log"
    environment = {**env(server), "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
    with log.open("w") as out:
        doomed = subprocess.Popen(
            [sys.executable, "-c", SILENT_FLOW],
            cwd=PROJECT_DIR,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        wait_for_line(log, "running", doomed, 120)
        time.sleep(2)  # its first heartbeat is out
        with client_of(server) as client:
            (run,) = [r for r in client.read_flow_runs() if r.id not in before]
        kill(doomed)
        killed = time.monotonic()
        deadline = killed + within + 180
        while time.monotonic() < deadline:
            with client_of(server) as client:
                state = client.read_flow_run(run.id).state
            if state is not None and state.type == StateType.CRASHED:
                break
            time.sleep(2)
    finally:
        kill(doomed)
    crashed_after = time.monotonic() - killed
    print(f"a killed in-process flow run ended Crashed {crashed_after:.0f} s after the kill")
    assert state is not None and state.type == StateType.CRASHED, state

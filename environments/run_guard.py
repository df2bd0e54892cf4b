"""One run per dlt pipeline across every machine of the pool: a Prefect global concurrency limit.

Production is a pool of fresh machines (a process worker's temporary clone, a pod per run), so
a file lock holds nothing there: two runs of one pipeline on two machines both "hold" it. The
Prefect server every worker already talks to is the one place they all see, so the guard is a
global concurrency limit per dlt pipeline, `dlt-pipeline:<name>` with limit 1
(`infra.prefect_setup.ensure_pipeline_concurrency_limits`, applied by `data-pipelines apply
prefect` and `up`), taken through Prefect's public `prefect.concurrency.sync.concurrency`:

- leased (`LEASE_SECONDS`): a holder that dies (`kill -9`, a lost pod) frees the slot when the
  lease runs out plus the server's expiry loop (~15 s); one that fails or ends frees it at once;
- strict: a missing or switched-off (inactive) limit is a configuration error, never a pass;
- renewal failure stops the run (`raise_on_lease_renewal_failure`): Prefect injects a
  cancellation into the running thread, so no further statement starts. A call blocked inside
  a driver (a COPY, the merge's transaction) is not interrupted: the cancellation lands when it
  returns, so that one statement may still commit; nothing after it runs.

A lease is not a lock, so the guard also keeps a holder record, the Prefect variable
`dlt-pipeline-holder-<name>`: who holds the slot (flow run, host, pid) and a heartbeat every
`HEARTBEAT_SECONDS`. Waiters read it to name a live holder (never a dead one), and to repair
a slot Prefect lost the lease of: a self-hosted server keeps leases in memory, so after its
restart the slot stays counted taken with no lease that could ever expire. When the slot has
been taken for `ORPHAN_AFTER_SECONDS` of a waiter's own watch with no holder heard from (longer
than the server itself takes to expire a real lease), the waiter resets the limit's count and
takes it. A wrongful repair (a holder cut off that long) is what the warehouse's fencing
refuses. The holder that takes a slot after a dead one marks that one's flow run Crashed.

Prefect's own wait is the server's `Retry-After` (up to 30 s, jittered, by default), which would
add up to ~45 s to every hand-over; this module polls every `POLL_SECONDS` instead (reading the
limit, which logs nothing, and asking for the slot only when it looks free), so a waiting run
starts within seconds of the slot being freed. It logs one line when the wait starts, one a
minute while it lasts and one when it ends. docs/production.md, "The run guard".
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.locks import LockWaitTimeout
from pipelines.names import pipeline_concurrency_tag
from sources.errors import ConfigurationError, TransientSourceError

logger = logging.getLogger(__name__)

# The shortest lease Prefect accepts; renewed every 0.75 x lease by Prefect's renewal thread.
LEASE_SECONDS = 60.0
# How often a waiting run asks again (with +-25% jitter so waiters do not move in step).
POLL_SECONDS = 2.0
# How often a holder says it is alive (its holder record's heartbeat), and when it first does
# (a waiter's first line waits up to two polls for it).
HEARTBEAT_SECONDS = 15.0
FIRST_WRITE_SECONDS = 0.5
# A slot counted taken while no holder was heard from for this long, by a waiter's own clock,
# has no live lease: the server expires a real one within the lease plus its 15 s loop.
ORPHAN_AFTER_SECONDS = LEASE_SECONDS + 20.0
# A holder record older than this (its `updated` time) is a holder that stopped answering.
SILENT_AFTER_SECONDS = 2 * HEARTBEAT_SECONDS + 10.0
# One "still waiting" line this often.
REPORT_EVERY_SECONDS = 60.0
# A waiting run whose Prefect API stops answering keeps waiting this long, then fails.
UNREACHABLE_GIVE_UP_SECONDS = 300.0
APPLY_HINT = "run `data-pipelines apply prefect` against this Prefect API"


class RunGuardUnavailable(TransientSourceError):
    """The Prefect API that holds the run guard did not answer: nothing was loaded (transient)."""


def unreachable_message(api_url: str, what: str, cause: str = "") -> str:
    """One line: which Prefect API did not answer, and what to check (no secrets in it)."""
    because = f" ({cause})" if cause else ""
    return (
        f"The Prefect API at {_safe_url(api_url)} did not answer{because}, so {what}. Check "
        "that the Prefect server is up (`data-pipelines up` locally) and that PREFECT_API_URL "
        "(or the active Prefect profile) points at it, then rerun."
    )


def _safe_url(url: str) -> str:
    """The URL without any user:password part."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url


def holder_variable(pipeline_name: str) -> str:
    """The Prefect variable naming who holds the pipeline's slot (visible in the UI)."""
    return f"dlt-pipeline-holder-{pipeline_name}"


_held = threading.local()


def _held_names() -> dict[str, int]:
    if not hasattr(_held, "names"):
        _held.names = {}
    return _held.names  # type: ignore[no-any-return]


def _is_busy(error: BaseException) -> bool:
    """A 423 Locked answer: the slot is taken (the only failure worth waiting on)."""
    import httpx

    cause = error.__cause__
    return isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423


class _QuietGuardAcquisitions(logging.Filter):
    """Drops Prefect's ERROR line for a refused acquisition made by this guard.

    Prefect's acquisition service logs `Service 'ConcurrencySlotAcquisitionWithLeaseService'
    failed to process item ...` for every refused attempt (a 423 while another run holds the
    slot, an API that does not answer), though the caller gets the error too. The guard answers
    each one itself (waits, or fails in one line), so only the guard's own attempts are dropped:
    those with its signature (no retries, strict, its lease); any other acquisition's stay.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not (
            isinstance(args, tuple)
            and len(args) == 2
            and args[0] == "ConcurrencySlotAcquisitionWithLeaseService"
            and isinstance(args[1], tuple)
            and len(args[1]) >= 6
        ):
            return True
        item = args[1]
        return not (item[3] == 0 and item[4] == LEASE_SECONDS and item[5] is True)


def _quiet_prefect_acquisition_errors() -> None:
    """Install the filter on the logger that emits the line (idempotent)."""
    source = logging.getLogger("prefect._internal.concurrency")
    if not any(isinstance(f, _QuietGuardAcquisitions) for f in source.filters):
        source.addFilter(_QuietGuardAcquisitions())


# ---- the holder record -----------------------------------------------------------------------


def _own_flow_run() -> tuple[str | None, str | None]:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return None, None
    return str(context.flow_run.id), context.flow_run.name


def _command() -> str:
    argv = [Path(sys.argv[0]).name if sys.argv else "python", *sys.argv[1:3]]
    return " ".join(arg if len(arg) <= 40 else arg[:37] + "..." for arg in argv)


def _holder_text(record: dict[str, Any]) -> str:
    who = (
        f"flow run {record['flow_run_name']!r} ({record['flow_run_id']})"
        if record.get("flow_run_id")
        else f"a run outside any Prefect flow run (`{record.get('command')}`)"
    )
    return f"{who} on {record.get('host')}, pid {record.get('pid')}, since {record.get('since')}"


def _read_record(client: Any, pipeline_name: str) -> tuple[dict[str, Any] | None, float | None]:
    """The holder record and its age in seconds (by its server `updated` time), if any."""
    variable = client.read_variable_by_name(holder_variable(pipeline_name))
    if variable is None or not isinstance(variable.value, dict):
        return None, None
    updated = variable.updated
    age = (datetime.now(UTC) - updated).total_seconds() if updated is not None else None
    return variable.value, age


def _record_is_alive(record: dict[str, Any], age: float | None) -> bool:
    """Its holder answered lately, and (on this host) its process still exists."""
    if age is None or age > SILENT_AFTER_SECONDS:
        return False
    if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int):
        try:
            os.kill(record["pid"], 0)
        except ProcessLookupError:
            return False
        except OSError:
            pass  # exists, owned by someone else
    return True


def _crash_dead_holder(client: Any, record: dict[str, Any], pipeline_name: str) -> None:
    """Mark the flow run of a holder that died holding the slot Crashed (if still Running)."""
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    run_id = record.get("flow_run_id")
    if not run_id or run_id == _own_flow_run()[0]:
        return
    flow_run = client.read_flow_run(run_id)
    if flow_run.state is None or flow_run.state.type != StateType.RUNNING:
        return
    client.set_flow_run_state(
        run_id,
        Crashed(
            message=f"Its process stopped answering while it held the {pipeline_name} "
            f"pipeline (last heard at {record.get('beat_at')}); a later run took the pipeline "
            "over. Killed, or its machine was lost."
        ),
        force=True,
    )
    logger.info(
        "Marked flow run %r (%s) Crashed: it stopped answering while holding the %s pipeline",
        record.get("flow_run_name"),
        run_id,
        pipeline_name,
    )


def _crash_leftover_holder(client: Any, pipeline_name: str) -> None:
    """After a wait: a holder record still there is a holder that died without removing it."""
    try:
        previous, _ = _read_record(client, pipeline_name)
        if previous:
            _crash_dead_holder(client, previous, pipeline_name)
    except Exception as error:  # only a flow run's state depends on it
        logger.debug("Could not mark the previous holder of %s Crashed: %s", pipeline_name, error)


_clients: dict[tuple[str, int], Any] = {}
_clients_lock = threading.Lock()


def _client(api_url: str) -> Any:
    """One open Prefect client per API and process, shared by guards and heartbeats.

    Opening one costs ~25 ms here, a third of a whole acquire and release; httpx's client is
    safe to share between threads. It is closed when the process ends.
    """
    from prefect.client.orchestration import get_client

    key = (api_url, os.getpid())
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = get_client(sync_client=True)
            client.__enter__()
            _clients[key] = client
        return client


@contextmanager
def _holder_record(client: Any, pipeline_name: str) -> Iterator[None]:
    """Publish who holds the slot, with a heartbeat, for as long as the block runs.

    Written from a thread of its own (off the run's path): after `FIRST_WRITE_SECONDS`, then
    every `HEARTBEAT_SECONDS`. Removed on the way out, before the slot is released, so it never
    outlives a holder that ended.
    """
    import contextvars

    from prefect.client.schemas.actions import VariableCreate, VariableUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    name = holder_variable(pipeline_name)
    flow_run_id, flow_run_name = _own_flow_run()
    record: dict[str, Any] = {
        "flow_run_id": flow_run_id,
        "flow_run_name": flow_run_name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": _command(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
        "beat": 0,
    }
    published = threading.Event()

    def write() -> None:
        import httpx

        first = record["beat"] == 0
        record["beat"] += 1
        record["beat_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        value = dict(record)
        if first:
            try:
                client.create_variable(VariableCreate(name=name, value=value))
                published.set()
                return
            except ObjectAlreadyExists:
                # a holder before us did not remove its record: it died, or lost its lease
                previous, _ = _read_record(client, pipeline_name)
                if previous:
                    try:
                        _crash_dead_holder(client, previous, pipeline_name)
                    except (ObjectNotFound, ValueError) as error:
                        logger.debug("No flow run to mark Crashed: %s", error)
        try:
            client.update_variable(VariableUpdate(name=name, value=value))
        except httpx.HTTPStatusError as error:  # removed meanwhile (a holder cut off): again
            if error.response.status_code != 404:
                raise
            client.create_variable(VariableCreate(name=name, value=value))
        published.set()

    stop = threading.Event()

    def heartbeats() -> None:
        if stop.wait(FIRST_WRITE_SECONDS):  # a run that ended by then needs no record
            return
        while True:
            try:
                write()
            except Exception as error:  # the next beat tries again
                logger.debug("Holder heartbeat for %s failed: %s", pipeline_name, error)
            if stop.wait(HEARTBEAT_SECONDS):
                return

    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(heartbeats,), daemon=True, name=f"run-guard-{pipeline_name}"
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        if published.is_set():
            try:
                # ours, unless this holder was cut off long enough to be taken over: then the
                # new holder's next heartbeat writes its record again
                client.delete_variable_by_name(name)
            except Exception as error:  # a leftover record is taken over by the next holder
                logger.debug("Could not remove the holder record of %s: %s", pipeline_name, error)


# ---- waiting ---------------------------------------------------------------------------------


@dataclass
class _SlotState:
    taken: bool
    record: dict[str, Any] | None
    record_age: float | None


def _read_state(client: Any, pipeline_name: str, api_url: str, with_record: bool) -> _SlotState:
    """The limit as the server counts it; a missing or inactive one is a ConfigurationError."""
    from prefect.exceptions import ObjectNotFound

    limit = pipeline_concurrency_tag(pipeline_name)
    try:
        found = client.read_global_concurrency_limit_by_name(limit)
    except ObjectNotFound:
        raise ConfigurationError(
            f"The Prefect API at {_safe_url(api_url)} has no global concurrency limit "
            f"{limit!r}, which keeps {pipeline_name} to one run at a time: {APPLY_HINT}, then "
            "rerun."
        ) from None
    if not found.active:
        raise ConfigurationError(
            f"The Prefect global concurrency limit {limit!r} at {_safe_url(api_url)} is "
            f"switched off (inactive), so it would not keep {pipeline_name} to one run at a "
            f"time: {APPLY_HINT} (it switches the limit back on), then rerun."
        )
    taken = found.active_slots >= found.limit
    record, age = _read_record(client, pipeline_name) if (taken and with_record) else (None, None)
    return _SlotState(taken=taken, record=record, record_age=age)


class _Wait:
    """What a waiting run has seen: for its log lines and to tell an orphaned slot."""

    def __init__(self, what: str, max_wait: float | None) -> None:
        self.what, self.max_wait = what, max_wait
        self.started = time.monotonic()
        self.reported_at: float | None = None
        self.heard: Any = object()  # the record (with its heartbeat) last seen
        self.heard_at = self.started  # when it last changed, by our clock
        self.unreachable_since: float | None = None

    def holder(self, state: _SlotState) -> str:
        record = state.record
        if record is None:
            return "a run that has not said who it is (an older version, or one that is gone)"
        if _record_is_alive(record, state.record_age):
            return f"{_holder_text(record)} (last heard {state.record_age or 0:.0f} s ago)"
        return (
            "no live run: its last holder stopped answering "
            f"{state.record_age or 0:.0f} s ago (killed, or cut off)"
        )

    def observe(self, state: _SlotState) -> None:
        key = json.dumps(state.record, sort_keys=True, default=str)
        if key != self.heard:
            self.heard, self.heard_at = key, time.monotonic()
        now = time.monotonic()
        limit_text = (
            "as long as it takes" if self.max_wait is None else f"at most {self.max_wait:g} s"
        )
        if self.reported_at is None:
            if state.record is None and now - self.started < 2 * POLL_SECONDS + 1:
                return  # a holder that has just started writes its record within moments
            logger.info(
                "Waiting for %s: held by %s; waiting %s", self.what, self.holder(state), limit_text
            )
            self.reported_at = now
        elif now - self.reported_at >= REPORT_EVERY_SECONDS:
            logger.info(
                "Still waiting for %s after %.0f s: held by %s",
                self.what,
                now - self.started,
                self.holder(state),
            )
            self.reported_at = now

    def silent_for(self) -> float:
        return time.monotonic() - self.heard_at


def _repair_orphan(client: Any, pipeline_name: str, api_url: str, wait: _Wait) -> bool:
    """Free a slot the server counts taken but no holder has held for ORPHAN_AFTER_SECONDS."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    state = _read_state(client, pipeline_name, api_url, with_record=True)
    if not state.taken:
        return False
    if json.dumps(state.record, sort_keys=True, default=str) != wait.heard:
        return False  # a holder spoke up meanwhile
    limit = pipeline_concurrency_tag(pipeline_name)
    client.update_global_concurrency_limit(limit, GlobalConcurrencyLimitUpdate(active_slots=0))
    logger.warning(
        "Freed %r: the Prefect API counted it taken, but no run had held it for %.0f s (its "
        "lease was lost, e.g. the Prefect server restarted); taking it over. The warehouse "
        "refuses a load from a holder that is no longer current.",
        limit,
        wait.silent_for(),
    )
    return True


@contextmanager
def prefect_run_guard(
    pipeline_name: str, *, api_url: str, max_wait: float | None = None
) -> Iterator[None]:
    """Hold the `dlt-pipeline:<name>` slot on the Prefect API at `api_url` for the block.

    Reentrant for the holding thread (a run, then its audit). Waits while another run holds the
    slot (log lines naming the holder), without end or up to `max_wait` seconds
    (`LockWaitTimeout`, transient). A missing or inactive limit is a `ConfigurationError`; an
    API that does not answer is `RunGuardUnavailable` (transient): the run never loads
    unguarded.
    """
    held = _held_names()
    if held.get(pipeline_name):
        held[pipeline_name] += 1
        try:
            yield
        finally:
            held[pipeline_name] -= 1
        return

    import httpx
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import PrefectHTTPStatusError

    _quiet_prefect_acquisition_errors()
    limit = pipeline_concurrency_tag(pipeline_name)
    what = f"the {pipeline_name} pipeline (Prefect global concurrency limit {limit!r})"
    unreachable = unreachable_message(
        api_url, f"the {pipeline_name} run cannot take {limit!r} and loaded nothing; it is retried"
    )
    wait: _Wait | None = None
    with ExitStack() as stack:
        client = _client(api_url)
        while True:
            try:
                state = _read_state(client, pipeline_name, api_url, with_record=True)
                if wait is not None:
                    wait.unreachable_since = None
            except (httpx.TransportError, PrefectHTTPStatusError, httpx.HTTPStatusError) as error:
                # before any wait: the API is down, fail now; while waiting: ride out a restart
                if wait is None:
                    raise RunGuardUnavailable(unreachable) from error
                now = time.monotonic()
                wait.unreachable_since = wait.unreachable_since or now
                if now - wait.unreachable_since > UNREACHABLE_GIVE_UP_SECONDS:
                    raise RunGuardUnavailable(unreachable) from error
                time.sleep(POLL_SECONDS)
                continue
            if not state.taken:
                try:
                    stack.enter_context(
                        concurrency(
                            limit,
                            occupy=1,
                            lease_duration=LEASE_SECONDS,
                            strict=True,
                            max_retries=0,
                            raise_on_lease_renewal_failure=True,
                        )
                    )
                    break
                except ConcurrencySlotAcquisitionError as error:
                    if not _is_busy(error):
                        # not a taken slot: the limit was deleted or switched off since we
                        # read it (the public read says so, as a ConfigurationError), or the
                        # API failed (retried as unavailable)
                        with suppress(httpx.TransportError, httpx.HTTPStatusError):
                            _read_state(client, pipeline_name, api_url, with_record=False)
                        raise RunGuardUnavailable(unreachable) from None
                # taken by another run between our read and our request: wait like any other
                state = _read_state(client, pipeline_name, api_url, with_record=True)
            if wait is None:
                wait = _Wait(what, max_wait)
            wait.observe(state)
            orphaned = state.taken and wait.silent_for() >= ORPHAN_AFTER_SECONDS
            if orphaned and _repair_orphan(client, pipeline_name, api_url, wait):
                continue
            if max_wait is not None and time.monotonic() - wait.started >= max_wait:
                if wait.reported_at is None:
                    wait.reported_at = time.monotonic()
                    logger.info("Waiting for %s: held by %s", what, wait.holder(state))
                raise LockWaitTimeout(
                    f"{what} is busy: another run held it for more than {max_wait:g} s; let it "
                    "finish (a failed run frees it at once, a killed one when its "
                    f"{LEASE_SECONDS:g} s lease runs out) and run again."
                )
            time.sleep(POLL_SECONDS * random.uniform(0.75, 1.25))
        if wait is not None:
            _crash_leftover_holder(client, pipeline_name)
        stack.enter_context(_holder_record(client, pipeline_name))
        if wait is not None:
            logger.info("Got %s after waiting %.1f s", what, time.monotonic() - wait.started)
        held[pipeline_name] = 1
        try:
            yield
        finally:
            held[pipeline_name] = 0


# ---- which Prefect API -----------------------------------------------------------------------


def _profiles_path() -> Path:
    explicit = os.environ.get("PREFECT_PROFILES_PATH", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("PREFECT_HOME", "").strip()
    return (Path(home).expanduser() if home else Path.home() / ".prefect") / "profiles.toml"


def _api_may_be_configured() -> bool:
    """Whether Prefect's settings could name an API, decided without importing Prefect.

    Prefect reads PREFECT_API_URL from the environment, the active profile (PREFECT_PROFILE or
    the profiles file's `active`), and the working folder's `.env`, `prefect.toml` and
    `pyproject.toml` ([tool.prefect]). Any doubt answers yes (then Prefect itself is asked).
    """
    if "prefect.settings" in sys.modules:  # already paid for (a flow run, a test harness)
        return True
    if os.environ.get("PREFECT_API_URL", "").strip():
        return True
    import tomllib

    profiles = _profiles_path()
    if profiles.exists():
        try:
            content = tomllib.loads(profiles.read_text())
        except (OSError, ValueError):
            return True
        active = os.environ.get("PREFECT_PROFILE", "").strip() or content.get("active")
        settings = content.get("profiles", {}).get(active or "", {})
        if not isinstance(settings, dict) or settings.get("PREFECT_API_URL"):
            return True
    cwd = Path.cwd()
    for name, marker in ((".env", "PREFECT_API_URL"), ("pyproject.toml", "[tool.prefect")):
        try:
            if marker in (cwd / name).read_text(errors="replace"):
                return True
        except OSError:
            pass
    return (cwd / "prefect.toml").exists()


def prefect_api_url() -> str | None:
    """The Prefect API this process talks to (`PREFECT_API_URL`, a profile, a test harness).

    None when Prefect would start a temporary server of its own: nobody else meets there.
    Prefect is imported (~1 s) only when its settings may name an API.
    """
    if not _api_may_be_configured():
        return None
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


@contextmanager
def pipeline_guard(pipeline_name: str, *, required: bool) -> Iterator[None]:
    """What every run of a dlt pipeline holds: the Prefect slot, then the working-folder lock.

    With a Prefect API: its `dlt-pipeline:<name>` limit (every machine of the pool meets
    there). Without one (a local run on a temporary server, with no shared server to meet
    others on) the file lock alone, unless `required` (production): then the run is refused.
    The file lock still guards a working folder that several local processes share.
    """
    from pipelines.locks import configured_max_wait, pipeline_run_lock

    max_wait = configured_max_wait()
    api_url = prefect_api_url()
    if api_url is None:
        if required:
            raise ConfigurationError(
                f"No Prefect API for the {pipeline_name} run: production holds one run per "
                "pipeline on the Prefect server every worker uses. Export PREFECT_API_URL "
                "(and PREFECT_API_KEY on Prefect Cloud) as for `prefect deployment run`, or "
                "activate that Prefect profile, then rerun."
            )
        with pipeline_run_lock(pipeline_name, max_wait=max_wait):
            yield
        return
    with (
        prefect_run_guard(pipeline_name, api_url=api_url, max_wait=max_wait),
        pipeline_run_lock(pipeline_name, max_wait=max_wait),
    ):
        yield

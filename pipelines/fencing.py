"""The warehouse fence: a run that lost its slot never commits after the next run took it.

The run guard (a leased Prefect slot) keeps runs of a pipeline apart while the orchestrator is
healthy, but a lease is not a lock: a holder paused or cut off from Prefect for longer than its
lease goes on running while the next run holds the slot, and a restarted server or a switched-off
limit can let two in. So the warehouse decides, with a fencing token per pipeline:

- `take_fence` (right after the guard, before state is restored): in one transaction, the
  pipeline's row of `<dataset>._run_fence` gets `token + 1`; that number is this run's token.
  Every earlier holder's token is now stale.
- every SQL job that commits data (dlt's merge and replace-from-staging, one transaction each)
  starts with `check_statements`: an UPDATE of the same row, which on Snowflake takes the
  table's write lock and on DuckDB conflicts with a concurrent bump, then a SELECT that fails
  (a string cast to a number, the one portable way to raise from SQL) when the row's token is
  no longer this run's. A stale run's commit therefore fails and rolls back, whole; a run that
  commits first makes the next bump wait (Snowflake) or retry (DuckDB) until it is done, so the
  next run's state restore sees it.
- the load step checks once before it starts (`check_now`): a stale run stops before writing
  anything; where the environment serialises loads (the local DuckDB lock, held from this
  check to the end of the load) that check alone fences every write, direct loads included.
- each run stages in its own dataset (`staging_layout`: `<dataset>_staging_<token>`), and the
  next run drops the previous ones: a stale run's rows can never end up in the next run's
  staging table (dlt truncates staging at the start of each load, it does not own it).

The failure a stale run sees is `FencedOut` (transient: its retry waits for the slot and starts
from the warehouse's state). Written by hand because neither dlt nor Prefect fences writers.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pipelines import dlt_patches
from pipelines.errors import exception_chain
from sources.errors import TransientSourceError

logger = logging.getLogger(__name__)

FENCE_TABLE = "_run_fence"
# In the text of the error a stale run's commit raises (the value of the failing cast).
MARKER = "fenced out"
# How many earlier runs' staging datasets a new holder drops (a crash can skip one drop).
STAGING_KEPT_BACK = 3
# A concurrent bump on DuckDB is a write-write conflict: retried this often, this far apart.
BUMP_TRIES = 20
BUMP_PAUSE_SECONDS = 0.25


class FencedOut(TransientSourceError):
    """A newer run of the pipeline took its slot: this run committed nothing (transient)."""


@dataclass(frozen=True)
class Fence:
    """One run's token for one pipeline, and the qualified name of the fence table."""

    pipeline_name: str
    table: str
    token: int

    def check_statements(self) -> list[str]:
        """The statements that fail unless this run still holds the pipeline's newest token."""
        name = _literal(self.pipeline_name)
        return [
            f"UPDATE {self.table} SET last_commit_at = CURRENT_TIMESTAMP "
            f"WHERE pipeline_name = {name}",
            f"SELECT CAST('{MARKER}: ' || pipeline_name || ' run with token {self.token}, newer "
            f"token ' || CAST(token AS VARCHAR) AS INTEGER) FROM {self.table} "
            f"WHERE pipeline_name = {name} AND token <> {self.token}",
        ]

    def staging_layout(self) -> str:
        """dlt's `staging_dataset_name_layout` for this run: a staging dataset of its own."""
        return f"%s_staging_{self.token}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# load id -> the fence its SQL jobs check (read from dlt's loader threads)
_active: dict[str, Fence] = {}
_active_guard = threading.Lock()


def _preamble(load_id: str) -> list[str]:
    with _active_guard:
        fence = _active.get(load_id)
    return fence.check_statements() if fence is not None else []


def _holder() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}"[:200]


def _is_write_conflict(error: BaseException) -> bool:
    text = " ".join(str(e) for e in exception_chain(error)).lower()
    return "conflict" in text


def take_fence(pipeline: Any) -> Fence:
    """Bump the pipeline's fencing token in its dataset and return this run's fence.

    Creates the dataset and the fence table on first use. Drops the staging datasets of the
    last few tokens: a stale run still loading there fails instead of writing on.
    """
    dlt_patches.sql_jobs_with_preamble(_preamble)  # refuses before any write if dlt moved
    name = pipeline.pipeline_name
    with pipeline.sql_client() as client:
        if not client.has_dataset():
            client.create_dataset()
        table = client.make_qualified_table_name(FENCE_TABLE)
        client.execute_sql(
            f"CREATE TABLE IF NOT EXISTS {table} (pipeline_name VARCHAR, token BIGINT, "
            "holder VARCHAR, taken_at TIMESTAMP, last_commit_at TIMESTAMP)"
        )
        rows = client.execute_sql(f"SELECT count(*) FROM {table} WHERE pipeline_name = %s", name)
        if not rows or not rows[0][0]:
            # two first runs at once may both insert: every row is bumped together, so max holds
            client.execute_sql(f"INSERT INTO {table} (pipeline_name, token) VALUES (%s, 0)", name)
        token = _bump(client, table, name)
        fence = Fence(name, table, token)
        for stale in range(max(0, token - STAGING_KEPT_BACK), token):
            staging = pipeline.dataset_name + Fence(name, table, stale).staging_layout()[2:]
            with client.with_alternative_dataset_name(staging):
                client.execute_sql(
                    f"DROP SCHEMA IF EXISTS {client.fully_qualified_dataset_name()} CASCADE"
                )
    logger.debug("Took fencing token %d of the %s pipeline", token, name)
    return fence


def _bump(client: Any, table: str, name: str) -> int:
    for attempt in range(1, BUMP_TRIES + 1):
        try:
            with client.begin_transaction():
                client.execute_sql(
                    f"UPDATE {table} SET token = token + 1, holder = %s, "
                    "taken_at = CURRENT_TIMESTAMP WHERE pipeline_name = %s",
                    _holder(),
                    name,
                )
                rows = client.execute_sql(
                    f"SELECT max(token) FROM {table} WHERE pipeline_name = %s", name
                )
            return int(rows[0][0])
        except Exception as error:
            # a stale run is committing (DuckDB: a write-write conflict): after it, we bump
            if not _is_write_conflict(error) or attempt == BUMP_TRIES:
                raise
            time.sleep(BUMP_PAUSE_SECONDS)
    raise AssertionError("unreachable")


def check_now(pipeline: Any, fence: Fence) -> None:
    """Fail with `FencedOut` now if a newer run took the pipeline (before a load writes)."""
    try:
        with pipeline.sql_client() as client, client.begin_transaction():
            client.execute_many(fence.check_statements())
    except Exception as error:
        found = fenced_out(error, fence)
        if found is None:
            raise
        raise found from None


@contextmanager
def fenced_loads(fence: Fence, load_ids: Sequence[str]) -> Iterator[None]:
    """Every SQL job of these load packages checks `fence` inside its commit transaction."""
    with _active_guard:
        for load_id in load_ids:
            _active[load_id] = fence
    try:
        yield
    finally:
        with _active_guard:
            for load_id in load_ids:
                _active.pop(load_id, None)


def fenced_out(error: BaseException, fence: Fence) -> FencedOut | None:
    """The `FencedOut` that `error` means (a fence check failed inside it), else None."""
    for link in exception_chain(error):
        if isinstance(link, FencedOut):
            return link
        if MARKER in str(link):
            return FencedOut(
                f"The {fence.pipeline_name} run lost its slot to a newer run (its fencing token "
                f"{fence.token} is stale), so the warehouse refused its commit and nothing it "
                "loaded is visible; the newer run carries on from the warehouse's state. This "
                "run is retried; if it happens often, look for runs cut off from Prefect for "
                "longer than the guard's lease (docs/production.md, 'Fencing')."
            )
    return None

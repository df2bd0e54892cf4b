"""Products: PostgreSQL `raw_data.products` audit log -> `DLT.APPLICATION_DATA.PRODUCTS`.

Daily runs are incremental on `valid_ts` and merge on `audit_id` (delete-insert through dlt's
staging dataset, one transaction). A full refresh (also the first run, or any run that finds no
cursor) reloads the whole table with `replace` and `replace_strategy="insert-from-staging"`:
dlt loads the rows into `application_data_staging.products`, then swaps them in with
`TRUNCATE + INSERT ... SELECT` in one destination transaction. Readers see the old table until
that commit; a failure anywhere before it leaves the old table as it was. We do not use
`refresh="drop_resources"`/`"drop_data"`: they drop or truncate the live table when the load
starts, so a failing load would leave it missing or empty.

The cursor travels in dlt state with each load package. After any failed run we abort the
pending package (dlt's `abort_packages`), which rewinds local state to before it: a cursor may
move back, never forward past rows that did not land. A full refresh resets the cursor
locally before extracting; if it fails, the old table stays and the cursor stays reset, so
the next run (even a daily one) completes the full reload.

Schema contract (`SCHEMA_CONTRACT`): new tables and new columns evolve (a column added to
`raw_data.products` appears in the warehouse on the next run); a changed data type is frozen:
the run fails with dlt's contract violation (a permanent error) instead of loading values into
a column of another type. See docs/products.md for the repair.

Where the source DSN comes from: dlt configuration (`[sources.products] credentials`, env
`SOURCES__PRODUCTS__CREDENTIALS`). Only in the `local` environment, when none is configured,
the DSN recorded by the local cluster (`python -m local_stack.postgres start`) is used.

CLI: `python -m pipelines.products [--full-refresh]`.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlt
from dlt.common.pipeline import LoadInfo
from dlt.common.schema.exceptions import DataValidationError
from dlt.common.schema.typing import TSchemaContractDict

from pipelines.environment import (
    ConfigurationError,
    current_environment,
    pipelines_dir,
    warehouse_lock,
)
from pipelines.runner import extract_normalize_load, load_summary, make_pipeline
from sources.errors import PermanentSourceError
from sources.products import CURSOR_COLUMN, RESOURCE_NAME, products_source

PIPELINE_NAME = "products"
DATASET_NAME = "application_data"
TABLE_NAME = "products"
CREDENTIALS_KEY = "sources.products.credentials"
logger = logging.getLogger(__name__)


class SchemaContractViolation(PermanentSourceError):
    """Source columns no longer fit the warehouse's under our contract; retrying cannot help."""


SCHEMA_CONTRACT: TSchemaContractDict = {
    "tables": "evolve",
    "columns": "evolve",
    "data_type": "freeze",
}


def local_fallback_dsn() -> str | None:
    """The local cluster's recorded DSN, in the `local` environment only; else None."""
    if current_environment().name != "local":
        return None
    from local_stack.postgres import recorded  # local-stack only; never needed with a DSN

    cluster = recorded()
    return cluster.dsn if cluster is not None else None


def source_credentials() -> str | None:
    """None when dlt configuration holds the DSN (the source resolves it), else the fallback."""
    if dlt.secrets.get(CREDENTIALS_KEY) is not None:
        return None
    fallback = local_fallback_dsn()
    if fallback is None:
        raise ConfigurationError(
            "No PostgreSQL for the products pipeline: set [sources.products] credentials in "
            ".dlt/secrets.toml or export SOURCES__PRODUCTS__CREDENTIALS=postgresql://user:"
            "password@host:5432/database; locally, `python -m local_stack.postgres start` "
            "creates a cluster that is then used by default."
        )
    return fallback


def make_products_pipeline() -> dlt.Pipeline:
    """The `products` pipeline into the current environment's warehouse."""
    # The warehouse swaps replace/merge in atomically (see environment._atomic_swaps).
    return make_pipeline(PIPELINE_NAME, current_environment().warehouse(), DATASET_NAME)


def cursor_value(pipeline: dlt.Pipeline) -> Any:
    """The stored `valid_ts` cursor (None before the first load or after a reset)."""
    state = pipeline.state.get("sources", {}).get("products", {})
    incremental = state.get("resources", {}).get(RESOURCE_NAME, {}).get("incremental", {})
    return incremental.get(CURSOR_COLUMN, {}).get("last_value")


def _reset_cursor(pipeline: dlt.Pipeline) -> None:
    """Forget the cursor locally; the new one reaches the warehouse with the reloaded rows.

    If the reload fails, the cursor stays forgotten (the abort rewinds to after this reset),
    so the next run reloads everything again: safe, and cheaper than committing the reset
    with a load of its own (dlt's state-only drop).
    """
    _abort_pending(pipeline)  # packages of a failed run are superseded by the reload
    if cursor_value(pipeline) is None:
        return
    with pipeline.managed_state() as state:
        resources = state.get("sources", {}).get("products", {}).get("resources", {})
        resources.get(RESOURCE_NAME, {}).pop("incremental", None)


def _abort_pending(pipeline: dlt.Pipeline) -> None:
    """Drop unfinished load packages and rewind local state to before them (dlt's abort).

    The aborted rows are re-read by the next run: the cursor never stays ahead of them.
    """
    if not pipeline.has_pending_data:
        return
    with warehouse_lock():  # finishing an abort opens the destination
        pipeline.abort_packages()


@contextmanager
def _one_run_at_a_time() -> Iterator[None]:
    """Serialise runs of this pipeline on one machine (daily and full refresh share state).

    The two flows are separate deployments, so Prefect's per-deployment limit does not keep
    them apart; dlt's working folder must not be used by two processes at once.
    """
    lock_path = Path(pipelines_dir()) / f"{PIPELINE_NAME}.run.lock"
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run(full_refresh: bool = False) -> LoadInfo:
    """Load new audit rows (or, with `full_refresh`, all of them) into the warehouse."""
    credentials = source_credentials()
    with _one_run_at_a_time():
        return _run(credentials, full_refresh)


def _run(credentials: str | None, full_refresh: bool) -> LoadInfo:
    pipeline = make_products_pipeline()
    if cursor_value(pipeline) is None:
        # A fresh worker starts from the cursor the warehouse holds (state travels with each
        # load). With a local cursor we skip the round trip: a stale local cursor only makes
        # the run re-read rows that the merge then de-duplicates.
        pipeline.sync_destination()
    source = products_source(credentials=credentials) if credentials else products_source()
    if full_refresh or cursor_value(pipeline) is None:
        _reset_cursor(pipeline)
        source.resources[RESOURCE_NAME].apply_hints(write_disposition="replace")
    try:
        return extract_normalize_load(pipeline, source, schema_contract=SCHEMA_CONTRACT)
    except Exception as error:
        # dlt would keep a failed package pending with the cursor already advanced in local
        # state; we rewind instead, so a later run re-reads those rows rather than trusting
        # a package that may never load.
        try:
            _abort_pending(pipeline)
        except Exception as abort_error:  # never hide the original failure
            logger.warning("Could not abort the failed products load package: %s", abort_error)
        violation = _contract_violation(error)
        if violation is not None:
            raise SchemaContractViolation(
                f"Column {violation.column_name!r} of the products audit log changed data type "
                "and the schema contract freezes data types, so nothing was loaded and the "
                "cursor did not move. Revert the column type in PostgreSQL, or migrate the "
                "warehouse column deliberately (docs/products.md, 'Schema contract'). "
                f"dlt: {violation}"
            ) from error
        raise


def _contract_violation(error: BaseException) -> DataValidationError | None:
    current: BaseException | None = error
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        if isinstance(current, DataValidationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.products",
        description="Load raw_data.products from PostgreSQL into APPLICATION_DATA.PRODUCTS.",
    )
    parser.add_argument(
        "--full-refresh",
        action="store_true",
        help="reload every row and reset the cursor (atomic swap; the old table stays "
        "visible until the new one commits)",
    )
    args = parser.parse_args(argv)
    print(json.dumps(load_summary(run(full_refresh=args.full_refresh)), indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Products: PostgreSQL `raw_data.products` audit log -> `DLT.APPLICATION_DATA.PRODUCTS`.

Daily runs are incremental on `valid_ts` and merge on `audit_id` (delete-insert through dlt's
staging dataset, one transaction). A full refresh (also the first run, or any run that finds no
cursor) reloads the whole table with `replace` and `replace_strategy="insert-from-staging"`:
dlt loads the rows into `application_data_staging.products`, then swaps them in with
`TRUNCATE + INSERT ... SELECT` in one destination transaction. Readers see the old table until
that commit; a failure anywhere before it leaves the old table as it was. We do not use
`refresh="drop_resources"`/`"drop_data"`: they drop or truncate the live table when the load
starts, so a failing load would leave it missing or empty.

The run itself (guard, fence, state from the warehouse, load, summary, audit) is
`runner.execute(environment, SPEC, full_refresh=...)`: this module declares what is products'
own. State lives only in the warehouse: every run starts as on a fresh machine, because a
production run may land on any worker of the pool in a new folder. The cursor travels in dlt
state with each load package and dlt restores only the state of completed loads, so it never
advances past rows that did not land.

A full refresh forgets the cursor and reloads everything; its new cursor reaches the warehouse
in the same load as the rows. If it fails, nothing changed where a fresh worker looks: the old
table and the old cursor stay, later daily runs go on incrementally, and the operator reruns
`products-full-refresh` (its failure alerts). One run at a time holds the pipeline (the
runner's guard), and the warehouse refuses a run that lost it (pipelines/fencing.py).

Schema contract (`SCHEMA_CONTRACT`): new tables and new columns evolve (a column added to
`raw_data.products` appears in the warehouse on the next run); a changed data type is frozen:
the run fails with dlt's contract violation (a permanent error) instead of loading values into
a column of another type. See docs/products.md for the repair.

Where the source DSN comes from (`products_dsn`, the one place that decides it): dlt
configuration (`[sources.products] credentials`, env `SOURCES__PRODUCTS__CREDENTIALS`), else the
environment's fallback (locally, the cluster `data-pipelines up` started).
"""

from __future__ import annotations

import logging
from typing import Any

import dlt
from dlt.common.configuration.specs import ConnectionStringCredentials
from dlt.common.configuration.specs.exceptions import NativeValueError
from dlt.common.schema.exceptions import DataValidationError
from dlt.common.schema.typing import TSchemaContractDict

from pipelines.environment import ConfigurationError, Environment, configure_runtime
from pipelines.errors import SchemaContractViolation, exception_chain
from pipelines.names import PRODUCTS_PIPELINE
from pipelines.pipeline_run import PipelineRun, RunSummary
from pipelines.runner import RunContext, execute, make_pipeline
from pipelines.spec import PipelineSpec
from sources.products import (
    CURSOR_COLUMN,
    RESOURCE_NAME,
    SOURCE_COLUMNS_STATE_KEY,
    products_source,
    unparsable_credentials,
)

PIPELINE_NAME = PRODUCTS_PIPELINE
DATASET_NAME = "application_data"
TABLE_NAME = "products"
CREDENTIALS_KEY = "sources.products.credentials"
logger = logging.getLogger(__name__)


SCHEMA_CONTRACT: TSchemaContractDict = {
    "tables": "evolve",
    "columns": "evolve",
    "data_type": "freeze",
}


def products_dsn(environment: Environment) -> str:
    """The products PostgreSQL DSN: dlt config, else the environment's fallback, else an error."""
    configure_runtime()  # before dlt parses the DSN
    configured = dlt.secrets.get(CREDENTIALS_KEY)
    if configured is not None:
        # a DSN string, or its parts as a table (host, username, ...)
        try:
            return ConnectionStringCredentials(configured).to_native_representation()
        except NativeValueError:
            raise unparsable_credentials() from None  # permanent; dlt's inner error may echo it
    fallback = environment.products_dsn_fallback()
    if fallback is None:
        raise ConfigurationError(
            "No PostgreSQL for the products pipeline: set [sources.products] credentials in "
            ".dlt/secrets.toml or export SOURCES__PRODUCTS__CREDENTIALS=postgresql://user:"
            "password@host:5432/database; locally, `data-pipelines up` starts a cluster that "
            "is then used by default."
        )
    return fallback


def make_products_pipeline(environment: Environment) -> dlt.Pipeline:
    """The `products` pipeline into the environment's warehouse (atomic swaps: runner)."""
    return make_pipeline(PIPELINE_NAME, environment.warehouse(), DATASET_NAME)


def _resource_state(pipeline: dlt.Pipeline) -> dict[str, Any]:
    state = pipeline.state.get("sources", {}).get("products", {})
    return state.get("resources", {}).get(RESOURCE_NAME, {})  # type: ignore[no-any-return]


def cursor_value(pipeline: dlt.Pipeline) -> Any:
    """The stored `valid_ts` cursor (None before the first load or after a reset)."""
    incremental = _resource_state(pipeline).get("incremental", {})
    return incremental.get(CURSOR_COLUMN, {}).get("last_value")


def _reset_cursor(pipeline: dlt.Pipeline) -> None:
    """Forget the cursor; the new one reaches the warehouse with the reloaded rows."""
    if cursor_value(pipeline) is None:
        return
    with pipeline.managed_state() as state:
        resources = state.get("sources", {}).get("products", {}).get("resources", {})
        resources.get(RESOURCE_NAME, {}).pop("incremental", None)


def run(environment: Environment, *, full_refresh: bool = False) -> PipelineRun:
    """Load new audit rows (or, with `full_refresh`, all of them) into the warehouse.

    The summary also names the warehouse columns the source table no longer has
    (`dropped_columns`: NULL in every row this run loaded); the flows report them.
    """
    return execute(environment, SPEC, full_refresh=full_refresh)


def _prepare(environment: Environment, *, full_refresh: bool = False) -> dict[str, Any]:
    """The DSN, resolved before the guard: a missing one fails with nothing held or written."""
    return {"dsn": products_dsn(environment), "full_refresh": full_refresh}


def _summarize(context: RunContext, summary: RunSummary, details: Any) -> RunSummary:
    # no row loaded, so none got a NULL: skip the check
    dropped = _dropped_columns(context.pipeline) if summary.rows.get(TABLE_NAME) else []
    return summary.with_(dropped_columns={TABLE_NAME: dropped} if dropped else {})


def _dropped_columns(pipeline: dlt.Pipeline) -> list[str]:
    """Columns of the warehouse table that the source table no longer has."""
    schema = pipeline.default_schema
    source = _resource_state(pipeline).get(SOURCE_COLUMNS_STATE_KEY)
    if RESOURCE_NAME not in schema.tables or source is None:
        return []
    present = {schema.naming.normalize_identifier(c) for c in source}
    dropped = [
        c
        for c in schema.get_table_columns(RESOURCE_NAME)
        if not c.startswith("_dlt") and c not in present
    ]
    if dropped:
        logger.warning(
            "Column(s) %s of %s are no longer in the source table: every new row holds NULL "
            "there. Restore them in PostgreSQL, or drop them in the warehouse deliberately "
            "(docs/products.md, 'Schema contract').",
            ", ".join(dropped),
            TABLE_NAME,
        )
    return dropped


def _extract_load(context: RunContext, *, dsn: str, full_refresh: bool) -> None:
    pipeline = context.pipeline
    source = products_source(credentials=dsn)
    options: dict[str, Any] = {}
    if full_refresh or cursor_value(pipeline) is None:
        _reset_cursor(pipeline)
        source.resources[RESOURCE_NAME].apply_hints(write_disposition="replace")
        if context.environment.serialized_loads and not _warehouse_has_table(context):
            # Nothing to keep visible yet, so no staging copy to swap in: load straight into
            # the new table (10M rows: load step 28 -> 20 s, peak RSS 590 -> 478 MiB). Only
            # where loads are serialised, so the fence checked under that lock covers it.
            options["replace_strategy"] = "truncate-and-insert"
    try:
        context.load(source, destination_options=options, schema_contract=SCHEMA_CONTRACT)
    except Exception as error:
        violation = _contract_violation(error)
        if violation is not None:
            fix = (
                "Revert the column type in PostgreSQL, or migrate the warehouse column "
                "deliberately (docs/products.md, 'Schema contract')."
            )
            raise SchemaContractViolation(
                f"Column {violation.column_name!r} of the products audit log changed data type "
                "and the schema contract freezes data types, so nothing was loaded and the "
                f"cursor did not move. {fix} dlt: {violation}",
                pipeline=PIPELINE_NAME,
                dataset=pipeline.dataset_name,
                table=TABLE_NAME,
                column=str(violation.column_name),
                fix=fix,
            ) from error
        raise


def _warehouse_has_table(context: RunContext) -> bool:
    """Whether the warehouse holds the products table (True when unsure: the safe answer)."""
    try:
        with context.locked(), context.pipeline.destination_client() as client:
            exists, _ = client.get_storage_table(TABLE_NAME)  # type: ignore[attr-defined]
            return bool(exists)
    except Exception as error:  # any doubt keeps the atomic swap
        logger.debug("Could not check for the products table: %s", error)
        return True


def _contract_violation(error: BaseException) -> DataValidationError | None:
    return next((e for e in exception_chain(error) if isinstance(e, DataValidationError)), None)


SPEC = PipelineSpec(
    name=PIPELINE_NAME,
    dataset=DATASET_NAME,
    extract_load=_extract_load,
    prepare=_prepare,
    summarize=_summarize,
)

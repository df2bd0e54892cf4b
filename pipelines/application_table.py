"""An application table (PostgreSQL) -> `DLT.<DATASET>.<TABLE>`: a pipeline by configuration.

`application_table_pipeline(table, dataset=..., timeout=...)` turns a `PostgresTable`
(sources/postgres_table) into a whole `PipelineSpec`: the registry lists it, and the runner,
the flows, the deployments check, the limits, the timeouts, `verify`, the CLI and the alerts
derive everything else from that spec (docs/architecture.md, "Adding a pipeline").

Daily runs are incremental on the cursor and merge on the primary key (delete-insert through
dlt's staging dataset, one transaction). A full refresh (also the first run, or any run that
finds no cursor) reloads the whole table with `replace` and
`replace_strategy="insert-from-staging"`: dlt loads the rows into `<dataset>_staging`, then
swaps them in with `TRUNCATE + INSERT ... SELECT` in one destination transaction. Readers see
the old table until that commit; a failure anywhere before it leaves the old table as it was.
We do not use `refresh="drop_resources"`/`"drop_data"`: they drop or truncate the live table
when the load starts, so a failing load would leave it missing or empty.

State lives only in the warehouse (the runner restores it): the cursor travels in dlt state with
each load package and dlt restores only the state of completed loads, so it never advances past
rows that did not land. A failed full refresh leaves the old table and the old cursor; later
daily runs go on incrementally and the operator reruns the full refresh (its failure alerts).

Schema contract (`SCHEMA_CONTRACT`): new tables and new columns evolve (a column added in
PostgreSQL appears in the warehouse on the next run); a changed data type is frozen: the run
fails with dlt's contract violation (a permanent error) instead of loading values into a column
of another type (docs/products.md, "Schema contract").

The DSN (`application_dsn`, the one place that decides it): dlt configuration
(`[sources.<credentials_section>] credentials`), else the environment's fallback (locally, the
cluster `data-pipelines up` started).
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
from pipelines.pipeline_run import RunSummary
from pipelines.runner import RunContext
from pipelines.spec import FlowSpec, PipelineSpec
from sources.postgres_table import (
    SOURCE_COLUMNS_STATE_KEY,
    PostgresTable,
    check_source,
    configured_lookback,
    configured_table,
    parse_lookback,
    table_source,
    unparsable_credentials,
)

logger = logging.getLogger(__name__)

SCHEMA_CONTRACT: TSchemaContractDict = {
    "tables": "evolve",
    "columns": "evolve",
    "data_type": "freeze",
}
APPLICATION_DATASET = "application_data"


def application_dsn(environment: Environment, table: PostgresTable) -> str:
    """The table's PostgreSQL DSN: dlt config, else the environment's fallback, else an error."""
    configure_runtime()  # before dlt parses the DSN
    section = table.credentials_section
    configured = dlt.secrets.get(f"sources.{section}.credentials")
    if configured is not None:
        # a DSN string, or its parts as a table (host, username, ...)
        try:
            return ConnectionStringCredentials(configured).to_native_representation()
        except NativeValueError:
            # permanent; dlt's inner error may echo the value
            raise unparsable_credentials(section) from None
    fallback = environment.application_db_dsn_fallback()
    if fallback is None:
        raise ConfigurationError(
            f"No PostgreSQL for the {table.name} pipeline: set [sources.{section}] credentials "
            f"in .dlt/secrets.toml or export SOURCES__{section.upper()}__CREDENTIALS=postgresql:"
            "//user:password@host:5432/database; locally, `data-pipelines up` starts a cluster "
            "that is then used by default."
        )
    return fallback


def _resource_state(pipeline: dlt.Pipeline, table: PostgresTable) -> dict[str, Any]:
    state = pipeline.state.get("sources", {}).get(table.name, {})
    return state.get("resources", {}).get(table.name, {})  # type: ignore[no-any-return]


def cursor_value(pipeline: dlt.Pipeline, table: PostgresTable) -> Any:
    """The stored cursor (None before the first load or after a reset)."""
    incremental = _resource_state(pipeline, table).get("incremental", {})
    return incremental.get(table.cursor_column, {}).get("last_value")


def _reset_cursor(pipeline: dlt.Pipeline, table: PostgresTable) -> None:
    """Forget the cursor; the new one reaches the warehouse with the reloaded rows."""
    if cursor_value(pipeline, table) is None:
        return
    with pipeline.managed_state() as state:
        resources = state.get("sources", {}).get(table.name, {}).get("resources", {})
        resources.get(table.name, {}).pop("incremental", None)


def dropped_columns(pipeline: dlt.Pipeline, table: PostgresTable) -> list[str]:
    """Columns of the warehouse table that the source table no longer has."""
    schema = pipeline.default_schema
    source = _resource_state(pipeline, table).get(SOURCE_COLUMNS_STATE_KEY)
    if table.name not in schema.tables or source is None:
        return []
    present = {schema.naming.normalize_identifier(c) for c in source}
    dropped = [
        c
        for c in schema.get_table_columns(table.name)
        if not c.startswith("_dlt") and c not in present
    ]
    if dropped:
        logger.warning(
            "Column(s) %s of %s are no longer in the source table: every new row holds NULL "
            "there. Restore them in PostgreSQL, or drop them in the warehouse deliberately "
            "(docs/products.md, 'Schema contract').",
            ", ".join(dropped),
            table.name,
        )
    return dropped


def _warehouse_has_table(context: RunContext, table: PostgresTable) -> bool:
    """Whether the warehouse holds the table (True when unsure: the safe answer)."""
    try:
        with context.locked(), context.pipeline.destination_client() as client:
            exists, _ = client.get_storage_table(table.name)  # type: ignore[attr-defined]
            return bool(exists)
    except Exception as error:  # any doubt keeps the atomic swap
        logger.debug("Could not check for the %s table: %s", table.name, error)
        return True


def _contract_violation(error: BaseException) -> DataValidationError | None:
    return next((e for e in exception_chain(error) if isinstance(e, DataValidationError)), None)


def application_table_pipeline(
    table: PostgresTable,
    *,
    dataset: str = APPLICATION_DATASET,
    timeout: float = 3600,
) -> PipelineSpec:
    """The whole pipeline of one application table: `<name>-daily` and `<name>-full-refresh`.

    `timeout`: the default seconds one load attempt may take (`[data_pipelines.timeouts]
    load_<name>` overrides it).
    """
    target = f"{dataset.upper()}.{table.name.upper()}"
    source_table = f"{table.schema_name}.{table.table_name}"
    task = f"load_{table.name}"

    def prepare(environment: Environment, *, full_refresh: bool = False) -> dict[str, Any]:
        """The DSN, resolved before the guard: a missing one fails with nothing held or written."""
        return {"dsn": application_dsn(environment, table), "full_refresh": full_refresh}

    def check(environment: Environment) -> None:
        lookback = configured_lookback(table)
        parse_lookback(lookback, table.section)  # no connection needed to refuse a typo
        dsn = application_dsn(environment, table)
        check_source(table, dsn, *configured_table(table), lookback)

    def extract_load(context: RunContext, *, dsn: str, full_refresh: bool) -> None:
        pipeline = context.pipeline
        source = table_source(table, dsn)
        options: dict[str, Any] = {}
        if full_refresh or cursor_value(pipeline, table) is None:
            _reset_cursor(pipeline, table)
            source.resources[table.name].apply_hints(write_disposition="replace")
            if context.environment.serialized_loads and not _warehouse_has_table(context, table):
                # Nothing to keep visible yet, so no staging copy to swap in: load straight into
                # the new table (10M rows: load step 28 -> 20 s, peak RSS 590 -> 478 MiB). Only
                # where loads are serialised, so the fence checked under that lock covers it.
                options["replace_strategy"] = "truncate-and-insert"
        try:
            context.load(source, destination_options=options, schema_contract=SCHEMA_CONTRACT)
        except Exception as error:
            violation = _contract_violation(error)
            if violation is None:
                raise
            fix = (
                "Revert the column type in PostgreSQL, or migrate the warehouse column "
                "deliberately (docs/products.md, 'Schema contract')."
            )
            raise SchemaContractViolation(
                f"Column {violation.column_name!r} of the {table.name} {table.described_as} "
                "changed data type and the schema contract freezes data types, so nothing was "
                f"loaded and the cursor did not move. {fix} dlt: {violation}",
                pipeline=table.name,
                dataset=pipeline.dataset_name,
                table=table.name,
                column=str(violation.column_name),
                fix=fix,
            ) from error

    def summarize(context: RunContext, summary: RunSummary, details: Any) -> RunSummary:
        # no row loaded, so none got a NULL: skip the check
        loaded = summary.rows.get(table.name)
        dropped = dropped_columns(context.pipeline, table) if loaded else []
        return summary.with_(dropped_columns={table.name: dropped} if dropped else {})

    return PipelineSpec(
        name=table.name,
        dataset=dataset,
        extract_load=extract_load,
        prepare=prepare,
        summarize=summarize,
        check=check,
        table=table,
        task_timeouts={task: timeout},
        flows=(
            FlowSpec(
                f"{table.name.replace('_', '-')}-daily",
                f"Merge new {source_table} rows into {target}",
                (task,),
                command="run",
            ),
            FlowSpec(
                f"{table.name.replace('_', '-')}-full-refresh",
                f"Reload all of {source_table} into {target} (atomic swap)",
                (task,),
                command="full-refresh",
            ),
        ),
    )

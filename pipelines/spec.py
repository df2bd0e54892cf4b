"""What a pipeline declares; `runner.execute` does the rest (docs/architecture.md).

A pipeline is a `PipelineSpec`: its dlt name and dataset, where it loads, and one hook for
what is its own, `extract_load(context, **params)`, which feeds data to `context.load(...)`
once or more (a backfill's chunks) and returns the pipeline's own details. The guard, the
fence, the state restored from the destination, the summary and the audit are the runner's:
a pipeline cannot forget them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dlt.common.pipeline import LoadInfo

from pipelines.environment import Environment
from pipelines.pipeline_run import RunSummary
from sources.postgres_table import PostgresTable


def warehouse_destination(environment: Environment, **options: Any) -> Any:
    """The environment's `DLT` warehouse (DuckDB locally, Snowflake in production)."""
    return environment.warehouse(**options)


@dataclass(frozen=True)
class FlowSpec:
    """One Prefect flow that runs the pipeline; prefect.yaml deploys each exactly once.

    - `name`: the flow's name (`<name>/production` is its deployment);
    - `tasks`: the timeout keys (`[data_pipelines.timeouts]`) of the tasks it runs, in order:
      they size the flow's timeout and its "running too long" alert (pipelines/timeouts.py);
    - `command`: how `data-pipelines` reaches it: `run` (`run <pipeline>`), `full-refresh`
      (`run <pipeline> --full-refresh`), `backfill`, or None (deployment only).
    """

    name: str
    description: str
    tasks: tuple[str, ...]
    command: str | None = None


@dataclass(frozen=True)
class PipelineSpec:
    """One pipeline: everything `runner.execute` needs to run it whole.

    - `name`: the dlt pipeline name (its folder, `dlt pipeline <name> info`, the guard's name);
    - `dataset`: the dlt dataset it loads (its warehouse schema, or the bucket's state folder);
    - `extract_load(context, **params) -> details`: feeds the run's data to `context.load`
      (its own rules: products' full-refresh cursor reset, the backfill's chunks);
    - `destination(environment, **options)`: the dlt destination factory (default: the
      warehouse; options are more factory options, e.g. `replace_strategy`);
    - `in_warehouse`: loads into the SQL warehouse, so the runner holds the environment's
      warehouse lock around reads and loads and fences every commit; False for the bucket,
      whose writes are whole files named by their content's day (a second writer rewrites
      the same bytes);
    - `prepare(environment, **params) -> params`: checks and resolves the run's inputs before
      the guard is taken (a missing DSN fails without touching Prefect or the warehouse);
    - `summarize(context, summary, details) -> summary`: adds the pipeline's own parts;
    - `audit(environment, load_info)`: writes the run's `_load_info` / `_trace` (default:
      beside the data, in the same dataset);
    - `flows`: the Prefect flows that run it, and `task_timeouts`: the default seconds of one
      attempt of each of their tasks (overridden in `[data_pipelines.timeouts]`);
    - `check(environment)`: refuses up front (the CLI, before anything starts) what a run
      would refuse: a missing key, a wrong DSN, a missing table; no rows, no writes;
    - `table`: the application table it copies (`verify` checks its rows, freshness, columns
      and keys against the source), None for the API pipelines.
    """

    name: str
    dataset: str
    extract_load: Callable[..., Any]
    destination: Callable[..., Any] = warehouse_destination
    in_warehouse: bool = True
    prepare: Callable[..., dict[str, Any]] | None = None
    # (runner.RunContext, RunSummary, details) -> RunSummary
    summarize: Callable[[Any, RunSummary, Any], RunSummary] | None = None
    audit: Callable[[Environment, LoadInfo], Any] | None = None
    flows: tuple[FlowSpec, ...] = ()
    task_timeouts: Mapping[str, float] = field(default_factory=dict)
    check: Callable[[Environment], None] | None = None
    table: PostgresTable | None = None

    @property
    def command_name(self) -> str:
        """Its name on the command line: `data-pipelines run <command_name>`."""
        return self.name.replace("_", "-")

    def flow_for(self, command: str) -> FlowSpec | None:
        return next((flow for flow in self.flows if flow.command == command), None)

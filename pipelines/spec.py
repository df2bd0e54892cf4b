"""What a pipeline declares; `runner.execute` does the rest (docs/architecture.md).

A pipeline is a `PipelineSpec`: its dlt name and dataset, where it loads, and one hook for
what is its own, `extract_load(context, **params)`, which feeds data to `context.load(...)`
once or more (a backfill's chunks) and returns the pipeline's own details. The guard, the
fence, the state restored from the destination, the summary and the audit are the runner's:
a pipeline cannot forget them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlt.common.pipeline import LoadInfo

from pipelines.environment import Environment
from pipelines.pipeline_run import RunSummary


def warehouse_destination(environment: Environment, **options: Any) -> Any:
    """The environment's `DLT` warehouse (DuckDB locally, Snowflake in production)."""
    return environment.warehouse(**options)


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
      beside the data, in the same dataset).
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

"""The environment contract: what differs between local and production, as one object.

An `Environment` is built once at the top (a flow, or the CLI) by
`environments.load_environment()` from one variable, `DATA_PIPELINES_ENV` (`local` by default,
or `production`), and handed down: pipelines and checks receive it and never ask which one
they are in. The two implementations live outside the layers, in `environments/local.py` (it
may use the local stack) and `environments/production.py`.

Also here, because every environment shares them: where the project keeps its files (the data
folder) and dlt's runtime settings (state inside that folder, telemetry off).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.names import EXCHANGE_RATES_PREFIX, SNOWPIPE_DATABASE, WAREHOUSE_DATABASE
from sources.errors import ConfigurationError

__all__ = [
    "BUCKET_URL_VAR",
    "DATA_DIR_VAR",
    "ENV_VAR",
    "PROJECT_DIR",
    "SNOWPIPE_DATABASE",
    "WAREHOUSE_DATABASE",
    "ConfigurationError",
    "Environment",
    "Query",
    "TableQuery",
    "configure_runtime",
    "configured_bucket_url",
    "data_dir",
    "pipelines_dir",
]

# The one variable that chooses the environment (`environments.load_environment`); here, below
# every package that names it (infra sets it in deployments' job variables).
ENV_VAR = "DATA_PIPELINES_ENV"
DATA_DIR_VAR = "DATA_PIPELINES_DATA_DIR"
BUCKET_URL_VAR = "DATA_PIPELINES_BUCKET_URL"

PROJECT_DIR = Path(__file__).resolve().parent.parent

# One SQL string -> its rows; how checks read the warehouse in either environment.
Query = Callable[[str], list[tuple[Any, ...]]]
# One SQL string -> its column names and rows; how a person reads it (`data-pipelines query`).
TableQuery = Callable[[str], tuple[list[str], list[tuple[Any, ...]]]]


@dataclass(frozen=True)
class Environment:
    """Everything that differs between local and production; built once, handed down."""

    # Shown in reports and logs; no code branches on it.
    name: str
    # The dlt destination for the `DLT` database (DuckDB file locally, Snowflake in production);
    # keyword arguments are more options of dlt's destination factory (`replace_strategy=`).
    warehouse: Callable[..., Any]
    # The bucket's base URL (a local folder as file:// URL, or s3://...).
    bucket_url: Callable[[], str]
    # What follows files landing under the exchange-rates prefix: locally the pipe stand-in
    # loads them and returns its report; in production Snowpipe does it (returns None).
    after_files_land: Callable[[str], dict[str, Any] | None]
    # SQL over the warehouse by production names, for `verify`. Building it resolves the
    # warehouse's settings: a missing credential fails there, once, with dlt's lookup.
    warehouse_query: Callable[[], Query]
    # The same with column names, for `data-pipelines query`.
    warehouse_table_query: Callable[[], TableQuery]
    # The application database's DSN when dlt config has none (the local cluster), else None.
    application_db_dsn_fallback: Callable[[], str | None]
    # Held while loading into the `DLT` warehouse (DuckDB allows one writing process per file).
    warehouse_lock: Callable[[], AbstractContextManager[Any]]
    # Whether `warehouse_lock` admits one writer at a time for the whole warehouse: then the
    # fence checked under it covers direct loads too (pipelines/fencing.py); else only loads
    # that commit through dlt's SQL jobs are fenced, and pipelines load through staging.
    serialized_loads: bool
    # Held around every run of a dlt pipeline (by pipeline name): one run per pipeline across
    # every machine that shares the Prefect API (environments/run_guard.py).
    run_guard: Callable[[str], AbstractContextManager[Any]]
    # Whether the warehouse has a Snowpipe whose status and copy history can be checked.
    monitors_snowpipe: bool

    def exchange_rates_url(self) -> str:
        """The prefix the exchange-rate files go under (watched by Snowpipe in production)."""
        return f"{self.bucket_url()}/{EXCHANGE_RATES_PREFIX}"


def data_dir() -> Path:
    """The project-local folder for warehouse files, the bucket, dlt state and local services."""
    return Path(os.environ.get(DATA_DIR_VAR) or PROJECT_DIR / ".data").resolve()


def local_warehouse_dir() -> Path:
    """Where dlt writes local destination files: `DLT_LOCAL_DIR`, else `<data folder>/warehouse`.

    The local warehouse's readers (verify, `data-pipelines query`, the local pipe) use this
    too, so an exported `DLT_LOCAL_DIR` moves readers and writers together.
    """
    return Path(os.environ.get("DLT_LOCAL_DIR") or data_dir() / "warehouse").resolve()


def dlt_dirs() -> dict[str, str]:
    """dlt's run-context folders for this project (`DLT_*` variables, also in stack.env).

    `DLT_LOCAL_DIR`, where dlt puts local destination files, is the warehouse folder: the
    named destination `dlt` of `.dlt/config.toml` (a DuckDB standing in for the `DLT` database)
    is then `warehouse/dlt.duckdb` by dlt's own default naming, for our code and dlt's CLI alike.
    """
    return {
        "DLT_PROJECT_DIR": str(PROJECT_DIR),
        "DLT_DATA_DIR": str(data_dir() / "dlt"),
        "DLT_LOCAL_DIR": str(local_warehouse_dir()),
    }


def configure_runtime() -> None:
    """Keep dlt's state inside the project data folder, its telemetry off, the patches on.

    As root dlt would otherwise write to /var/dlt, and telemetry resolves an outside host.
    Values a user already exported win.
    """
    for name, value in dlt_dirs().items():
        os.environ.setdefault(name, value)
    Path(os.environ["DLT_LOCAL_DIR"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    from pipelines import dlt_patches  # here: it imports fsspec, which only dlt's users need

    dlt_patches.switch_on()
    quiet_snowflake_logout_notice()


def quiet_snowflake_logout_notice() -> None:
    """Drop snowflake-connector-python 5's FutureWarning about a future logout default.

    It is printed to stderr at every connect unless the caller sets
    `enable_server_session_keep_alive_auto_detection`; dlt's Snowflake client passes only the
    credentials' string query values, and our sessions run no async queries, so either
    default closes them the same way. Left in, it is two lines of noise in every CLI answer.
    """
    warnings.filterwarnings(
        "ignore",
        message="enable_server_session_keep_alive_auto_detection was not set",
        category=FutureWarning,
    )


def pipelines_dir() -> str:
    """Where dlt keeps pipeline working folders and state for this data folder."""
    path = data_dir() / "dlt" / "pipelines"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def configured_bucket_url() -> str | None:
    """The bucket from `DATA_PIPELINES_BUCKET_URL` or dlt config `[data_pipelines] bucket_url`."""
    import dlt

    configured = os.environ.get(BUCKET_URL_VAR) or dlt.config.get("data_pipelines.bucket_url")
    return str(configured).rstrip("/") if configured else None

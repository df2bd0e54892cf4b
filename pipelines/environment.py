"""The environment switch: one small table from `DATA_PIPELINES_ENV` to where data lands.

`local` (the default) keeps everything in one project-local data folder: DuckDB warehouse
files named after the production databases (so `DLT.OPEN_EXCHANGE_RATES.CURRENCIES` is a valid
query in both places) and a bucket folder. `production` is Snowflake and S3; its credentials
come from dlt's own configuration (`.dlt/secrets.toml`, environment, Secrets Manager).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_VAR = "DATA_PIPELINES_ENV"
DATA_DIR_VAR = "DATA_PIPELINES_DATA_DIR"
BUCKET_URL_VAR = "DATA_PIPELINES_BUCKET_URL"

PROJECT_DIR = Path(__file__).resolve().parent.parent

# Production database names; the local DuckDB files are named after them so that the catalog
# part of a three-part name is the same in both environments.
WAREHOUSE_DATABASE = "DLT"
SNOWPIPE_DATABASE = "SNOWPIPE"
# The prefix Snowpipe watches; nothing but data files may live under it.
EXCHANGE_RATES_PREFIX = "exchange-rates"


class ConfigurationError(RuntimeError):
    """A setting is missing or wrong; the message says which and how to set it."""


def data_dir() -> Path:
    """The project-local folder for warehouse files, the bucket, dlt state and local services."""
    return Path(os.environ.get(DATA_DIR_VAR) or PROJECT_DIR / ".data").resolve()


def configure_runtime() -> None:
    """Keep dlt's state inside the project data folder and its telemetry off.

    As root dlt would otherwise write to /var/dlt, and telemetry resolves an outside host.
    Values a user already exported win.
    """
    dlt_dir = data_dir() / "dlt"
    (dlt_dir / "local").mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DLT_PROJECT_DIR", str(PROJECT_DIR))
    os.environ.setdefault("DLT_DATA_DIR", str(dlt_dir))
    os.environ.setdefault("DLT_LOCAL_DIR", str(dlt_dir / "local"))
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    from pipelines.secrets_manager import register_if_enabled

    register_if_enabled()


def pipelines_dir() -> str:
    """Where dlt keeps pipeline working folders and state for this data folder."""
    path = data_dir() / "dlt" / "pipelines"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def warehouse_path(database: str) -> Path:
    """Local DuckDB file standing in for a Snowflake database (`DLT` -> `warehouse/dlt.duckdb`)."""
    path = data_dir() / "warehouse" / f"{database.lower()}.duckdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


REPLACE_STRATEGY = "insert-from-staging"


def _atomic_swaps(destination: Any) -> Any:
    """Readers never see a half or empty table, whatever the write disposition.

    `replace` loads into the staging dataset and swaps in; dlt runs the staging -> table SQL
    (DELETE + INSERT for replace and merge) in one transaction only when
    `supports_transactions` is set, and neither the duckdb nor the snowflake factory sets it
    (dlt 1.31): a failing INSERT then left an EMPTY table behind (tests/test_products.py
    proves the fix). Both engines support transactions.
    """
    destination.config_params["replace_strategy"] = REPLACE_STRATEGY
    destination.caps_params["supports_transactions"] = True
    return destination


def _local_warehouse() -> Any:
    import dlt
    from dlt.common.destination.configuration import ParquetFormatConfiguration

    return _atomic_swaps(
        dlt.destinations.duckdb(
            credentials=str(warehouse_path(WAREHOUSE_DATABASE)),
            # Load files live seconds on the local disk, next to the warehouse: compressing
            # them costs more than it saves (products 1M rows: extract 0.94 -> 0.78 s).
            parquet_format=ParquetFormatConfiguration(compression="none"),
        )
    )


def _snowflake_warehouse() -> Any:
    import dlt

    # Credentials (account, user, key or password, warehouse, role) resolve from dlt config
    # under [destination.snowflake.credentials]; the database is fixed by our design.
    return _atomic_swaps(dlt.destinations.snowflake(credentials={"database": WAREHOUSE_DATABASE}))


def _configured_bucket_url() -> str | None:
    import dlt

    return os.environ.get(BUCKET_URL_VAR) or dlt.config.get("data_pipelines.bucket_url")


def _local_bucket_url() -> str:
    configured = _configured_bucket_url()
    if configured:
        return configured.rstrip("/")
    path = data_dir() / "bucket"
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def _production_bucket_url() -> str:
    configured = _configured_bucket_url()
    if not configured:
        raise ConfigurationError(
            "No bucket configured for production: set [data_pipelines] bucket_url = "
            f'"s3://<bucket>" in .dlt/config.toml or export {BUCKET_URL_VAR}=s3://<bucket>.'
        )
    return configured.rstrip("/")


@dataclass(frozen=True)
class Environment:
    """Where one environment's data lands."""

    name: str
    warehouse: Callable[[], Any]
    bucket_url: Callable[[], str]
    uses_local_warehouse: bool

    def exchange_rates_url(self) -> str:
        """The prefix the exchange-rate files go under (watched by Snowpipe in production)."""
        return f"{self.bucket_url()}/{EXCHANGE_RATES_PREFIX}"


ENVIRONMENTS: dict[str, Environment] = {
    "local": Environment("local", _local_warehouse, _local_bucket_url, True),
    "production": Environment("production", _snowflake_warehouse, _production_bucket_url, False),
}


def current_environment() -> Environment:
    """The environment chosen by `DATA_PIPELINES_ENV` (`local` when unset)."""
    name = os.environ.get(ENV_VAR, "local").strip().lower() or "local"
    try:
        return ENVIRONMENTS[name]
    except KeyError:
        raise ConfigurationError(
            f"{ENV_VAR}={name!r} is not a known environment; use one of {sorted(ENVIRONMENTS)}."
        ) from None


@contextmanager
def warehouse_lock(database: str = WAREHOUSE_DATABASE, *, shared: bool = False) -> Iterator[None]:
    """Serialise access to a local DuckDB warehouse file across processes.

    DuckDB allows one writing process per file, and the worker runs flows in parallel
    processes, so a second writer would fail instead of waiting. Snowflake needs no such lock.
    """
    if not current_environment().uses_local_warehouse:
        yield
        return
    lock_path = warehouse_path(database).with_suffix(".lock")
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""Where the exchange-rates pipeline's files go in the bucket, and what they are called.

Bucket layout (dlt filesystem destination, deterministic names, one row per file):

    <bucket>/exchange-rates/historical/YYYY-MM-DD.jsonl.gz         one file per rate date
    <bucket>/exchange-rates/latest/YYYY-MM-DDTHHMMSSZ.jsonl.gz     one per OXR publication
    <bucket>/_dlt_exchange_rates/{init,_dlt_loads,_dlt_pipeline_state,_dlt_version}   dlt's own

A rerun writes the same object again instead of a new one, so the watched prefix never holds
two files for one day. `latest` files are named after OXR's publication time, not the run: a
new publication is a new object (Snowpipe never reloads a name it has loaded), the same one
is the same object.

How the layout is made: dlt keeps its state folders in the dataset folder whatever the layout,
and joins the layout to that folder; an absolute layout replaces it (path join semantics). So
the dataset folder is `_dlt_exchange_rates/` beside the watched prefix and the data layout is
the watched prefix's absolute path within the filesystem. dlt's placeholders know nothing of a
file's rows, so the `{snapshot}` placeholder is filled from the normalized files themselves
(one row per file, set for this pipeline only) between normalize and load.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import dlt

from pipelines.names import EXCHANGE_RATES_PIPELINE
from sources.exchange_rates import HISTORICAL_TABLE, LATEST_TABLE

SNAPSHOT_PLACEHOLDER = "snapshot"
# One row per normalized file is what lets a file be named after its row's date; scoped to
# the pipeline by dlt's pipeline-name config section.
ONE_ROW_PER_FILE_VAR = f"{EXCHANGE_RATES_PIPELINE.upper()}__NORMALIZE__DATA_WRITER__FILE_MAX_ITEMS"


def file_layout(exchange_rates_url: str) -> str:
    """dlt's filesystem `layout`: absolute to the watched prefix, file named by `{snapshot}`."""
    return (
        f"{filesystem_path(exchange_rates_url)}/{{table_name}}/{{{SNAPSHOT_PLACEHOLDER}}}.{{ext}}"
    )


def filesystem_path(url: str) -> str:
    """The absolute path of `url` inside its filesystem: `/bucket/prefix` or `/local/folder`."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        from dlt.common.storages import FilesystemConfiguration

        return FilesystemConfiguration.make_local_path(url).rstrip("/")
    return "/" + (parsed.netloc + parsed.path).rstrip("/")


def historical_dir(exchange_rates_url: str) -> str:
    return f"{filesystem_path(exchange_rates_url)}/{HISTORICAL_TABLE}"


class SnapshotNames:
    """`{snapshot}` of each normalized data file: its row's rate date (and time for `latest`)."""

    def __init__(self) -> None:
        self._by_file_id: dict[str, str] = {}

    def __call__(
        self, schema_name: str, table_name: str, load_id: str, file_id: str, ext: str
    ) -> str:
        try:
            return self._by_file_id[file_id]
        except KeyError:
            raise RuntimeError(
                f"no snapshot name for {table_name} file {file_id} of load {load_id}: "
                "the file was not normalized by this run"
            ) from None

    def learn(self, pipeline: dlt.Pipeline, load_ids: Iterable[str]) -> None:
        for load_id in load_ids:
            for job in pipeline.get_load_package_info(load_id).jobs["new_jobs"]:
                table = job.job_file_info.table_name
                if table not in (HISTORICAL_TABLE, LATEST_TABLE):
                    continue
                row = _single_row(job.file_path)
                self._by_file_id[job.job_file_info.file_id] = _snapshot_of(table, row)


def _single_row(path: str) -> dict[str, Any]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()]
    if len(lines) != 1:
        raise RuntimeError(
            f"{path} holds {len(lines)} rows; the layout needs exactly one per file "
            f"({ONE_ROW_PER_FILE_VAR}=1)"
        )
    return json.loads(lines[0])


def _snapshot_of(table: str, row: dict[str, Any]) -> str:
    if table == HISTORICAL_TABLE:
        return str(row["rate_date"])
    published = datetime.fromisoformat(str(row["timestamp"])).astimezone(UTC)
    return published.strftime("%Y-%m-%dT%H%M%SZ")

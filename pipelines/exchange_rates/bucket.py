"""The bucket side of the exchange-rates pipeline: where files go, what is already there.

Files are named by their content's day under the watched prefix (`pipelines/bucket_layout.py`);
after each load, the environment's `after_files_land` runs (locally the pipe stand-in loads the
files; in production Snowpipe does, and it returns None).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

import dlt
from dlt.common.pipeline import LoadInfo
from dlt.sources import DltResource

from pipelines.bucket_files import BucketDays, check_day_files
from pipelines.bucket_layout import (
    ONE_ROW_PER_FILE_VAR,
    SNAPSHOT_PLACEHOLDER,
    SnapshotNames,
    file_layout,
    historical_dir,
)
from pipelines.environment import Environment
from pipelines.runner import RunContext

logger = logging.getLogger(__name__)

# `{snapshot}` of every data file this process normalized, by file id (ids are unique per file;
# one run of the pipeline at a time holds the guard).
_SNAPSHOTS = SnapshotNames()


def destination(environment: Environment, **options: Any) -> Any:
    """The bucket, files named by their content's day (the watched prefix's layout)."""
    os.environ.setdefault(ONE_ROW_PER_FILE_VAR, "1")
    # a local bucket shows whole files only, as S3 does (dlt_patches.use_atomic_local_files,
    # switched on with the runtime)
    return dlt.destinations.filesystem(
        bucket_url=environment.bucket_url(),
        layout=file_layout(environment.exchange_rates_url()),
        extra_placeholders={SNAPSHOT_PLACEHOLDER: _SNAPSHOTS},
        **options,
    )


@dataclass
class Bucket:
    """One run's writes to the bucket, each followed by what follows files landing."""

    context: RunContext
    local_pipe: dict[str, Any] | None = None

    @property
    def pipeline(self) -> dlt.Pipeline:
        return self.context.pipeline

    @property
    def exchange_rates_url(self) -> str:
        return self.context.environment.exchange_rates_url()

    def load(self, resource: DltResource) -> LoadInfo:
        """Extract, normalize, name the files, load: one load package; then the local pipe."""
        info = self.context.load(
            resource,
            before_load=lambda normalized: _SNAPSHOTS.learn(self.pipeline, normalized.loads_ids),
        )
        self.run_local_pipe()
        return info

    def _name_files(self, normalized: Any) -> None:
        _SNAPSHOTS.learn(self.pipeline, normalized.loads_ids)

    def run_local_pipe(self) -> None:
        """What follows files landing: the local pipe loads them (Snowpipe does in production)."""
        report = self.context.environment.after_files_land(self.exchange_rates_url)
        if report is None:
            return
        logger.info(
            "Local Snowpipe loaded %d file(s), %d row(s)",
            report["files_loaded"],
            report["rows_loaded"],
        )
        totals = self.local_pipe or {
            "files_loaded": 0,
            "rows_loaded": 0,
            "loaded": [],
            "failed": [],
        }
        totals["files_loaded"] += report["files_loaded"]
        totals["rows_loaded"] += report["rows_loaded"]
        totals["loaded"] += report["loaded"]
        totals["failed"] += report["failed"]  # files the pipe could not load (reported, skipped)
        self.local_pipe = totals


def check_bucket(
    pipeline: dlt.Pipeline, exchange_rates_url: str, within: Iterable[date] | None = None
) -> BucketDays:
    """Historical days whose file is whole and valid; broken files are moved to quarantine."""
    with pipeline.destination_client() as client:
        fs = client.fs_client  # type: ignore[attr-defined]
        return check_day_files(fs, historical_dir(exchange_rates_url), within)


def days_in_bucket(
    pipeline: dlt.Pipeline, exchange_rates_url: str, within: Iterable[date] | None = None
) -> set[date]:
    """Rate dates that already have a whole, valid historical file under the watched prefix."""
    return check_bucket(pipeline, exchange_rates_url, within).present

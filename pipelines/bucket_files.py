"""Whole files only in the exchange-rates bucket: atomic local writes, checks, quarantine.

- S3 makes an object visible only once its upload is complete; a local bucket folder shows
  whole files only because `use_atomic_local_files` makes fsspec's `file://` class copy to a
  hidden temporary name and rename (a library patch: pipelines/dlt_patches.py).
- A day file counts as present only if it reads back whole and its row passes the same data
  contract as an answer at the door; anything else is moved aside to
  `<bucket>/_quarantine/<prefix>/<UTC time>/...` (outside the watched prefix, so Snowpipe never
  sees it) and the day is fetched again.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

# re-exported: the exchange-rates pipeline takes it from here with the bucket checks
from sources.open_exchange_rates.contract import OXRDataError, validate_historical

logger = logging.getLogger(__name__)

QUARANTINE_PREFIX = "_quarantine"


def day_file_problem(content: bytes, name: str, day: date) -> str | None:
    """Why the bytes of `historical/<day>` are not one whole, valid day row; None if they are."""
    try:
        text = (gzip.decompress(content) if name.endswith(".gz") else content).decode("utf-8")
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) != 1:
            return f"holds {len(lines)} rows, not 1"
        row = json.loads(lines[0])
        if not isinstance(row, dict) or row.get("rate_date") != day.isoformat():
            return f"its row is not the day {day.isoformat()}"
        published = datetime.fromisoformat(str(row.get("timestamp")))
        validate_historical({**row, "timestamp": int(published.timestamp())}, day)
    except OXRDataError as refused:
        return f"its row breaks the data contract: field `{refused.field}` {refused.problem}"
    except (OSError, EOFError, UnicodeDecodeError, ValueError, TypeError) as broken:
        return f"does not read back whole ({type(broken).__name__}: {broken})"
    return None


@dataclass
class BucketDays:
    """The historical days whose files are whole, and the files moved to quarantine."""

    present: set[date] = field(default_factory=set)
    quarantined: list[str] = field(default_factory=list)


def check_day_files(fs: Any, folder: str, within: Iterable[date] | None = None) -> BucketDays:
    """Read every `<folder>/<YYYY-MM-DD>.<ext>` (of the days `within`, if given) and sort them.

    Reads go through `fs.cat` on the whole list, which s3fs fetches concurrently.
    """
    result = BucketDays()
    if not fs.exists(folder):
        return result
    wanted = None if within is None else set(within)
    files: dict[str, date] = {}
    for path in fs.ls(folder, detail=False):
        name = str(path).rsplit("/", 1)[-1]
        try:
            day = date.fromisoformat(name.split(".", 1)[0])
        except ValueError:
            continue  # not a day file (e.g. the hidden temporary name of a write in progress)
        if wanted is None or day in wanted:
            files[str(path)] = day
    if not files:
        return result
    contents = fs.cat(list(files), on_error="return")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for path, day in sorted(files.items()):
        content = contents.get(path)
        if isinstance(content, bytes):
            problem = day_file_problem(content, path, day)
        else:
            problem = f"cannot be read ({content!r})"
        if problem is None:
            result.present.add(day)
            continue
        result.quarantined.append(quarantine(fs, path, stamp, problem))
    return result


def quarantine(fs: Any, path: str, stamp: str, problem: str) -> str:
    """Move `<base>/<prefix>/<table>/<name>` to `<base>/_quarantine/<prefix>/<stamp>/<table>/`."""
    base, prefix, table, name = path.rsplit("/", 3)
    target = f"{base}/{QUARANTINE_PREFIX}/{prefix}/{stamp}/{table}/{name}"
    fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
    fs.mv(path, target)
    logger.warning(
        "Bucket file %s/%s/%s %s: moved to %s; the day will be fetched again",
        prefix,
        table,
        name,
        problem,
        target,
    )
    return target

"""File locks: one run per dlt pipeline on a machine, whatever started it.

dlt keeps a pipeline's working folder (state, schemas, extracted and normalized load packages)
on local disk and assumes one process uses it at a time: two runs of one pipeline at once
(two backfills, a backfill beside `latest`, the daily flow beside the CLI) delete each other's
packages (`FileNotFoundError: .../normalize/extracted/<load id>/new_jobs`). Prefect's tag
concurrency limits only see runs inside Prefect, and a crashed run keeps its slot until the
lease expires (60 s + the repossessor's 15 s loop in Prefect 3.8.8). An OS file lock covers
every entry point (CLI, `python -m`, flow, test) and the kernel drops it the moment its
holder dies, `kill -9` included, so a rerun after a crash starts at once.

Hand-written because neither dlt nor Prefect offers a cross-process lock for a working
folder; `fcntl.flock` is the whole mechanism, the rest is the operator's log line and an
optional maximum wait.

- `file_lock(path, shared=False, max_wait=None, what=...)`: exclusive (or shared) lock on
  `path`. Reentrant within a process: the thread that holds it may take it again (a flow task
  that runs a pipeline and then persists its audit). Other threads of the process wait like
  other processes do.
- `pipeline_run_lock(name)`: the lock every pipeline takes at its run entry, beside dlt's
  working folders: `<pipelines dir>/<name>.run.lock`. The max wait comes from
  `DATA_PIPELINES_RUN_LOCK_MAX_WAIT` (seconds; unset = wait as long as it takes).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from pipelines.environment import ConfigurationError, pipelines_dir

logger = logging.getLogger(__name__)

RUN_LOCK_MAX_WAIT_VAR = "DATA_PIPELINES_RUN_LOCK_MAX_WAIT"
# How often a bounded wait re-tries the lock; an unbounded wait blocks in the kernel instead.
_POLL_SECONDS = 0.2


class LockWaitTimeout(TimeoutError):
    """Another run held the lock longer than the caller agreed to wait (transient)."""


@dataclass
class _Held:
    """This process's hold on one lock file: the thread that owns it and how often it entered."""

    guard: threading.RLock
    handle: IO[str] | None = None
    depth: int = 0


_registry_guard = threading.Lock()
_held: dict[str, _Held] = {}


def _entry(path: Path) -> _Held:
    key = str(path.resolve())
    with _registry_guard:
        return _held.setdefault(key, _Held(guard=threading.RLock()))


def _holder_description(handle: IO[str]) -> str:
    """Who holds the lock, as its holder wrote it (pid, command, since when); best effort."""
    try:
        handle.seek(0)
        holder = json.loads(handle.read() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')}, `{holder.get('command')}`, since {holder.get('since')}"


def _record_holder(handle: IO[str]) -> None:
    """Write who we are into the lock file, for the log line of whoever waits next."""
    handle.seek(0)
    handle.truncate()
    handle.write(
        json.dumps(
            {
                "pid": os.getpid(),
                "command": " ".join(sys.argv)[:200],
                "since": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
    )
    handle.flush()


def _wait_for_flock(
    handle: IO[str], mode: int, *, what: str, path: Path, max_wait: float | None
) -> None:
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    holder = _holder_description(handle)
    limit = "as long as it takes" if max_wait is None else f"at most {max_wait:g} s"
    logger.info("Waiting for %s: another run holds %s (%s); waiting %s", what, path, holder, limit)
    started = time.monotonic()
    if max_wait is None:
        fcntl.flock(handle, mode)  # blocks in the kernel; wakes when the holder ends or dies
    else:
        deadline = started + max_wait
        while True:
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockWaitTimeout(
                        f"{what} is busy: another run ({holder}) held {path} for more than "
                        f"{max_wait:g} s; let it finish (or stop it: a stopped or killed run "
                        f"releases the lock at once) and run again, or raise "
                        f"{RUN_LOCK_MAX_WAIT_VAR}."
                    ) from None
                time.sleep(_POLL_SECONDS)
    logger.info("Got %s after waiting %.1f s", what, time.monotonic() - started)


@contextmanager
def file_lock(
    path: str | Path,
    *,
    shared: bool = False,
    max_wait: float | None = None,
    what: str | None = None,
) -> Iterator[None]:
    """Hold an OS lock on `path` (created if missing) for the duration of the block.

    `shared=True` lets other shared holders in alongside (readers); exclusive excludes all.
    A busy lock logs one line naming `what` is awaited and who holds it, then waits: without
    end when `max_wait` is None, else raises `LockWaitTimeout` after `max_wait` seconds.
    Reentrant for the owning thread (the inner block neither waits nor changes the mode).
    """
    path = Path(path)
    what = what or f"the lock {path}"
    entry = _entry(path)
    # Threads of this process queue on the guard (flock would let them all in: one owner).
    if not entry.guard.acquire(timeout=-1 if max_wait is None else max_wait):
        raise LockWaitTimeout(
            f"{what} is busy: another thread of this process held {path} for more than "
            f"{max_wait:g} s."
        )
    try:
        if entry.depth == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+")  # noqa: SIM115 - closed on the last release below
            try:
                mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
                _wait_for_flock(handle, mode, what=what, path=path, max_wait=max_wait)
                if not shared:
                    _record_holder(handle)
            except BaseException:
                handle.close()
                raise
            entry.handle = handle
        entry.depth += 1
        try:
            yield
        finally:
            entry.depth -= 1
            if entry.depth == 0 and entry.handle is not None:
                # Closing the file releases the flock; the kernel does the same if we die.
                entry.handle.close()
                entry.handle = None
    finally:
        entry.guard.release()


def run_lock_path(pipeline_name: str) -> Path:
    """The run lock of one dlt pipeline, beside the working folders it protects."""
    return Path(pipelines_dir()) / f"{pipeline_name}.run.lock"


def configured_max_wait() -> float | None:
    """`DATA_PIPELINES_RUN_LOCK_MAX_WAIT` in seconds, or None (wait without end)."""
    raw = os.environ.get(RUN_LOCK_MAX_WAIT_VAR, "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ConfigurationError(
            f"{RUN_LOCK_MAX_WAIT_VAR}={raw!r} is not a number of seconds; unset it to wait "
            "for a running pipeline as long as it takes, or set e.g. 600."
        ) from None


@contextmanager
def pipeline_run_lock(pipeline_name: str, *, max_wait: float | None = None) -> Iterator[None]:
    """One run of the dlt pipeline `pipeline_name` at a time on this machine.

    `max_wait` defaults to `DATA_PIPELINES_RUN_LOCK_MAX_WAIT` (unset: wait without end).
    """
    with file_lock(
        run_lock_path(pipeline_name),
        max_wait=configured_max_wait() if max_wait is None else max_wait,
        what=f"the {pipeline_name} pipeline (its dlt working folder is in use)",
    ):
        yield

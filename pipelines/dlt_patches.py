"""Every place we change a library from the inside, and nothing else (docs/architecture.md).

Public options come first: dlt's destination factories take `replace_strategy=` and
`supports_transactions=` as keyword arguments (`pipelines.runner.atomic_swap_options`), so
those are no longer set by hand. What is left reaches past a library's public surface, each for
a measured reason given in its docstring:

- `parquet_without_dictionaries`: dlt's `ParquetDataWriter._create_writer`; products 10M-row
  full load 11.1 -> 9.5 s;
- `capabilities_resolved_once`: dlt's `Destination.capabilities`, on our factory objects;
  ~0.3 s of a ~0.8 s no-new-rows products run;
- `dlt_urls_without_sqlalchemy`: the module `dlt.common.libs.sql_alchemy_compat`; 0.2 s per run
  (no-new-rows products 0.40 -> 0.27 s);
- `use_atomic_local_files`: fsspec's `file://` class, as dlt's filesystem destination copies
  with it; a crash mid-copy leaves no half file in the local bucket;
- `keep_dlt_format_on_own_handler`: the `dlt` logger's handlers (dlt formats the first one);
  one timestamp per line in Prefect run logs;
- `sql_jobs_with_preamble`: dlt's `SqlLoadJob._split_fragments`; the warehouse fence's check
  runs inside the transaction that commits a merge or replace (pipelines/fencing.py). Without
  it a run that lost its slot committed after the next run took over (measured: 100 and 70
  duplicate `audit_id` rows in PRODUCTS).

Versions: each patch was written and measured against `WRITTEN_FOR` (dlt 1.31.0, pyarrow
26.0.1, fsspec 2026.9.0) and fingerprints the library code it relies on (`FINGERPRINTS`: sha256
of that code's source). Under another version the fingerprints are compared when the patch is
applied: unchanged code, the patch applies; changed code, the patch TURNS ITSELF OFF, logs one
warning and the library's own behaviour runs (slower; for the local bucket, copies that are not
atomic, which the bucket checks catch and quarantine). Off rather than failing, because every
patch is a speed-up or a local-only safeguard: an upgrade must not stop production loads over
one. The exception is `sql_jobs_with_preamble`, which carries correctness, not speed: on changed
code it refuses to run (`PatchUnavailable`) instead of loading unfenced. The loud failure is the
test: tests/test_dlt_patches.py (in `make upgrade-check`) fails on any fingerprint or version
change, so an upgrade re-measures and re-checks each patch here.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import inspect
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

logger = logging.getLogger(__name__)

# The versions every patch here was written and measured against.
WRITTEN_FOR: dict[str, str] = {"dlt": "1.31.0", "pyarrow": "26.0.1", "fsspec": "2026.9.0"}

# Temporary names of atomic copies start with a dot and end with this: never a `.jsonl.gz` the
# pipe would load, never a date the bucket checks would count.
PARTIAL_SUFFIX = ".partial"


# --- what each patch relies on, as source text -------------------------------------------------


def _dlt_create_writer() -> str:
    from dlt.common.data_writers.writers import ParquetDataWriter

    create_writer = ParquetDataWriter._create_writer
    return inspect.getsource(getattr(create_writer, "original", create_writer))


def _dlt_capabilities() -> str:
    from dlt.common.destination.reference import Destination

    return inspect.getsource(Destination.capabilities)


def _dlt_sql_alchemy_compat() -> str:
    # the file itself: once patched, the module name resolves to dlt's shim
    package = importlib.util.find_spec("dlt.common.libs")
    assert package is not None and package.submodule_search_locations
    folder = Path(next(iter(package.submodule_search_locations)))
    return (folder / "sql_alchemy_compat.py").read_text(encoding="utf-8")


def _fsspec_local_copy() -> str:
    from fsspec.implementations.local import LocalFileSystem

    return inspect.getsource(LocalFileSystem.put_file) + inspect.getsource(LocalFileSystem.cp_file)


def _dlt_filesystem_job_copy() -> str:
    from dlt.destinations.impl.filesystem.filesystem import FilesystemLoadJob

    return inspect.getsource(FilesystemLoadJob.run)


def _dlt_sql_load_job() -> str:
    from dlt.destinations.job_client_impl import SqlLoadJob

    split = SqlLoadJob._split_fragments
    return inspect.getsource(SqlLoadJob.run) + inspect.getsource(getattr(split, "original", split))


def _dlt_create_logger() -> str:
    from dlt.common import logger as dlt_logger

    return inspect.getsource(dlt_logger._create_logger)


# patch -> the libraries whose versions it was written for, and the code it relies on
RELIES_ON: dict[str, tuple[tuple[str, ...], tuple[Callable[[], str], ...]]] = {
    "parquet_without_dictionaries": (("dlt", "pyarrow"), (_dlt_create_writer,)),
    "capabilities_resolved_once": (("dlt",), (_dlt_capabilities,)),
    "dlt_urls_without_sqlalchemy": (("dlt",), (_dlt_sql_alchemy_compat,)),
    "use_atomic_local_files": (("dlt", "fsspec"), (_fsspec_local_copy, _dlt_filesystem_job_copy)),
    "keep_dlt_format_on_own_handler": (("dlt",), (_dlt_create_logger,)),
    "sql_jobs_with_preamble": (("dlt",), (_dlt_sql_load_job,)),
}
# sha256 of each source above, as found under WRITTEN_FOR (tests/test_dlt_patches.py)
FINGERPRINTS: dict[str, tuple[str, ...]] = {
    "parquet_without_dictionaries": (
        "06a83d1550e816cb4dd19f3b8854a5639b3576836a466dbbca99e3a87de2d6a2",
    ),
    "capabilities_resolved_once": (
        "2c45487b554979ca68a21fcbbb8aa59ba1b1b16af09afda31ce36a0db409b06f",
    ),
    "dlt_urls_without_sqlalchemy": (
        "20793b9c5458c37ce4164cfcaea2d895e39c4758a0b1de3622e1705c1497e2da",
    ),
    "use_atomic_local_files": (
        "bcd7172e268f010fd3e9ed57923b461eb983c67ebd13d9f100efce2344d2abf7",
        "837648f9e8cb828d79d2615693b8cba06de668b25b7f330701c3b0c2f7e77f9c",
    ),
    "keep_dlt_format_on_own_handler": (
        "844a1c53548f2fccfd3df670df12d912e4db28f692213b3fdc42fef9bdaff173",
    ),
    "sql_jobs_with_preamble": ("b286f32f172809c66190df3451dc46eb6e6136f520f03f76b9b76cf8120134a8",),
}


def fingerprints(patch: str) -> tuple[str, ...]:
    """sha256 of the library code `patch` relies on, as installed."""
    return tuple(
        hashlib.sha256(source().encode("utf-8")).hexdigest() for source in RELIES_ON[patch][1]
    )


@functools.cache
def installed(library: str) -> str:
    """The installed version of `library` ("unknown" without package metadata: then the
    fingerprints decide)."""
    try:
        return version(library)
    except PackageNotFoundError:
        return "unknown"


def moved_libraries(patch: str) -> dict[str, str]:
    """The libraries of `patch` installed at another version than written for: name -> version."""
    found = {library: installed(library) for library in RELIES_ON[patch][0]}
    return {library: v for library, v in found.items() if v != WRITTEN_FOR[library]}


_DECIDED: dict[str, bool] = {}


def applies(patch: str) -> bool:
    """Whether `patch` may apply: the versions it was written for, or the code it relies on
    unchanged under others. Decided once per process; a patch turned off warns once."""
    if patch not in _DECIDED:
        moved = moved_libraries(patch)
        _DECIDED[patch] = not moved or fingerprints(patch) == FINGERPRINTS[patch]
        if not _DECIDED[patch]:
            logger.warning(
                "Library patch %s is off: written for %s, found %s, and the code it relies on "
                "changed (pipelines/dlt_patches.py, tests/test_dlt_patches.py)",
                patch,
                ", ".join(f"{lib} {WRITTEN_FOR[lib]}" for lib in sorted(moved)),
                ", ".join(f"{lib} {found}" for lib, found in sorted(moved.items())),
            )
    return _DECIDED[patch]


# --- switched on once, for the process ---------------------------------------------------------


def switch_on() -> None:
    """The process-wide patches, each idempotent: `configure_runtime()` calls this once per
    run, before any pipeline exists. The others are hooks that take their caller's part
    (`capabilities_resolved_once(destination)` wraps one destination,
    `sql_jobs_with_preamble(fence)` takes the fence's statements, pipelines/fencing.py;
    `keep_dlt_format_on_own_handler(handler)` takes Prefect's log handler class, flows/)."""
    dlt_urls_without_sqlalchemy()
    parquet_without_dictionaries()
    use_atomic_local_files()


# --- the patches ------------------------------------------------------------------------------


def parquet_without_dictionaries() -> None:
    """dlt's parquet files without dictionary encoding: 2.7x cheaper to write, ~17% larger.

    Writing parquet was the largest CPU cost of a products full load (10M rows: extract
    7.6 -> 6.0 s, total 11.1 -> 9.5 s; snappy files 24 -> 28 MB per 1M rows, docs/benchmarks.md).
    Dictionary encoding hashes every value of every column chunk, mostly in vain for unique
    ids and timestamps. dlt 1.31 has no setting for it (its parquet options stop at
    compression, page size and the like), so this is dlt's own `_create_writer`, line for line
    (`use_content_defined_chunking` only on pyarrow >= 21, as dlt does), with
    `use_dictionary=False` added. tests/test_runner.py checks dlt's files keep its compression
    and lose dictionaries. Process-wide, once.
    """
    from dlt.common.data_writers.writers import ParquetDataWriter

    if getattr(ParquetDataWriter._create_writer, "without_dictionaries", False):
        return
    if not applies("parquet_without_dictionaries"):
        return

    def _create_writer(self: ParquetDataWriter, schema: Any) -> Any:
        from dlt.common.libs.pyarrow import pyarrow

        options = self.parquet_format
        parquet_writer_kwargs = {
            "flavor": options.flavor,
            "version": options.version,
            "compression": options.compression,
            "data_page_size": options.data_page_size,
            "coerce_timestamps": options.coerce_timestamps,
            "allow_truncated_timestamps": options.allow_truncated_timestamps,
            "use_compliant_nested_type": options.use_compliant_nested_type,
            "write_page_index": options.write_page_index,
        }
        if int(pyarrow.__version__.split(".")[0]) >= 21:
            parquet_writer_kwargs["use_content_defined_chunking"] = (
                options.use_content_defined_chunking
            )
        return pyarrow.parquet.ParquetWriter(
            self._f, schema, use_dictionary=False, **parquet_writer_kwargs
        )

    _create_writer.without_dictionaries = True  # type: ignore[attr-defined]
    _create_writer.original = ParquetDataWriter._create_writer  # type: ignore[attr-defined]
    ParquetDataWriter._create_writer = _create_writer  # type: ignore[method-assign]


def capabilities_resolved_once(destination: Any) -> Any:
    """Let `destination` resolve its configuration for `capabilities()` once, not per lookup.

    dlt 1.31 re-resolves the whole destination configuration (config providers, credentials
    parsing) on every `capabilities()` call made without a config: 16 calls, ~0.3 s of a
    ~0.8 s products run with no new rows. Configuration does not change within a run and a
    pipeline is made per run, so the first answer per naming convention stands. Calls with
    an explicit config (the load step's client) still go to dlt unchanged. Shadows the method
    on this one factory object only.
    """
    from dlt.common.destination import Destination

    if not isinstance(destination, Destination):
        return destination  # a name or reference: dlt builds the factory itself
    if not applies("capabilities_resolved_once"):
        return destination
    resolve = destination.capabilities
    resolved: dict[Any, Any] = {}

    def capabilities(config: Any = None, naming: Any = None) -> Any:
        if config is not None:
            return resolve(config, naming)
        # naming adjusts case folding and identifier lengths: same class + length, same caps
        key = None if naming is None else (type(naming), getattr(naming, "max_length", None))
        if key not in resolved:
            resolved[key] = resolve(None, naming)
        return resolved[key].copy()  # a caller may adjust its copy; ours stays as resolved

    destination.capabilities = capabilities  # type: ignore[method-assign]
    return destination


def dlt_urls_without_sqlalchemy() -> None:
    """Have dlt parse and print connection URLs with its own copy of SQLAlchemy's URL class.

    dlt does so whenever SQLAlchemy is not installed; it is installed here only because
    Prefect needs it, and importing it cost 0.2 s of every run (dlt parses credentials and
    renders the destination's into each LoadInfo; a products run with no new rows 0.40 ->
    0.27 s). No pipeline of ours uses SQLAlchemy. Points the module name dlt imports at dlt's
    own shim in `sys.modules`; left alone when something already imported either module.
    """
    compat = "dlt.common.libs.sql_alchemy_compat"
    if compat in sys.modules or "sqlalchemy" in sys.modules:
        return
    if not applies("dlt_urls_without_sqlalchemy"):
        return
    from dlt.common.libs import sql_alchemy_shims

    sys.modules[compat] = sql_alchemy_shims


class AtomicLocalFileSystem(LocalFileSystem):  # type: ignore[misc]
    """fsspec's local filesystem, but a copied file appears under its name whole or not at all.

    The class itself uses fsspec's public extension point (a subclass overriding `cp_file`);
    the patch is `use_atomic_local_files`, which makes it the `file://` class process-wide.
    """

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        source, target = self._strip_protocol(path1), self._strip_protocol(path2)
        if not self.isfile(source):
            super().cp_file(path1, path2, **kwargs)  # directories and errors as before
            return
        if self.auto_mkdir:
            self.makedirs(self._parent(target), exist_ok=True)
        folder, name = os.path.split(target)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=PARTIAL_SUFFIX)
        try:
            with os.fdopen(handle, "wb") as out, open(source, "rb") as data:
                shutil.copyfileobj(data, out)
                out.flush()
                os.fsync(out.fileno())  # the bytes are on disk before the name points at them
            shutil.copymode(source, temporary)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


def use_atomic_local_files() -> None:
    """Make fsspec's `file://` (dlt's local filesystem destination) write atomically.

    S3 makes an object visible only once its upload is complete. A local bucket folder did not:
    dlt's filesystem destination copies each file with `fs_client.put_file`, which fsspec's
    `LocalFileSystem` implements as a plain `shutil.copyfile` to the final name, so a crash
    mid-copy left half a file under a day's name. `AtomicLocalFileSystem` writes to a hidden
    temporary name in the same folder and renames it over the final name, as S3 behaves. dlt
    picks fsspec's class by protocol and has no hook of its own, so the class is registered
    for `file://` (fsspec's `register_implementation(..., clobber=True)`), process-wide, once.
    Gain: correctness, not speed (tests/test_oxr_data_contract.py kills a copy midway).
    """
    if fsspec.get_filesystem_class("file") is AtomicLocalFileSystem:
        return
    if not applies("use_atomic_local_files"):
        return
    fsspec.register_implementation("file", AtomicLocalFileSystem, clobber=True)


class DltOwnHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler dlt formats: dlt's lines on stderr in dlt's own format."""


def keep_dlt_format_on_own_handler(foreign: type[logging.Handler]) -> None:
    """Give dlt a handler of its own to format, and undo its format on `foreign` handlers.

    dlt (re)initialises its logger at runtime setup and puts its timestamped format
    (`{asctime}|[{levelname}]|{process}|...`) on the *first* handler of the `dlt` logger
    (`dlt.common.logger._create_logger`). When that first handler is one the caller shares with
    other loggers (flows pass Prefect's API log handler, shared with `prefect.flow_runs`), every
    line of the run's logs got a second timestamp. Keeping a `DltOwnHandler` first gives dlt one
    of its own to format; a dlt format already set on a `foreign` handler is removed. The
    caller (flows/pipeline_flow.py) names the foreign handler class: pipelines/ never imports
    Prefect. Gain: readable run logs, not speed.
    """
    dlt_logger = logging.getLogger("dlt")
    if not applies("keep_dlt_format_on_own_handler"):
        return
    if not dlt_logger.handlers or not isinstance(dlt_logger.handlers[0], DltOwnHandler):
        dlt_logger.handlers.insert(0, DltOwnHandler(sys.stderr))
    for handler in dlt_logger.handlers[1:]:
        # undo a format dlt set before this process first got here
        formatter = handler.formatter
        if isinstance(handler, foreign) and type(formatter).__module__.startswith("dlt."):
            handler.setFormatter(None)


class PatchUnavailable(RuntimeError):
    """A patch that carries correctness cannot apply to the installed library (permanent)."""


def sql_jobs_with_preamble(preamble: Callable[[str], list[str]]) -> None:
    """Run `preamble(load_id)`'s statements first in every SQL job of a load, same transaction.

    dlt runs each merge and replace-from-staging as one SQL job whose statements share one
    transaction (`SqlLoadJob.run`: `maybe_transaction` around `execute_many` of the job's
    fragments, with `supports_transactions` set, `runner.atomic_swap_options`). That
    transaction is the moment a load becomes visible, and the only place a check can sit so
    that it and the commit are one: the warehouse fence (pipelines/fencing.py) puts its
    statements there. dlt 1.31 has no hook for it, so the fragments of each job are prefixed
    with the preamble of its load id (an empty list leaves the job unchanged). Process-wide,
    once; the preamble decides per load. On changed dlt code this refuses (`PatchUnavailable`)
    rather than turning off: a fence that silently stops fencing would be worse than none.
    """
    from dlt.destinations.job_client_impl import SqlLoadJob

    current = SqlLoadJob._split_fragments
    if getattr(current, "preamble", None) is preamble:
        return
    if not applies("sql_jobs_with_preamble"):
        raise PatchUnavailable(
            "The warehouse fence cannot be installed: dlt's SqlLoadJob changed under "
            f"{', '.join(f'{k} {v}' for k, v in moved_libraries('sql_jobs_with_preamble').items())}"
            f" (written for dlt {WRITTEN_FOR['dlt']}). Install the locked versions "
            "(`uv sync --frozen`) or re-check pipelines/dlt_patches.py for the new dlt."
        )
    original = getattr(current, "original", current)

    def _split_fragments(self: SqlLoadJob, sql: str) -> list[str]:
        return [*preamble(self._load_id), *original(self, sql)]

    _split_fragments.preamble = preamble  # type: ignore[attr-defined]
    _split_fragments.original = original  # type: ignore[attr-defined]
    SqlLoadJob._split_fragments = _split_fragments  # type: ignore[method-assign]

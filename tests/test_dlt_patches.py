"""The library patches still fit the libraries under them (pipelines/dlt_patches.py).

These tests fail when a library changes under a patch: a new version, or changed source of the
code a patch relies on. That is on purpose. At run time such a patch turns itself off (and
warns); here the upgrade stops until someone re-checks the patch against the new code, re-measures
its gain, and updates `WRITTEN_FOR` and `FINGERPRINTS` (or drops the patch, if the library now
offers an option: docs/architecture.md, "Library patches").
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from pipelines import dlt_patches
from pipelines.runner import REPLACE_STRATEGY, atomic_swap_options


@pytest.mark.parametrize("library", sorted(dlt_patches.WRITTEN_FOR))
def test_installed_versions_are_the_ones_the_patches_were_written_for(library: str) -> None:
    assert dlt_patches.installed(library) == dlt_patches.WRITTEN_FOR[library], (
        f"{library} moved: re-check every patch in pipelines/dlt_patches.py that names it"
    )


@pytest.mark.parametrize("patch", sorted(dlt_patches.RELIES_ON))
def test_the_library_code_each_patch_relies_on_is_unchanged(patch: str) -> None:
    assert dlt_patches.fingerprints(patch) == dlt_patches.FINGERPRINTS[patch], (
        f"the library code under {patch} changed: re-read it, re-measure, update the fingerprint"
    )


def test_a_patch_turns_itself_off_when_the_code_under_it_changed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(dlt_patches, "_DECIDED", {})
    monkeypatch.setitem(dlt_patches.WRITTEN_FOR, "dlt", "0.0.1")
    # another version, same code: the patch applies
    assert dlt_patches.applies("capabilities_resolved_once") is True
    # another version, other code: off, with one warning
    monkeypatch.setattr(dlt_patches, "_DECIDED", {})
    monkeypatch.setitem(dlt_patches.FINGERPRINTS, "capabilities_resolved_once", ("changed",))
    with caplog.at_level(logging.WARNING, logger="pipelines.dlt_patches"):
        assert dlt_patches.applies("capabilities_resolved_once") is False
        assert dlt_patches.applies("capabilities_resolved_once") is False
    (warning,) = caplog.records
    assert "capabilities_resolved_once is off" in warning.getMessage()
    # off: dlt's own method stays
    destination = atomic_destination()
    assert "capabilities" not in vars(dlt_patches.capabilities_resolved_once(destination))


def atomic_destination(**options: Any) -> Any:
    import dlt

    # a file name only: nothing here connects
    return dlt.destinations.duckdb("patches_test.duckdb", **atomic_swap_options(**options))


def test_the_parquet_writer_passes_dlts_own_arguments_plus_no_dictionaries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The patched `_create_writer` hands pyarrow what dlt's original does, and one thing more."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from dlt.common.data_writers.writers import ParquetDataWriter
    from dlt.common.destination.configuration import ParquetFormatConfiguration

    dlt_patches.parquet_without_dictionaries()
    patched = ParquetDataWriter._create_writer
    original = patched.original  # type: ignore[attr-defined]
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(pq, "ParquetWriter", lambda f, schema, **kwargs: calls.append(kwargs))
    writer = ParquetDataWriter.__new__(ParquetDataWriter)
    writer._f = None
    writer.parquet_format = ParquetFormatConfiguration()
    schema = pa.schema([("id", pa.int64())])
    original(writer, schema)
    patched(writer, schema)
    dlts, ours = calls
    assert "use_dictionary" not in dlts
    assert ours == {**dlts, "use_dictionary": False}


def test_dlts_url_shim_offers_what_dlt_imports_from_the_compat_module() -> None:
    from dlt.common.libs import sql_alchemy_shims

    assert callable(sql_alchemy_shims.make_url) and isinstance(sql_alchemy_shims.URL, type)
    url = sql_alchemy_shims.make_url("postgresql://loader:p%40ss@db.example:5432/app")
    assert (url.username, url.password, url.host, url.port) == (
        "loader",
        "p@ss",
        "db.example",
        5432,
    )
    if "sqlalchemy" not in sys.modules:  # in a process that took the patch, dlt uses the shim
        from pipelines.environment import configure_runtime

        configure_runtime()
        assert sys.modules["dlt.common.libs.sql_alchemy_compat"] is sql_alchemy_shims


def test_cached_capabilities_answer_as_dlt_does() -> None:
    destination = atomic_destination()
    uncached = destination.capabilities()
    cached = dlt_patches.capabilities_resolved_once(atomic_destination())
    assert cached.capabilities().supports_transactions is True
    assert dict(cached.capabilities()) == dict(uncached)
    assert cached.capabilities() is not cached.capabilities()  # each caller gets a copy


def test_dlt_formats_its_own_handler_not_a_foreign_one() -> None:
    """dlt's logger setup formats the first handler of the `dlt` logger: ours, not a foreign."""
    from dlt.common import logger as dlt_logger

    class Foreign(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            pass

    dlt_log = logging.getLogger("dlt")
    saved = list(dlt_log.handlers)
    foreign = Foreign()
    try:
        dlt_log.handlers[:] = [foreign]
        dlt_patches.keep_dlt_format_on_own_handler(Foreign)
        dlt_logger._create_logger("dlt", "INFO", "{asctime}|{message}", "test", {})
        first, second = dlt_log.handlers
        assert isinstance(first, dlt_patches.DltOwnHandler)
        assert type(first.formatter).__module__.startswith("dlt.")
        assert second is foreign and foreign.formatter is None
        # a dlt format already on the foreign handler is taken off again
        dlt_log.handlers[:] = [foreign]
        dlt_logger._create_logger("dlt", "INFO", "{asctime}|{message}", "test", {})
        dlt_patches.keep_dlt_format_on_own_handler(Foreign)
        assert isinstance(dlt_log.handlers[0], dlt_patches.DltOwnHandler)
        assert foreign.formatter is None
    finally:
        dlt_log.handlers[:] = saved


def test_atomic_swaps_are_public_factory_options_not_patches() -> None:
    """`replace_strategy` and `supports_transactions` reach dlt through the factory's kwargs."""
    destination = atomic_destination()
    assert destination.capabilities().supports_transactions is True
    config = destination.configuration(destination.spec(), accept_partial=True)
    assert config.replace_strategy == REPLACE_STRATEGY
    direct = atomic_destination(replace_strategy="truncate-and-insert")
    config = direct.configuration(direct.spec(), accept_partial=True)
    assert config.replace_strategy == "truncate-and-insert"

"""What every pipeline run shares: the destination's configuration resolves once per run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest

from environments import load_environment
from local_runtime.warehouse import warehouse_path
from pipelines.runner import RunContext, make_pipeline
from pipelines.spec import PipelineSpec


def _count_partial_resolutions(destination: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts dlt's `capabilities()` resolutions (the partial ones; clients resolve fully)."""
    calls = [0]
    configuration = destination.configuration

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += bool(kwargs.get("accept_partial"))
        return configuration(*args, **kwargs)

    monkeypatch.setattr(destination, "configuration", counted)
    return calls


def _load(pipeline: dlt.Pipeline, data: object) -> None:
    """The runner's load step (extract, normalize, load under the warehouse lock), unfenced."""
    spec = PipelineSpec(pipeline.pipeline_name, pipeline.dataset_name, extract_load=print)
    RunContext(load_environment(), spec, pipeline).load(data)


def test_a_run_resolves_destination_capabilities_once_per_naming(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dlt 1.31 resolves the destination's whole configuration on each capabilities() lookup
    # without a config: 9 times for this tiny run, at most 2 (one per naming) with the cache.
    destination = load_environment().warehouse()
    calls = _count_partial_resolutions(destination, monkeypatch)
    pipeline = make_pipeline("runner_test", destination, "runner_test")
    rows = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    _load(pipeline, dlt.resource(rows, name="items"))
    assert calls[0] <= 2, f"capabilities resolved the configuration {calls[0]} times in one run"

    # the cached answer is still the destination's: our atomic-swap settings hold
    assert pipeline.destination.capabilities().supports_transactions is True
    with duckdb.connect(str(warehouse_path("DLT")), read_only=True) as warehouse:
        (count,) = warehouse.execute("SELECT count(*) FROM runner_test.items").fetchone()
    assert count == 2


def test_parquet_files_have_no_dictionary_pages_and_keep_dlts_options(data_dir: Path) -> None:
    """Dictionary encoding off (the products full load's largest CPU cost), dlt's rest intact."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # snappy and version 2.4 are dlt's defaults; the local warehouse turns compression off
    destination = dlt.destinations.duckdb(str(data_dir / "files.duckdb"))
    pipeline = make_pipeline("parquet_test", destination, "parquet_test")
    names = pa.array(["same"] * 5000 + ["other"] * 5000)  # would be dictionary-encoded
    table = pa.table({"id": pa.array(range(10_000), pa.int64()), "name": names})
    pipeline.extract(dlt.resource(table, name="items"))
    (load_id,) = pipeline.list_extracted_load_packages()
    package = pipeline.get_load_package_info(load_id)
    files = [
        job.file_path for job in package.jobs["new_jobs"] if job.job_file_info.table_name == "items"
    ]
    assert files and all(f.endswith(".parquet") for f in files)
    metadata = pq.ParquetFile(files[0]).metadata
    for index in range(metadata.num_columns):
        column = metadata.row_group(0).column(index)
        assert column.compression == "SNAPPY"
        assert not {"PLAIN_DICTIONARY", "RLE_DICTIONARY"} & set(column.encodings), column
    pipeline.normalize()
    pipeline.load()
    with duckdb.connect(str(data_dir / "files.duckdb")) as warehouse:
        loaded = warehouse.sql("select count(*), count(distinct name) from parquet_test.items")
        assert loaded.fetchall() == [(10_000, 2)]


def test_an_exported_dlt_local_dir_moves_the_warehouse_readers_with_the_writers(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify and `data-pipelines query` read the file the pipelines write, wherever it is."""
    elsewhere = data_dir.parent / "elsewhere"
    monkeypatch.setenv("DLT_LOCAL_DIR", str(elsewhere))
    pipeline = make_pipeline("moved_test", load_environment().warehouse(), "moved_test")
    _load(pipeline, dlt.resource([{"id": 1}], name="items"))
    assert warehouse_path("DLT") == elsewhere / "dlt.duckdb"
    with duckdb.connect(str(warehouse_path("DLT")), read_only=True) as warehouse:
        assert warehouse.sql("select count(*) from moved_test.items").fetchall() == [(1,)]

"""What every pipeline run shares: the destination's configuration resolves once per run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dlt
import duckdb
import pytest

from environments import load_environment
from local_stack.warehouse import warehouse_path
from pipelines.runner import extract_normalize_load, make_pipeline


def _count_partial_resolutions(destination: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts dlt's `capabilities()` resolutions (the partial ones; clients resolve fully)."""
    calls = [0]
    configuration = destination.configuration

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += bool(kwargs.get("accept_partial"))
        return configuration(*args, **kwargs)

    monkeypatch.setattr(destination, "configuration", counted)
    return calls


def test_a_run_resolves_destination_capabilities_once_per_naming(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dlt 1.31 resolves the destination's whole configuration on each capabilities() lookup
    # without a config: 9 times for this tiny run, at most 2 (one per naming) with the cache.
    destination = load_environment().warehouse()
    calls = _count_partial_resolutions(destination, monkeypatch)
    pipeline = make_pipeline("runner_test", destination, "runner_test")
    rows = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    extract_normalize_load(pipeline, dlt.resource(rows, name="items"))
    assert calls[0] <= 2, f"capabilities resolved the configuration {calls[0]} times in one run"

    # the cached answer is still the destination's: our atomic-swap settings hold
    assert pipeline.destination.capabilities().supports_transactions is True
    with duckdb.connect(str(warehouse_path("DLT")), read_only=True) as warehouse:
        (count,) = warehouse.sql("SELECT count(*) FROM runner_test.items").fetchone()
    assert count == 2

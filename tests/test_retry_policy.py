"""The documented retry ladder is what Prefect will actually wait."""

from __future__ import annotations

import random
import statistics

import pytest
from prefect.utilities.math import clamped_poisson_interval

from flows import retry_policy


def test_production_ladder_is_10_100_1000_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(retry_policy.DELAY_SCALE_VAR, raising=False)
    assert retry_policy.retry_delays() == [10.0, 100.0, 1000.0]
    assert retry_policy.RETRIES == 3


def test_tests_can_shrink_delays_without_changing_the_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(retry_policy.DELAY_SCALE_VAR, "0.01")
    assert retry_policy.retry_delays() == pytest.approx([0.1, 1.0, 10.0])


@pytest.mark.parametrize("nominal", [10.0, 100.0, 1000.0])
def test_real_delays_with_prefects_jitter(nominal: float) -> None:
    """Pin the delays Prefect's jitter really produces for each rung (seeded, 5,000 draws)."""
    random.seed(1234)
    draws = [
        clamped_poisson_interval(nominal, clamping_factor=retry_policy.RETRY_JITTER_FACTOR)
        for _ in range(5000)
    ]
    # upper bound is nominal x 1.5; the lower bound Prefect picks for factor 0.5 is ~0.63x
    assert max(draws) <= nominal * 1.5
    assert min(draws) >= nominal * 0.62
    assert statistics.mean(draws) == pytest.approx(nominal, rel=0.05)
    # and it is really spread, not a constant
    assert statistics.pstdev(draws) > nominal * 0.1


def test_permanent_errors_are_not_retried() -> None:
    from prefect.states import Failed

    from pipelines.errors import PermanentSourceError, TransientSourceError

    def failed_with(exc: BaseException) -> Failed:
        return Failed(data=exc)

    try:
        try:
            raise PermanentSourceError("bad key")
        except PermanentSourceError as inner:
            raise RuntimeError("dlt step failed") from inner
    except RuntimeError as wrapped:
        assert not retry_policy.should_retry(None, None, failed_with(wrapped))  # type: ignore[arg-type]
    assert retry_policy.should_retry(None, None, failed_with(TransientSourceError("503")))  # type: ignore[arg-type]
    assert retry_policy.should_retry(None, None, failed_with(TimeoutError()))  # type: ignore[arg-type]

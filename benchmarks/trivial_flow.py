"""A flow that does nothing: Prefect's own trigger -> Completed floor for bench_latency."""

from prefect import flow


@flow(name="bench-trivial")
def trivial_flow() -> str:
    return "ok"


@flow(name="bench-sleepy")
def sleepy_flow(seconds: float = 5.0) -> str:
    """Holds its deployment's one slot for `seconds` (bench_enqueue)."""
    import time

    time.sleep(seconds)
    return "ok"

"""A flow that does nothing: Prefect's own trigger -> Completed floor for bench_latency."""

from prefect import flow


@flow(name="bench-trivial")
def trivial_flow() -> str:
    return "ok"

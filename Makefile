.PHONY: demo test down bench rehearse

demo:  ## set up and run the main job on the local default
	scripts/demo.sh

test:  ## set up and run the test suite
	scripts/test.sh

rehearse:  ## before your first production deploy: production, unchanged, on local stand-ins
	scripts/rehearse.sh

down:  ## stop the local stack (data stays in .data)
	.venv/bin/data-pipelines down

bench:  ## benchmarks: print figures, not pass/fail (docs/benchmarks.md)
	scripts/setup.sh
	uv sync --frozen --quiet --compile-bytecode --group bench
	.venv/bin/python -m benchmarks.bench_exchange_rates --days 30
	.venv/bin/python -m benchmarks.bench_exchange_rates --days 365
	.venv/bin/python -m benchmarks.bench_products --rows 1000000 --rss-rows 10000000
	.venv/bin/python -m benchmarks.bench_latency
	.venv/bin/python -m benchmarks.bench_run_guard

.PHONY: demo test test-fast down bench bench-smoke bench-compare rehearse upgrade-check

demo:  ## set up and run the main job on the local default
	scripts/demo.sh

test:  ## set up and run the test suite (everything; what CI runs)
	scripts/test.sh

test-fast:  ## the inner loop: every test that needs no server (PostgreSQL, Prefect, moto, stand-in)
	scripts/test_fast.sh

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

bench-smoke:  ## every benchmark once at a tiny size (exits 0, prints its figures): ~3 min; slow: + ~90 s
	scripts/setup.sh
	uv sync --frozen --quiet --compile-bytecode --group bench
	.venv/bin/python -m pytest tests/test_benchmarks.py $(BENCH_SMOKE_FLAGS)

# An older commit's products pipeline beside this tree's, same rows, same minutes:
# make bench-compare BASE=0fc3bfa [ROWS=1000000] (docs/benchmarks.md, "Comparing with an older commit")
BASE ?= 0fc3bfa
ROWS ?= 1000000
bench-compare:  ## products: BASE's pipeline beside this tree's, one run, side by side
	scripts/setup.sh
	scripts/bench_commit.sh $(BASE) -- --rows $(ROWS) --rss-rows 0 --ours-only

# The fast tests `make upgrade-check` runs on the newest versions (and on the locked ones, to tell
# what the upgrade broke from what already failed): no Prefect server, a few minutes on 2 cores.
UPGRADE_CHECK_TESTS = tests/test_snowflake_sql.py tests/test_snowflake_standin.py \
	tests/test_exchange_rates.py tests/test_products.py tests/test_products_types.py \
	tests/test_oxr_data_contract.py tests/test_oxr_client.py tests/test_architecture.py \
	tests/test_platform_files.py tests/test_environment.py tests/test_retry_policy.py \
	tests/test_runner.py tests/test_dlt_patches.py tests/test_runbooks.py

upgrade-check:  ## newest allowed versions in a scratch copy + venv: packages moved, fast tests (uv.lock untouched)
	scripts/setup.sh
	.venv/bin/python scripts/upgrade_check.py $(UPGRADE_CHECK_FLAGS) $(UPGRADE_CHECK_TESTS)

#!/usr/bin/env bash
# Set up, lint, and run the whole test suite against real parts (PostgreSQL, moto, Prefect).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "lint: ruff check + format --check"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Three workers on two cores: the end-to-end tests mostly wait (leases, servers, flow runs), so
# a third worker overlaps those waits. `--dist loadgroup`: tests/conftest.py keeps each module's
# tests on one worker (its module fixtures start once) except the long modules it splits by test
# function, and puts the longest first; `--no-loadscope-reorder` keeps that order (xdist would
# otherwise sort by test count, and the longest modules, few tests each, ran last).
# TEST_WORKERS overrides the number of workers.
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-3}" --dist loadgroup --no-loadscope-reorder "$@"

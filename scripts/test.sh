#!/usr/bin/env bash
# Set up, lint, and run the whole test suite against real parts (PostgreSQL, moto, Prefect).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "lint: ruff check + format --check"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Three workers on two cores: the end-to-end tests mostly wait (leases, servers, flow runs), so
# a third worker overlaps those waits. `--dist loadscope` with tests/conftest.py's scheduler:
# each module's tests stay on one worker (its module fixtures start once) except the long
# modules it splits by test function, and the longest groups go first; `--no-loadscope-reorder`
# keeps that order (xdist would otherwise sort by test count, and the longest modules, a few
# tests each, ran last). TEST_WORKERS overrides the number of workers.
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-3}" --dist loadscope --no-loadscope-reorder "$@"

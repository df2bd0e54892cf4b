#!/usr/bin/env bash
# Set up, lint, and run the whole test suite against real parts (PostgreSQL, moto, Prefect).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "lint: ruff check + format --check"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Two workers, one test file each at a time (`--dist loadfile`: a file's module fixtures, e.g.
# the rehearsal's stand-ins, stay on one worker); most end-to-end tests wait on leases and
# servers, so two overlap well on two cores.
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"

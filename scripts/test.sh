#!/usr/bin/env bash
# Set up, lint, and run the whole test suite against real parts (PostgreSQL, moto, Prefect).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "lint: ruff check + format --check"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"

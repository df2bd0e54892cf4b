#!/usr/bin/env bash
# The inner loop: every test that needs no server (no PostgreSQL, Prefect server, moto or
# Snowflake stand-in), on two workers; under 2 minutes on a quiet 2-core machine. `make test`
# (and CI) still runs everything.
#
# Tests needing a server carry the `server` marker (tests/conftest.py sets it for every test
# using a server fixture; modules starting one of their own declare it). With
# DATA_PIPELINES_TESTS_NO_SERVERS=1 every server starter refuses and names the test, so an
# unmarked test that starts one fails here instead of slowing the loop down.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export DATA_PIPELINES_TESTS_NO_SERVERS=1
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" -m "not server" "$@"

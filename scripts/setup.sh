#!/usr/bin/env bash
# Idempotent setup on a fresh machine of this kind (Debian, Python 3.11, root, registries only):
# uv, the locked virtual environment in .venv, and PostgreSQL server binaries for the local stack.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
export UV_PYTHON_DOWNLOADS=never   # use a Python the machine has (3.11-3.13), never fetch one

if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
  echo "setup: installing uv $UV_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "setup: installing PostgreSQL server binaries (apt)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "setup: PostgreSQL binaries missing; install the 'postgresql' package (needs root)" >&2
    exit 1
  fi
fi

echo "setup: syncing .venv from uv.lock"
# Compile bytecode at install: machines of this kind set PYTHONDONTWRITEBYTECODE, so otherwise
# every process (each flow run, each test worker) recompiles dlt, prefect and pyarrow (~2-3 s).
uv sync --frozen --quiet --compile-bytecode

echo "setup: syncing .venv-standin (the rehearsal's Snowflake stand-in) from its own lock"
# fakesnow and the versions it pins live in their own environment, never in .venv: production's
# snowflake-connector-python, sqlglot and duckdb follow their own releases (docs/dependencies.md).
UV_PROJECT_ENVIRONMENT="$PWD/.venv-standin" \
  uv sync --frozen --quiet --compile-bytecode --project rehearsal/snowflake_standin_env

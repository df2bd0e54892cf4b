#!/usr/bin/env bash
# Before the first production deploy: the production path on stand-ins on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/data-pipelines rehearse "$@"

#!/usr/bin/env bash
# The main job on the embedded default: set up, start the local stack, run the five deployments.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/data-pipelines demo "$@"

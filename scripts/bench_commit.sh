#!/usr/bin/env bash
# Bench an older commit's products pipeline beside this tree's, in one run:
#
#   scripts/bench_commit.sh <commit> [-- <bench_products arguments>]
#   e.g. scripts/bench_commit.sh 0fc3bfa -- --rows 1000000 --rss-rows 0 --ours-only
#
# 1. checks <commit> out into a temporary git worktree (detached; removed at the end);
# 2. builds that tree's own venv from its uv.lock (`uv sync --frozen`, plus the `bench` group
#    when its pyproject.toml has one), so its pipeline runs on its own locked versions;
# 3. runs THIS tree's `benchmarks.bench_products` with `--base-python/--base-tree`: every one
#    of our steps (first full load, full refresh, 1% incremental, no new rows) runs for the old
#    tree then for this one, back to back, on the same PostgreSQL rows (each into a warehouse
#    of its own), and a side-by-side table closes the run.
# The old tree's children run this tree's driver (bench_products `_child` and
# benchmarks/run_pipeline.py, which also reads the older run API) over the old tree's code.
# BENCH_COMMIT_KEEP=1 keeps the worktree and its venv (printed) for a rerun with --base-*.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
COMMIT="$1"
shift
if [ "${1:-}" = "--" ]; then shift; fi

SHA="$(git rev-parse --verify --quiet "$COMMIT^{commit}")" || {
  echo "bench_commit: '$COMMIT' is not a commit of this repository" >&2
  exit 2
}
LABEL="$(git rev-parse --short "$SHA")"
export UV_PYTHON_DOWNLOADS=never

WORK="$(mktemp -d /tmp/bench-commit-XXXXXX)"
TREE="$WORK/tree"
cleanup() {
  if [ "${BENCH_COMMIT_KEEP:-}" = 1 ]; then
    echo "bench_commit: kept $TREE (python: $TREE/.venv/bin/python)"
    return
  fi
  git -C "$ROOT" worktree remove --force "$TREE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  git -C "$ROOT" worktree prune
}
trap cleanup EXIT

git worktree add --quiet --detach "$TREE" "$SHA"
echo "bench_commit: $LABEL checked out in $TREE; building its venv from its uv.lock"
SYNC_GROUPS=()
if grep -q '^bench *=' "$TREE/pyproject.toml"; then SYNC_GROUPS=(--group bench); fi
(cd "$TREE" && env -u VIRTUAL_ENV UV_PROJECT_ENVIRONMENT="$TREE/.venv" \
  uv sync --frozen --quiet --compile-bytecode "${SYNC_GROUPS[@]}")

# this tree's venv as `make bench` builds it
if [ ! -x .venv/bin/python ]; then scripts/setup.sh; fi
uv sync --frozen --quiet --compile-bytecode --group bench

.venv/bin/python -m benchmarks.bench_products \
  --base-python "$TREE/.venv/bin/python" --base-tree "$TREE" --base-label "$LABEL" "$@"

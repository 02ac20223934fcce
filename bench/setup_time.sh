#!/usr/bin/env bash
# How long the README's first command takes for a newcomer: a fresh `git clone` of this repository
# into a temporary directory, a cold pip cache (a fresh PIP_CACHE_DIR), then
#   ./scripts/setup && venv/bin/bankflow-infra plan staging
# timed as a whole and per part; then the same command again on the warm virtualenv (the set-up's
# stamp should make it a no-op). Target (issue 14): the cold run within 90 s.
# Packages come from whatever index pip is configured to use here: say which when quoting figures.
# Usage: bench/setup_time.sh [REPO] (default: this checkout's committed HEAD)
set -euo pipefail

repo=${1:-$(cd "$(dirname "$0")/.." && pwd)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PIP_CACHE_DIR="$work/pip-cache"

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

git clone --quiet --no-local "$repo" "$work/clone"
cd "$work/clone"

run_first_command() {
  local label=$1 t0 t1 t2
  t0=$(now)
  ./scripts/setup >"$work/$label-setup.out"
  t1=$(now)
  venv/bin/bankflow-infra plan staging --out "$work/$label-build" >"$work/$label-plan.out"
  t2=$(now)
  printf '%-34s setup %6s s   plan %5s s   total %6s s\n' "$label" \
    "$(seconds "$t0" "$t1")" "$(seconds "$t1" "$t2")" "$(seconds "$t0" "$t2")"
}

echo "setup_time: $(git log -1 --format='%h %s' | cut -c1-70)"
echo "setup_time: pip index: $(python3 -m pip config list 2>/dev/null | grep -E 'index-url' | tr '\n' ' ' || true)(plus PyPI unless index-url overrides it)"
run_first_command "fresh clone, cold pip cache"
sed 's/^/    /' "$work/fresh clone, cold pip cache-setup.out"
run_first_command "second run (warm venv)"
sed 's/^/    /' "$work/second run (warm venv)-setup.out"

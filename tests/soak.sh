#!/usr/bin/env bash
# The soak that says the suite does not depend on timing: the full suite ROUNDS times in a row (default 5) while a
# second full suite runs alongside each round, on this machine: 2 x ROUNDS runs, and any failure fails the soak.
# Usage, from anywhere:  tests/soak.sh [ROUNDS [PYTEST ARGS...]]   (logs in $SOAK_LOGS, default /tmp/chatops-soak)
# The soak of record is the whole suite: `tests/soak.sh 5`; pytest arguments narrow it (to try the script itself).
# Each run has its own pytest basetemp; both share nothing else (each fixture starts its own servers on free ports).
set -uo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
shift || true
logs="${SOAK_LOGS:-/tmp/chatops-soak}"
python="${PYTHON:-.venv/bin/python}"
mkdir -p "$logs"
export PATH="$PWD/.venv/bin:$PATH"
failed=0
for round in $(seq "$rounds"); do
  pids=()
  for copy in a b; do
    "$python" -m pytest -q -p no:cacheprovider --basetemp="$logs/tmp-$round$copy" "$@" >"$logs/round-$round$copy.log" 2>&1 &
    pids+=($!)
  done
  for index in 0 1; do
    copy=$([ "$index" = 0 ] && echo a || echo b)
    if wait "${pids[$index]}"; then
      echo "round $round$copy: passed ($(tail -1 "$logs/round-$round$copy.log"))"
    else
      failed=$((failed + 1))
      echo "round $round$copy: FAILED (see $logs/round-$round$copy.log)"
      grep -E "^(FAILED|ERROR) " "$logs/round-$round$copy.log" | sed 's/^/    /'
    fi
  done
done
echo "soak: $((2 * rounds - failed)) of $((2 * rounds)) runs passed"
[ "$failed" = 0 ]

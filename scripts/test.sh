#!/usr/bin/env bash
# The project's one test command (README): installs what the suites need, runs every Deno test
# with the `test` permission set, writes JUnit to .cache/junit.xml and ends with the summary line.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
DENO=$(command -v deno || true)
[ -n "$DENO" ] || DENO="npx -y deno@2.9.6"

if ! bash scripts/ensure_deps.sh; then
  echo "0 passed, 1 failed"
  exit 1
fi

rm -f .cache/junit.xml
$DENO fmt --check && $DENO lint && $DENO check main.ts src/ tests/ bench/
static=$?
$DENO test -P=test --junit-path=.cache/junit.xml "$@"
tests=$?

read -r passed failed < <(bash scripts/junit_summary.sh .cache/junit.xml)
if [ "$static" -ne 0 ]; then
  echo "fmt/lint/check failed" >&2
  failed=$((failed + 1))
fi
echo "${passed} passed, ${failed} failed"
[ "$tests" -eq 0 ] && [ "$static" -eq 0 ] && [ "$failed" -eq 0 ]

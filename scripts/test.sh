#!/usr/bin/env bash
# Builds the solution and runs every test. Prints a final line "N passed, N failed"; exits non-zero on any failure.
#
# One run, no retry: a test-host crash is a failure (`--blame` names the test that was running when it died).
# With CDIFF_TEST_GC_STRESS=1 a thread runs full GCs and finalizers in a tight loop throughout (Runtime/GcStress).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log="$(mktemp)"
blame="$(mktemp -d)"
trap 'rm -rf "$log" "$blame"' EXIT

run_tests() {
  dotnet test "$root/ContinualDiffusion.sln" -c Release -nologo --blame --results-directory "$blame" "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
}

run_tests "$@"
if [ "$status" -ne 0 ] && grep -q "Test host process crashed" "$log"; then
  echo "test host crashed; the test running then:"
  grep -rh "" "$blame" --include='Sequence_*.xml' 2>/dev/null | grep -o 'Name="[^"]*"' | tail -n 1
fi
# dotnet test summary: "Passed!  - Failed:     0, Passed:    20, Skipped:     0, Total:    20, ..."
summary=$(grep -E '(Passed|Failed)! +- Failed: +[0-9]+, Passed: +[0-9]+' "$log" | tail -n 1)
if [ -z "$summary" ]; then
  echo "0 passed, 1 failed"   # the build or the test host failed before any test ran
  exit 1
fi
failed=$(sed -E 's/.*Failed: +([0-9]+),.*/\1/' <<<"$summary")
passed=$(sed -E 's/.*Passed: +([0-9]+),.*/\1/' <<<"$summary")
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "dotnet test exited with $status although no test failed (test host crashed or run aborted): counted as 1 failure"
  failed=1
fi
echo "$passed passed, $failed failed"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then exit 1; fi

#!/usr/bin/env bash
# Consecutive full test-suite runs, for the reliability figures (README "Reliability"). Resumable: every finished
# run is one line of the log, so running it again continues until the log holds N runs.
#   scripts/soak.sh N LOG [--gc-stress]
# A run line: "<utc time> <plain|gc-stress> exit=<code> segfaults=<new kernel-log lines> seconds=<s> <last line>".
# The kernel log is read with dmesg (or journalctl -k) when allowed; "segfaults=?" when it is not readable.
# Prints "<runs> runs, <failed> failed, <segfaults> segfaults" at the end; exits 1 if any run failed.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n="${1:?usage: scripts/soak.sh N LOG [--gc-stress]}"; log="${2:?usage: scripts/soak.sh N LOG [--gc-stress]}"
mode=plain; [ "${3:-}" = "--gc-stress" ] && mode=gc-stress
touch "$log"
segfaults() { { dmesg 2>/dev/null || sudo -n dmesg 2>/dev/null || journalctl -k -q 2>/dev/null; } | grep -c "segfault" || true; }
kernel_readable() { dmesg >/dev/null 2>&1 || sudo -n dmesg >/dev/null 2>&1; }
while [ "$(grep -c " $mode exit=" "$log")" -lt "$n" ]; do
  before=$(segfaults); start=$(date +%s)
  if [ "$mode" = gc-stress ]; then out=$(CDIFF_TEST_GC_STRESS=1 bash "$root/scripts/test.sh" 2>&1); code=$?
  else out=$(bash "$root/scripts/test.sh" 2>&1); code=$?; fi
  after=$(segfaults); new="?"; kernel_readable && new=$((after - before))
  echo "$(date -u +%FT%TZ) $mode exit=$code segfaults=$new seconds=$(( $(date +%s) - start )) $(tail -n 1 <<<"$out")" >>"$log"
  [ "$code" -ne 0 ] && { printf '%s\n' "$out" > "$log.failure-$(grep -c " $mode exit=" "$log")"; }
  tail -n 1 "$log"
done
runs=$(grep -c " $mode exit=" "$log"); failed=$(grep " $mode exit=" "$log" | grep -vc "exit=0")
segs=$(grep " $mode exit=" "$log" | sed -nE 's/.*segfaults=([0-9]+).*/\1/p' | paste -sd+ | bc 2>/dev/null || echo "?")
echo "$runs runs, $failed failed, ${segs:-0} segfaults"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ for a time each (needs a nightly toolchain and
# cargo-fuzz: `cargo install cargo-fuzz --locked`).
#
#   scripts/fuzz.sh TARGET SECONDS     # one target, e.g. scripts/fuzz.sh client_frame 60
#   scripts/fuzz.sh all SECONDS        # every target in turn
#   scripts/fuzz.sh list               # the targets
#
# Each run starts from the committed seeds in fuzz/corpus/TARGET (never written to)
# and keeps what it finds in fuzz/target/corpus/TARGET for the next run. A crash is
# written to fuzz/artifacts/TARGET/ and ends the script with status 1; reproduce it
# with `cargo +nightly fuzz run TARGET FILE`, then keep it as a test in `cargo test`.
# Prints one line per target: its runs and seconds, or the crash.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: scripts/fuzz.sh TARGET|all SECONDS, or scripts/fuzz.sh list" >&2
  exit 2
}

targets() {
  sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^hub-fuzz$'
}

[ $# -ge 1 ] || usage
if [ "$1" = list ]; then
  targets
  exit 0
fi
[ $# -eq 2 ] || usage
case "$2" in
  '' | *[!0-9]*) echo "scripts/fuzz.sh: SECONDS must be a whole number, got '$2'" >&2; exit 2 ;;
esac
seconds=$2
if [ "$1" = all ]; then
  chosen=$(targets)
elif targets | grep -qx -- "$1"; then
  chosen=$1
else
  echo "scripts/fuzz.sh: no target '$1'; the targets are: $(targets | tr '\n' ' ')" >&2
  exit 2
fi

# Release build with debug assertions, no sanitizer: the code under test has no unsafe
# (and the build is several times faster).
if [ "$1" = all ]; then
  cargo +nightly fuzz build --sanitizer none --fuzz-dir fuzz
else
  cargo +nightly fuzz build --sanitizer none --fuzz-dir fuzz "$1"
fi

status=0
for t in $chosen; do
  work="fuzz/target/corpus/$t"
  mkdir -p "$work" "fuzz/artifacts/$t"
  log="fuzz/target/$t.log"
  if cargo +nightly fuzz run --sanitizer none --fuzz-dir fuzz "$t" "$work" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz: $t: ${runs:-?} runs in ${seconds} s, no crash"
  else
    status=1
    echo "fuzz: $t: CRASH, see $log and fuzz/artifacts/$t/:"
    grep -E '^(==[0-9]+==|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$log" | head -8 | sed 's/^/  /'
  fi
done
exit $status

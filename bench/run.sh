#!/usr/bin/env bash
# Benchmark hub against mosquitto, redis and nats-server on this machine, and
# write BENCHMARKS.md. Run from anywhere, as root (it installs packages and
# raises the open-file limit):
#
#   bench/run.sh              # everything, a few minutes
#   bench/run.sh --quick      # small sizes, one repetition: a smoke test
#   bench/run.sh --only w1,w3 --systems hub,redis
#   bench/run.sh --report     # only re-render BENCHMARKS.md from bench/results/
#
# Every broker runs on 127.0.0.1 with a free port and is stopped at the end,
# also on failure or ^C. Not part of `cargo test` or CI.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$root"

if [[ "${1:-}" == "--report" ]]; then
    shift
    exec python3 "$here/report.py" "$@"
fi

# 1. The anchors and tools, from Debian's packages (idempotent).
need=()
for pair in mosquitto:mosquitto mosquitto_sub:mosquitto-clients redis-server:redis-server \
            redis-cli:redis-tools nats-server:nats-server hyperfine:hyperfine; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if ((${#need[@]})); then
    echo "bench: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The packages' own services, if the install started them, are left alone: every
# broker here gets its own port.
python3 -c 'import websockets' 2>/dev/null || pip install -q websockets

# 2. 10,000 idle connections need more than the usual 1024 descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# 3. The hub binaries, built here in release mode.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
mkdir -p "$CARGO_TARGET_DIR"
skip=()
if ! cargo build --release --bins --example jetstream-pipe --quiet 2>"$CARGO_TARGET_DIR/bench-build.log"; then
    echo "bench: cargo build --release failed (see $CARGO_TARGET_DIR/bench-build.log);" \
         "hub is left out" >&2
    skip=(--skip hub)
fi

# 4. Measure, then write BENCHMARKS.md from the results file.
# The harness stops every broker it started when it ends, fails or is signalled
# (and the brokers die with it even on SIGKILL: PR_SET_PDEATHSIG); the trap passes
# a TERM/INT sent to this script on to it.
out=$(mktemp)
python3 "$here/harness.py" "${skip[@]}" "$@" >"$out" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; rm -f "$out"; exit 143' INT TERM
wait "$pid"
trap - INT TERM
results=$(cat "$out")
rm -f "$out"
case " $* " in
    *" --quick "*) md="$here/results/quick/BENCHMARKS.md" ;;  # a smoke test leaves BENCHMARKS.md alone
    *) md="$root/BENCHMARKS.md" ;;
esac
python3 "$here/report.py" --latest "$results" --out "$md"
echo "bench: wrote $md from $results" >&2

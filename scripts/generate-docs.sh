#!/bin/sh
# Writes man/ and completions/ from the clap definitions, through each command's
# hidden `--generate` flag. Run it after changing a flag or a help text, and commit
# the result in the same commit: tests/generated.rs fails until they match.
#
#   scripts/generate-docs.sh            # builds the debug binaries first
#   BIN_DIR=target/release scripts/generate-docs.sh
set -eu
cd "$(dirname "$0")/.."
if [ -z "${BIN_DIR:-}" ]; then
    cargo build --quiet --bins
    BIN_DIR="${CARGO_TARGET_DIR:-target}/debug"
fi
mkdir -p man completions
for bin in hub-serve hub-emit hub-sub hub-tail; do
    exe="$BIN_DIR/$bin"
    # env -i: no HUB_URL or HUB_TOKEN of this shell can reach the output.
    env -i "$exe" --generate man >"man/$bin.1"
    env -i "$exe" --generate complete-bash >"completions/$bin.bash"
    env -i "$exe" --generate complete-zsh >"completions/_$bin"
    env -i "$exe" --generate complete-fish >"completions/$bin.fish"
done
echo "wrote man/ and completions/ from $BIN_DIR"

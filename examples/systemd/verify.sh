#!/bin/sh
# Check the example units with `systemd-analyze verify` before the binaries are
# installed: the units are copied with /usr/local/bin replaced by a scratch
# directory holding stand-ins, so everything except the binary itself is checked.
# Needs systemd-analyze (Debian: apt-get install systemd).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/units"
for b in hub-serve hub-tail; do
    if command -v "$b" >/dev/null 2>&1; then ln -s "$(command -v "$b")" "$tmp/bin/$b"
    else ln -s /bin/true "$tmp/bin/$b"; fi
done
for u in "$here"/*.service; do
    sed "s#/usr/local/bin/#$tmp/bin/#g" "$u" >"$tmp/units/$(basename "$u")"
done
cd "$tmp/units"
# The template is checked through one path instance and one named instance.
# verify exits 0 on unknown keys and bad values, so any message counts as a failure.
out=$(systemd-analyze verify --man=no hub-serve.service \
    hub-tail@var-log-nginx-access.log.service hub-tail@nginx.service 2>&1) || true
if [ -n "$out" ]; then
    printf '%s\n' "$out" >&2
    exit 1
fi
for u in hub-serve.service hub-tail@.service; do
    printf '%s: ' "$u"
    systemd-analyze security --offline=yes "$u" 2>&1 | grep 'Overall exposure' | sed 's/.*: //'
done
echo "units OK"

#!/usr/bin/env bash
# Checks deploy/patchline.service with systemd-analyze without installing
# anything: a scratch root holds the unit, the system's own units and the
# binary at the path ExecStart names. `verify` must print nothing (it exits
# 0 on unknown keys, so any output fails here); `security` prints the
# exposure score.
#
#   bash deploy/verify-unit.sh [path/to/patchline]   (default target/release, then target/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v systemd-analyze >/dev/null || { echo "systemd-analyze is missing (apt-get install systemd)"; exit 1; }
bin="${1:-}"
if [ -z "$bin" ]; then
    for b in "${CARGO_TARGET_DIR:-target}/release/patchline" "${CARGO_TARGET_DIR:-target}/debug/patchline"; do
        [ -x "$b" ] && { bin=$b; break; }
    done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "build patchline first (cargo build)"; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/lib"
cp "$bin" "$root/usr/local/bin/patchline"
cp -r /usr/lib/systemd "$root/usr/lib/"
cp deploy/patchline.service "$root/etc/systemd/system/"
out=$(systemd-analyze verify --root="$root" /etc/systemd/system/patchline.service 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
    echo "$out"
    echo "systemd-analyze verify complained"
    exit 1
fi
echo "systemd-analyze verify: clean"
systemd-analyze security --offline=true --root="$root" /etc/systemd/system/patchline.service | tail -1

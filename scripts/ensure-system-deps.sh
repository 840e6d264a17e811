#!/usr/bin/env bash
# Installs missing Debian packages that the test suite runs as real parts (redis-server, chromium,
# ffmpeg...). Idempotent and quiet: a package whose binary is already on PATH is left alone.
#
# Usage: scripts/ensure-system-deps.sh PACKAGE[:BINARY] ...
#   e.g. scripts/ensure-system-deps.sh redis-server chromium ffmpeg
# BINARY defaults to the package name. Installs only when running as root with apt-get available;
# otherwise it exits 1 naming what is missing and how to install it.
set -euo pipefail

missing_pkgs=()
missing_bins=()
for spec in "$@"; do
  pkg="${spec%%:*}"
  bin="${spec#*:}"
  [ "$spec" = "$pkg" ] && bin="$pkg"
  if [[ ! "$pkg" =~ ^[a-z0-9][a-z0-9.+-]*$ ]]; then
    echo "ensure-system-deps: not a Debian package name: $pkg" >&2
    exit 2
  fi
  if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/bin/$bin" ] && [ ! -x "/usr/sbin/$bin" ]; then
    missing_pkgs+=("$pkg")
    missing_bins+=("$bin")
  fi
done

[ "${#missing_pkgs[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-system-deps: missing ${missing_bins[*]}; install the Debian package(s) first:" >&2
  echo "  sudo apt-get install -y ${missing_pkgs[*]}" >&2
  exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}"; } >"$log" 2>&1; then
  echo "ensure-system-deps: apt-get could not install ${missing_pkgs[*]}:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi

for bin in "${missing_bins[@]}"; do
  if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/bin/$bin" ] && [ ! -x "/usr/sbin/$bin" ]; then
    echo "ensure-system-deps: installed the package but '$bin' is still not found" >&2
    exit 1
  fi
done
echo "ensure-system-deps: installed ${missing_pkgs[*]}"

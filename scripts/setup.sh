#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine with rustup and Node: the wasm target, the
# wasm-bindgen CLI pinned to Cargo.lock, npm packages, Debian's Chromium (for browser tests) and the
# demo data set from the PyPI scanpy wheel. Everything is skipped when already present.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

rustup target list --installed | grep -q '^wasm32-unknown-unknown$' || rustup target add wasm32-unknown-unknown
# rustfmt and clippy: scripts/test.sh checks formatting and lints first.
for component in rustfmt clippy; do
  rustup component list --installed | grep -q "^$component" || rustup component add "$component"
done

# The CLI must match the wasm-bindgen crate exactly (pinned with `=` in Cargo.toml).
wbv=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
if ! wasm-bindgen --version 2>/dev/null | grep -q " $wbv\$"; then
  echo "setup: installing wasm-bindgen-cli $wbv"
  cargo install wasm-bindgen-cli --version "$wbv" --quiet
fi

if [ "${SCLABEL_SKIP_BROWSER:-0}" != 1 ] && ! command -v chromium >/dev/null; then
  echo "setup: installing Debian's chromium"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi

# `npm install`, not `npm ci`: the registry mirror these machines use lacks rollup's (vite's)
# binaries for other platforms, so the lock file records only the linux ones and `npm ci` refuses it
# as out of sync; `npm install` still installs exactly the locked versions and leaves the lock alone.
# Run again when the lock is newer than what was installed (a pulled change added packages).
if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund --loglevel=error
fi

# Demo data, never committed, from PyPI wheels (nothing is fetched at run time):
# - reference: scanpy's 10x_pbmc68k_reduced.h5ad (BSD-3; 700 cells, `bulk_labels`, log-normalised .raw)
# - query: desc's pbmc.h5ad (MIT; 10x PBMC 3k, 2,700 cells of raw counts, unlabelled, anndata 0.6 layout)
fetch_from_wheel() { # package==version, member in the wheel, destination
  local dest=$3 tmp
  [ -f "$dest" ] && return
  echo "setup: fetching $dest from the PyPI $1 wheel"
  tmp=$(mktemp -d)
  python3 -m pip download "$1" --no-deps -d "$tmp" -q 2>/dev/null
  mkdir -p "$(dirname "$dest")"
  python3 - "$tmp" "$2" "$dest" <<'PY'
import glob, sys, zipfile
wheel, = glob.glob(sys.argv[1] + "/*.whl")
with zipfile.ZipFile(wheel) as z, open(sys.argv[3] + ".part", "wb") as out:
    out.write(z.read(sys.argv[2]))
PY
  mv "$dest.part" "$dest"
  rm -rf "$tmp"
}
fetch_from_wheel scanpy==1.11.5 scanpy/datasets/10x_pbmc68k_reduced.h5ad www/data/pbmc68k_reduced.h5ad
fetch_from_wheel desc==2.1.1 desc/datasets/pbmc.h5ad www/data/pbmc3k_counts.h5ad

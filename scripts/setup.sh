#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine with rustup and Node: the wasm target, the
# wasm-bindgen CLI pinned to Cargo.lock, npm packages, Debian's Chromium (for browser tests) and the
# demo data set from the PyPI scanpy wheel. Everything is skipped when already present.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

rustup target list --installed | grep -q '^wasm32-unknown-unknown$' || rustup target add wasm32-unknown-unknown

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
if [ ! -d node_modules/playwright-core ]; then
  npm install --no-audit --no-fund --loglevel=error
fi

# Demo data: scanpy's 10x_pbmc68k_reduced.h5ad from the PyPI wheel (BSD-3), never committed.
demo=www/data/pbmc68k_reduced.h5ad
if [ ! -f "$demo" ]; then
  echo "setup: fetching the demo data set from the PyPI scanpy 1.11.5 wheel"
  tmp=$(mktemp -d)
  python3 -m pip download scanpy==1.11.5 --no-deps -d "$tmp" -q
  mkdir -p www/data
  python3 - "$tmp"/scanpy-1.11.5-py3-none-any.whl "$demo" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("scanpy/datasets/10x_pbmc68k_reduced.h5ad"))
PY
  rm -rf "$tmp"
fi

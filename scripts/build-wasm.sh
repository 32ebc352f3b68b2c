#!/usr/bin/env bash
# Builds the wasm package into pkg/: the core with the `web` bindings, the flex CPU backend and
# WebGPU. `--release-size` adds a size-optimising wasm-opt pass (slow; for releases only).
set -euo pipefail
cd "$(dirname "$0")/.."
features=${SCLABEL_WASM_FEATURES:-web,flex,wgpu}
cargo build --lib --profile wasm --target wasm32-unknown-unknown --no-default-features --features "$features"
rm -rf pkg && mkdir -p pkg
# The name section (function names for stack traces) is ~1 MB gzipped; keep it with
# SCLABEL_WASM_KEEP_NAMES=1 when debugging a panic.
strip=(--remove-name-section --remove-producers-section)
[ "${SCLABEL_WASM_KEEP_NAMES:-0}" = 1 ] && strip=()
wasm-bindgen --target web "${strip[@]}" --out-dir pkg --out-name sclabel_wasm target/wasm32-unknown-unknown/wasm/sclabel.wasm
if [ "${1:-}" = --release-size ]; then
  npx --yes binaryen@132.0.0 pkg/sclabel_wasm_bg.wasm -Oz -o pkg/sclabel_wasm_bg.wasm
fi
# The JS layer: our modules as written, the package version stamped in, and zarrita (the Zarr
# reader) bundled into one self-contained file, so the package has no bare imports and runs
# unbundled in a browser as well as under Vite / webpack / Node.
cp src/js/*.js src/js/*.d.ts pkg/
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
sed -i "s/__SCLABEL_VERSION__/$version/" pkg/index.js
mkdir -p pkg/vendor
# Codecs (blosc, zstd, lz4) are split into chunks loaded only when a store uses them; unzipit's
# optional worker_threads import is stubbed out for the browser.
npx --no-install esbuild zarrita=src/js/vendor/zarrita.entry.js --bundle --format=esm --platform=browser \
  --splitting --minify --alias:worker_threads=./src/js/vendor/no-worker-threads.js \
  --chunk-names='zarrita-[name]-[hash]' --outdir=pkg/vendor --log-level=warning
raw=$(stat -c %s pkg/sclabel_wasm_bg.wasm)
gz=$(gzip -9 -c pkg/sclabel_wasm_bg.wasm | wc -c)
echo "wasm: $raw bytes raw, $gz bytes gzipped"

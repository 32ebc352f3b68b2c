#!/usr/bin/env bash
# Builds the wasm package into pkg/: the core with the `web` bindings, the flex CPU backend and
# WebGPU, and a CPU-only module. `--release-size` adds a wasm-opt -Oz pass: measured on the CPU
# module (2026-12-05), 13% smaller raw but 4% larger gzipped, so the package ships without it.
set -euo pipefail
cd "$(dirname "$0")/.."
# The full module fuses GPU kernels (burn's `fusion`): half the dispatches per training step,
# measured with bench/gpu_dispatch_browser.mjs (docs/development.md).
features=${SCLABEL_WASM_FEATURES:-web,flex,wgpu,fusion}
rm -rf pkg && mkdir -p pkg
# The name section (function names for stack traces) is ~1 MB gzipped; keep it with
# SCLABEL_WASM_KEEP_NAMES=1 when debugging a panic.
strip=(--remove-name-section --remove-producers-section)
[ "${SCLABEL_WASM_KEEP_NAMES:-0}" = 1 ] && strip=()
# Two modules with the same API: the full one (CPU + WebGPU) and a CPU-only one without burn's GPU
# stack, which the engine loads for the CPU (src/js/engine.js, moduleKind). Cargo keeps both
# builds' artifacts (their feature sets differ), so each rebuild is incremental.
for module in sclabel_wasm:"$features" sclabel_wasm_cpu:web,flex; do
  name=${module%%:*}
  cargo build --lib --profile wasm --target wasm32-unknown-unknown --no-default-features --features "${module#*:}"
  wasm-bindgen --target web "${strip[@]}" --out-dir pkg --out-name "$name" target/wasm32-unknown-unknown/wasm/sclabel.wasm
  if [ "${1:-}" = --release-size ]; then
    npx --yes -p binaryen@132.0.0 wasm-opt "pkg/${name}_bg.wasm" -Oz --enable-simd --enable-bulk-memory \
      --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals -o "pkg/${name}_bg.wasm"
  fi
done
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
for name in sclabel_wasm sclabel_wasm_cpu; do
  echo "$name: $(stat -c %s "pkg/${name}_bg.wasm") bytes raw, $(gzip -9 -c "pkg/${name}_bg.wasm" | wc -c) bytes gzipped"
done

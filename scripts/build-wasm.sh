#!/usr/bin/env bash
# Builds the wasm package into pkg/: the core with the `web` bindings, the flex CPU backend and
# WebGPU. `--release-size` adds a size-optimising wasm-opt pass (slow; for releases only).
set -euo pipefail
cd "$(dirname "$0")/.."
features=${SCLABEL_WASM_FEATURES:-web,flex,wgpu}
cargo build --lib --release --target wasm32-unknown-unknown --no-default-features --features "$features"
rm -rf pkg && mkdir -p pkg
wasm-bindgen --target web --out-dir pkg --out-name sclabel_wasm target/wasm32-unknown-unknown/release/sclabel.wasm
if [ "${1:-}" = --release-size ]; then
  npx --yes binaryen@latest pkg/sclabel_wasm_bg.wasm -Oz -o pkg/sclabel_wasm_bg.wasm
fi
cp src/js/*.js src/js/*.d.ts pkg/
raw=$(stat -c %s pkg/sclabel_wasm_bg.wasm)
gz=$(gzip -9 -c pkg/sclabel_wasm_bg.wasm | wc -c)
echo "wasm: $raw bytes raw, $gz bytes gzipped"

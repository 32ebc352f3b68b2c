#!/usr/bin/env bash
# All tests: native (cargo test, CPU backend), then the wasm package in Node and in headless
# Chromium (WebGPU on SwiftShader and CPU). Does its own set-up on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== native tests (cargo test)"
cargo test --features ndarray,cli
echo "== wasm build"
bash scripts/build-wasm.sh
bash scripts/build-www.sh
echo "== Node and browser tests"
node --test --test-concurrency=1 tests/js/

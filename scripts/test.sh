#!/usr/bin/env bash
# All tests: formatting and lints, native (cargo test, CPU backend), then the wasm package in Node
# and in headless Chromium (WebGPU on SwiftShader and CPU). Does its own set-up on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== format and lints (rustfmt.toml; [lints.clippy] in Cargo.toml)"
cargo fmt --check
cargo clippy --features ndarray,cli --all-targets -- -D warnings
cargo clippy --lib --profile wasm --target wasm32-unknown-unknown --no-default-features --features web,flex,wgpu,fusion -- -D warnings
echo "== native tests (cargo test)"
cargo test --features ndarray,cli
echo "== wasm build"
bash scripts/build-wasm.sh
bash scripts/build-www.sh
echo "== Node and browser tests"
node --test --test-concurrency=1 tests/js/

#!/usr/bin/env bash
# Builds what the GPU benchmark carries to a lent device (see README.md beside this file):
#   bench/gpu/carry/sclabel.gz     release CLI with --features wgpu,fusion,cli (as the package's
#                                  GPU module), stripped and gzipped
#   bench/gpu/carry/sclabel-nofusion.gz   the same without burn's kernel fusion (one case compares)
#   bench/gpu/carry/pbmc3k.h5ad    the labelled source the cells are resampled from
#   bench/gpu/carry/genes.txt      its 2,000 highly variable genes (the model's genes)
#   .gl/*.deb                      the Vulkan / GL loaders the device lacks
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared}
out=bench/gpu/carry
mkdir -p "$out"
# gzip: the stripped binary is ~50 MB (~17 MB gzipped), the device takes 64 MiB of tree in all.
cargo build --release --features wgpu,cli --bin sclabel
strip -o /tmp/sclabel-gpu target/release/sclabel
gzip -c /tmp/sclabel-gpu >"$out/sclabel-nofusion.gz"
cargo build --release --features wgpu,fusion,cli --bin sclabel
strip -o /tmp/sclabel-gpu target/release/sclabel
gzip -c /tmp/sclabel-gpu >"$out/sclabel.gz"
cp "$SHARED/data/pbmc3k_raw_labeled.h5ad" "$out/pbmc3k.h5ad"
cp "$SHARED/reference-outputs/annotatability-pbmc3k-audit/pbmc3k_hvg2000.txt" "$out/genes.txt"
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")" .gl /tmp/amd64/partial
  grep -qx '/.gl/' "$exclude" 2>/dev/null || echo /.gl/ >>"$exclude"
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update >/dev/null
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh "$out" .gl
echo "ready: run bench/gpu/run.sh on the device with carry [.gl, bench/gpu/carry]"

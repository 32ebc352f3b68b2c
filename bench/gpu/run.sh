#!/usr/bin/env bash
# On the lent device, from the repository root (bench/gpu/README.md):
#   run with carry [".gl", "bench/gpu/carry"] and command `bash bench/gpu/run.sh`
# Unpacks the Vulkan loader, points it at NVIDIA's driver, then runs run.py under a deadline.
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$egl
export PYTHONUNBUFFERED=1
gunzip -c bench/gpu/carry/sclabel.gz >/tmp/sclabel && chmod +x /tmp/sclabel || exit 1
export SCLABEL_BIN=/tmp/sclabel
if [ -f bench/gpu/carry/sclabel-nofusion.gz ]; then
  gunzip -c bench/gpu/carry/sclabel-nofusion.gz >/tmp/sclabel-nofusion && chmod +x /tmp/sclabel-nofusion && export SCLABEL_BIN_NOFUSION=/tmp/sclabel-nofusion
fi
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
if [ "${1:-}" = --sweep ]; then
  python3 bench/gpu/sweep.py 2>&1 | tee "$OUT/sweep.log"
  exit 0
fi
python3 bench/gpu/run.py --out "$OUT" --budget "${BUDGET:-470}" "$@" 2>&1 | tee "$OUT/run.log"
# The logs of every case, for a look at what went wrong.
tar czf "$OUT/logs.tgz" -C /tmp/gpubench --exclude='*.h5ad' --exclude='*.csv' --exclude='*.safetensors' . 2>/dev/null
exit 0

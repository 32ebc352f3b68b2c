#!/usr/bin/env python3
"""GPU kernel launches of the native CLI on wgpu (Vulkan), counted by cubecl's own profiling logger
at its "minimal" level (each launch named, nothing timed, so nothing is synchronised): scNym
training on the demo pair at 2 and 4 epochs (the difference is two steady epochs: their steps and
their model-selection evaluation), and prediction of the 2,700-cell query. The native counterpart
of bench/gpu_dispatch_browser.mjs; any Vulkan driver counts launches exactly, lavapipe included.

    cargo build --release --features wgpu,fusion,cli
    # lavapipe without installing it (no root needed; the loader and the driver unpacked in /tmp):
    mkdir -p /tmp/lvp && cd /tmp/lvp && apt-get download mesa-vulkan-drivers libvulkan1 &&
      for f in *.deb; do dpkg -x $f root; done
    VK_ICD_FILENAMES=<a json naming root/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so> \\
      LD_LIBRARY_PATH=/tmp/lvp/root/usr/lib/x86_64-linux-gnu python3 bench/gpu_dispatch_native.py \\
      [--binary target/release/sclabel] [--out gpu_dispatch_native]
      → bench/results/gpu_dispatch_native.json
"""
import argparse
import json
import os
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / 'www/data/pbmc68k_reduced.h5ad'
QUERY = ROOT / 'www/data/pbmc3k_counts.h5ad'


def run(binary, args, work):
    """Runs the CLI in `work` (where cubecl.toml sends the launch log) → (launch names, progress events, stderr)."""
    log, progress = work / 'kernels.log', work / 'progress.jsonl'
    for f in (log, progress):
        f.unlink(missing_ok=True)
    p = subprocess.run([binary, *args, '--backend', 'wgpu', '--quiet', '--progress-log', str(progress)],
                       cwd=work, capture_output=True, text=True, check=True)
    names = [line.removeprefix('Executing ').split(' ')[0] for line in log.read_text().splitlines() if line.startswith('Executing')]
    events = [json.loads(line) for line in progress.read_text().splitlines() if line.strip()]
    return names, events, p.stderr


def kind(name):
    """A launch's family: fused element-wise, matmul, reduce, …"""
    for k in ('ElemwiseFuse', 'Matmul', 'Reduce', 'reduce', 'Fuse'):
        if k in name:
            return k.lower()
    return name.split('_')[0].split('<')[0].lower()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--binary', default=str(ROOT / 'target/release/sclabel'))
    ap.add_argument('--out', default='gpu_dispatch_native')
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / 'cubecl.toml').write_text(f'[profiling.logger]\nlevel = "minimal"\nfile = "{work / "kernels.log"}"\nappend = false\n')
        train = {}
        for epochs in (2, 4):
            (work / 'config.json').write_text(json.dumps({'n_epochs': epochs}))
            names, events, stderr = run(a.binary, ['train', '--reference', str(REFERENCE), '--query', str(QUERY),
                                                   '--label-key', 'bulk_labels', '--use-raw', '--query-use-raw', 'false', '--normalize',
                                                   '--config', str(work / 'config.json'), '--seed', '1', '--out', str(work / 'model.safetensors')], work)
            steps = next(e['progress']['steps_per_epoch'] for e in reversed(events) if e['progress']['phase'] == 'train')
            train[epochs] = {'launches': len(names), 'kinds': Counter(map(kind, names)), 'steps_per_epoch': steps, 'backend': stderr.splitlines()[0]}
        names, events, stderr = run(a.binary, ['predict', '--model', str(work / 'model.safetensors'), '--input', str(QUERY), '--normalize',
                                               '--out', str(work / 'predictions.csv')], work)
        batches = max(e['progress']['steps_per_epoch'] for e in events if e['progress']['phase'] == 'predict')
    two, four = train[2], train[4]
    per_two_epochs = four['launches'] - two['launches']
    steps = 2 * four['steps_per_epoch']
    result = {
        'what': 'GPU kernel launches of `sclabel train/predict --backend wgpu` (fusion on when the binary has it), counted by cubecl\'s profiling logger at level "minimal"; demo pair (700-cell reference, 2,700-cell query), batch 256',
        'backend': four['backend'],
        'train': {
            'launches_2_epochs': two['launches'], 'launches_4_epochs': four['launches'],
            'steps_per_epoch': four['steps_per_epoch'],
            'launches_per_steady_epoch': per_two_epochs / 2,
            # An upper bound per step: the epoch's evaluation of the model-selection cells is in it.
            'launches_per_step_with_evaluation': per_two_epochs / steps,
            'kinds_4_epochs_minus_2': dict((four['kinds'] - two['kinds']).most_common()),
        },
        'predict': {'cells': 2700, 'batches': batches, 'launches': len(names), 'launches_per_batch': len(names) / batches,
                    'kinds': dict(Counter(map(kind, names)).most_common())},
        'command': 'python3 bench/gpu_dispatch_native.py',
    }
    text = json.dumps(result, indent=1)
    print(text)
    (ROOT / 'bench' / 'results' / f'{a.out}.json').write_text(text + '\n')


if __name__ == '__main__':
    main()

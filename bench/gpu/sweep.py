#!/usr/bin/env python3
"""Is wgpu training bound by a fixed cost per step? 100k-cell reference, 2 epochs, minibatch sizes
256 / 1024 / 4096 on wgpu and 1024 on one CPU core (run.py's data and case runner).
On the device: `bash bench/gpu/run.sh --sweep` → $OUT/gpu-sweep.json."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import generate, run_case  # noqa: E402


def main(out, work):
    os.makedirs(work, exist_ok=True)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    jobs = [generate(work, n, c, s) for n, c, s in [('ref100k.h5ad', 100_000, 2), ('query10k.h5ad', 10_000, 3)]]
    for _, j in jobs:
        j.wait()
    (ref, _), (query, _) = jobs
    result = {'cases': []}
    for backend, bs, env, pin, limit in [('wgpu', 256, {}, False, 70), ('wgpu', 1024, {}, False, 60), ('wgpu', 4096, {}, False, 60), ('cpu', 1024, {'RAYON_NUM_THREADS': '1'}, True, 60)]:
        cfg = os.path.join(work, f'bs{bs}.json')
        json.dump({'n_epochs': 2, 'batch_size': bs}, open(cfg, 'w'))
        argv = ['train', '--reference', ref, '--query', query, '--normalize', '--config', cfg, '--seed', '0', '--out', os.path.join(work, f'm{bs}{backend}.safetensors'), '--backend', backend]
        r = run_case(work, f'train_100k_{backend}_bs{bs}', argv, env, pin, limit)
        r['batch_size'] = bs
        result['cases'].append(r)
        result['elapsed_s'] = round(time.time() - t0, 1)
        json.dump(result, open(os.path.join(out, 'gpu-sweep.json'), 'w'), indent=1)


if __name__ == '__main__':
    main(os.environ.get('OUT', '/tmp/gpu-out'), '/tmp/gpusweep')

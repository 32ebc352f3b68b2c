#!/usr/bin/env python3
"""The GPU benchmark's runner, on the lent device (bench/gpu/run.sh calls it; see README.md).

1. Resamples pbmc3k's labelled cells (scripts/make-big-h5ad.py, the 2,000 genes in carry/genes.txt):
   references of 10k and 100k cells, a 10k-cell query, a 1M-cell file to predict.
2. Trains scNym (preset new_identity_discovery, a few epochs) and predicts, each case a `sclabel`
   command with --progress-log, on wgpu (Vulkan) and on the CPU backend of the same machine with
   one core (taskset + RAYON_NUM_THREADS=1) and with every core.
3. Writes $OUT/gpu-results.json: per case the wall time, peak RSS, epoch end times and the
   steady epoch time (epochs after the first, which holds shader compilation), prediction rate,
   the backend/adapter the CLI reported; and the ratios the issue's targets name.

Every case runs under a deadline (--budget seconds for the whole script), the most important
first; a case stopped by it still reports the rate its progress log shows.
"""
import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CARRY = os.path.join(ROOT, 'bench', 'gpu', 'carry')
BIN = os.environ.get('SCLABEL_BIN', os.path.join(CARRY, 'sclabel'))
# The same CLI built without burn's kernel fusion (prepare.sh), for the with/without comparison.
BIN_NOFUSION = os.environ.get('SCLABEL_BIN_NOFUSION')


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as e:  # the environment report must not stop the benchmark
        return f'error: {e}'


def generate(work, name, cells, seed, core=None):
    out = os.path.join(work, name)
    log = open(os.path.join(work, f'gen-{name}.log'), 'w')
    cmd = [sys.executable, os.path.join(ROOT, 'scripts', 'make-big-h5ad.py'), '--source', os.path.join(CARRY, 'pbmc3k.h5ad'),
           '--genes', os.path.join(CARRY, 'genes.txt'), '--cells', str(cells), '--seed', str(seed), '--out', out]
    if core is not None and shutil.which('taskset'):
        cmd = ['taskset', '-c', str(core)] + cmd
    return out, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def read_log(path):
    if not os.path.exists(path):
        return []
    return [json.loads(l) for l in open(path) if l.strip()]


def summarize_train(events):
    ends = [(e['t'], e['progress']) for e in events if e['progress']['phase'] == 'train' and e['progress']['loss'] is not None]
    starts = [e['t'] for e in events if e['progress']['phase'] == 'train' and e['progress']['step'] == 1]
    out = {'epochs_done': len(ends), 'epoch_end_s': [round(t, 3) for t, _ in ends], 'losses': [p['loss'] for _, p in ends]}
    if events:
        out['steps_per_epoch'] = events[-1]['progress']['steps_per_epoch']
    if len(ends) >= 2:
        gaps = [b[0] - a[0] for a, b in zip(ends, ends[1:])]
        out['steady_epoch_s'] = sum(gaps) / len(gaps)
    if ends and starts:
        out['first_epoch_s'] = ends[0][0] - starts[0]
    # Steps per second after the first epoch (or over all logged steps when it never ended): a rate
    # also for a run the deadline stopped.
    steps = [(e['t'], e['progress']['epoch'] * e['progress']['steps_per_epoch'] + e['progress']['step']) for e in events if e['progress']['phase'] == 'train']
    span = [s for s in steps if ends and s[0] >= ends[0][0]]
    if len(span) < 2 or span[-1][1] == span[0][1]:
        span = steps
    if len(span) >= 2 and span[-1][1] > span[0][1] and span[-1][0] > span[0][0]:
        out['steps_per_s'] = (span[-1][1] - span[0][1]) / (span[-1][0] - span[0][0])
        if out.get('steps_per_epoch'):
            out['epoch_s_from_rate'] = out['steps_per_epoch'] / out['steps_per_s']
    return out


def summarize_predict(events):
    ev = [(e['t'], e['progress']['cells_done']) for e in events if e['progress']['phase'] == 'predict']
    out = {'cells_done': ev[-1][1] if ev else 0}
    if len(ev) >= 2 and ev[-1][0] > ev[0][0]:
        out['cells_per_s'] = (ev[-1][1] - ev[0][1]) / (ev[-1][0] - ev[0][0])
        out['predict_s'] = ev[-1][0] - ev[0][0]
    return out


def run_case(work, name, argv, env_extra, pin_one_core, limit, binary=None, cwd=None):
    log = os.path.join(work, f'{name}.jsonl')
    if os.path.exists(log):
        os.remove(log)
    env = dict(os.environ, **env_extra)
    cmd = [binary or BIN] + argv + ['--quiet', '--progress-log', log]
    if pin_one_core and shutil.which('taskset'):
        cmd = ['taskset', '-c', '0'] + cmd
    print(f'== {name} (limit {limit:.0f} s): {" ".join(cmd)}', flush=True)
    t0 = time.time()
    with open(os.path.join(work, f'{name}.out'), 'w') as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        timed_out = False
        try:
            p.wait(timeout=max(limit, 1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            timed_out = True
    wall = time.time() - t0
    text = open(os.path.join(work, f'{name}.out')).read()
    backend = [l for l in text.splitlines() if l.startswith('backend:')]
    r = {'case': name, 'command': ' '.join(cmd), 'rc': p.returncode, 'timed_out': timed_out, 'wall_s': round(wall, 3),
         'backend': backend[0] if backend else None, 'output_tail': text[-1500:]}
    try:
        events = read_log(log)
        r.update(summarize_predict(events) if 'predict' in name else summarize_train(events))
    except Exception as e:  # a summary that fails keeps the case's raw result
        r['summary_error'] = repr(e)
    print(json.dumps({k: v for k, v in r.items() if k != 'output_tail'}), flush=True)
    return r


def agreement(a, b):
    try:
        la = [row['scNym'] for row in csv.DictReader(open(a))]
        lb = [row['scNym'] for row in csv.DictReader(open(b))]
    except Exception as e:
        return {'error': str(e)}
    n = min(len(la), len(lb))
    return {'cells': n, 'same_label': sum(x == y for x, y in zip(la, lb)) / max(n, 1), 'rows': [len(la), len(lb)]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default=os.environ.get('OUT', '/tmp/gpu-out'))
    ap.add_argument('--work', default='/tmp/gpubench')
    ap.add_argument('--budget', type=float, default=480, help='seconds for the whole script')
    ap.add_argument('--predict-cells', type=int, default=1_000_000)
    ap.add_argument('--small', type=int, default=1, help='divide every size by this (a dry run here)')
    args = ap.parse_args()
    t_start = time.time()
    deadline = t_start + args.budget
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    w = args.work
    result = {'date': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), 'machine': {
        'gpu': sh('nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader'),
        'cpu': sh("lscpu | grep 'Model name' | sed 's/.*: *//'"), 'cores': os.cpu_count(),
        'vulkan_icd': os.environ.get('VK_DRIVER_FILES'), 'sclabel': sh(f'{BIN} --version')}, 'cases': []}

    def save():
        result['elapsed_s'] = round(time.time() - t_start, 1)
        json.dump(result, open(os.path.join(args.out, 'gpu-results.json'), 'w'), indent=1)

    # Data: the small files first (training waits for them); the big one in the background.
    jobs = {name: generate(w, name, cells // args.small, seed) for name, cells, seed in [('ref10k.h5ad', 10_000, 1), ('query10k.h5ad', 10_000, 3), ('ref100k.h5ad', 100_000, 2)]}
    # The big file is written on the last core, away from core 0 where the one-core cases run.
    big, big_job = generate(w, 'predict.h5ad', args.predict_cells // args.small, 4, core=os.cpu_count() - 1)
    for name, (path, job) in jobs.items():
        if job.wait() != 0:
            result['error'] = f'generating {name} failed: ' + open(os.path.join(w, f'gen-{name}.log')).read()[-800:]
            save()
            sys.exit(1)
    result['data_ready_s'] = round(time.time() - t_start, 1)
    ref = {'10k': jobs['ref10k.h5ad'][0], '100k': jobs['ref100k.h5ad'][0]}
    query = jobs['query10k.h5ad'][0]
    cfg3, cfg2 = os.path.join(w, 'epochs3.json'), os.path.join(w, 'epochs2.json')
    json.dump({'n_epochs': 3}, open(cfg3, 'w'))
    json.dump({'n_epochs': 2}, open(cfg2, 'w'))

    def train(size, backend, cfg, tag=''):
        return ['train', '--reference', ref[size], '--query', query, '--normalize', '--config', cfg, '--seed', '0',
                '--out', os.path.join(w, f'model-{size}-{backend}{tag}.safetensors'), '--backend', backend]

    one = {'RAYON_NUM_THREADS': '1'}
    model = os.path.join(w, 'model-10k-wgpu.safetensors')

    def predict(backend, tag):
        return ['predict', '--model', model, '--input', big, '--normalize', '--out', os.path.join(w, f'pred-{tag}.csv'), '--backend', backend]

    # (name, argv builder, env, pin to one core, own limit s, needs the big file); most important first.
    cases = [
        ('train_10k_wgpu', lambda: train('10k', 'wgpu', cfg3), {}, False, 90, False),
        ('train_100k_wgpu', lambda: train('100k', 'wgpu', cfg3), {}, False, 150, False),
        ('train_100k_cpu1', lambda: train('100k', 'cpu', cfg2), one, True, 120, False),
        ('train_100k_wgpu_nofusion', lambda: train('100k', 'wgpu', cfg3), {}, False, 150, False),
        ('predict_wgpu', lambda: predict('wgpu', 'wgpu'), {}, False, 150, True),
        # burn-fusion's search at burn's default width (5) instead of ours (3, src/backend.rs): a
        # burn.toml in the working directory leaves the setting to the file.
        ('train_10k_wgpu_width5', lambda: train('10k', 'wgpu', cfg3, '-width5'), {}, False, 90, False),
        ('train_100k_cpuall', lambda: train('100k', 'cpu', cfg2), {}, False, 90, False),
        ('predict_cpuall', lambda: predict('cpu', 'cpuall'), {}, False, 120, True),
        ('train_10k_cpu1', lambda: train('10k', 'cpu', cfg2), one, True, 45, False),
        ('predict_cpu1', lambda: predict('cpu', 'cpu1'), one, True, 60, True),
    ]
    for name, argv, env, pin, own, needs_big in cases:
        if needs_big and big_job.poll() is None:
            left = deadline - time.time() - 10
            try:
                big_job.wait(timeout=max(left, 1))
            except subprocess.TimeoutExpired:
                pass
            result['predict_data_ready_s'] = round(time.time() - t_start, 1)
        if needs_big and big_job.poll() != 0:
            result['cases'].append({'case': name, 'skipped': 'the file to predict was not ready: ' + open(os.path.join(w, 'gen-predict.h5ad.log')).read()[-300:]})
            continue
        if name.startswith('predict') and not os.path.exists(model):
            result['cases'].append({'case': name, 'skipped': f'no model ({model}): train_10k_wgpu failed'})
            continue
        left = deadline - time.time() - 5
        if left < 10:
            result['cases'].append({'case': name, 'skipped': 'out of time'})
            continue
        if name.endswith('_nofusion') and not (BIN_NOFUSION and os.path.exists(BIN_NOFUSION)):
            result['cases'].append({'case': name, 'skipped': 'no CLI built without fusion in the carry'})
            continue
        binary = BIN_NOFUSION if name.endswith('_nofusion') else None
        cwd = None
        if name.endswith('_width5'):
            cwd = os.path.join(w, 'width5')
            os.makedirs(cwd, exist_ok=True)
            open(os.path.join(cwd, 'burn.toml'), 'w').write('[fusion.beam_search]\nmax_blocks = 5\n')
        result['cases'].append(run_case(w, name, argv(), env, pin, min(own, left), binary, cwd))
        save()
    if big_job.poll() is None:
        big_job.kill()

    by = {c['case']: c for c in result['cases']}
    epoch = lambda c: c.get('steady_epoch_s') or c.get('epoch_s_from_rate')
    ratios = {}
    for size in ['100k']:
        g, c1, ca = by.get(f'train_{size}_wgpu', {}), by.get(f'train_{size}_cpu1', {}), by.get(f'train_{size}_cpuall', {})
        if epoch(g) and epoch(c1):
            ratios[f'train_{size}_wgpu_vs_cpu1'] = epoch(c1) / epoch(g)
        if epoch(g) and epoch(ca):
            ratios[f'train_{size}_wgpu_vs_cpuall'] = epoch(ca) / epoch(g)
        nf = by.get(f'train_{size}_wgpu_nofusion', {})
        if epoch(g) and epoch(nf):
            ratios[f'train_{size}_wgpu_fusion_vs_nofusion'] = epoch(nf) / epoch(g)
    g10, w5 = by.get('train_10k_wgpu', {}), by.get('train_10k_wgpu_width5', {})
    if epoch(g10) and epoch(w5):
        ratios['train_10k_wgpu_width3_vs_width5'] = epoch(w5) / epoch(g10)
    pg, p1, pa = by.get('predict_wgpu', {}), by.get('predict_cpu1', {}), by.get('predict_cpuall', {})
    if pg.get('cells_per_s') and p1.get('cells_per_s'):
        ratios['predict_wgpu_vs_cpu1'] = pg['cells_per_s'] / p1['cells_per_s']
    if pg.get('cells_per_s') and pa.get('cells_per_s'):
        ratios['predict_wgpu_vs_cpuall'] = pg['cells_per_s'] / pa['cells_per_s']
    result['ratios'] = ratios
    for tag in ['cpuall', 'cpu1']:
        a, b = os.path.join(w, 'pred-wgpu.csv'), os.path.join(w, f'pred-{tag}.csv')
        if time.time() < deadline and os.path.exists(a) and os.path.exists(b) and by.get(f'predict_{tag}', {}).get('rc') == 0:
            result[f'labels_wgpu_vs_{tag}'] = agreement(a, b)
            break
    save()
    print(json.dumps(result['ratios']), flush=True)


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
"""Native prediction of a big all-gene file: peak memory (RSS) and time of `sclabel predict`, against
the size of the matrix the model needs (its genes' stored values) and of the whole file's matrix.

Steps (from the repository root; needs numpy and h5py, and a built CLI):
  1. a query of N resampled cells × all 32,738 genes (scripts/make-big-h5ad.py), unless it exists;
  2. a 2,000-gene reference: pbmc3k without QC-failed cells, ln(CPM+1) over all genes, then the
     reference list's 2,000 highly variable genes (../shared), and a model trained on it by the CLI;
  3. `sclabel predict --normalize` on the query under /usr/bin/time, for each binary given
     (e.g. the current build and one built from an earlier commit), alternated `--runs` times;
  4. bench/results/predict_memory_<N>.json.

    cargo build --features ndarray,cli --bin sclabel
    python bench/big_predict.py --cells 100000 --binary target/debug/sclabel [--baseline /tmp/sclabel-old]
"""
import argparse
import json
import os
import re
import subprocess
import sys

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, '..', 'shared')


def reference_2000(out):
    src = os.path.join(SHARED, 'data', 'pbmc3k_raw_labeled.h5ad')
    hvg = [l.strip() for l in open(os.path.join(SHARED, 'reference-outputs', 'annotatability-pbmc3k-audit', 'pbmc3k_hvg2000.txt')) if l.strip()]
    dec = lambda v: v.decode() if isinstance(v, bytes) else str(v)
    with h5py.File(src) as f:
        x = f['X']
        data, ind, ptr = x['data'][()].astype(np.float64), x['indices'][()], x['indptr'][()]
        genes = [dec(g) for g in f['var'][f['var'].attrs['_index']][()]]
        col = f['obs']['cell_type']
        cats = [dec(c) for c in col['categories'][()]]
        labels = [cats[c] for c in col['codes'][()]]
        names = [dec(c) for c in f['obs'][f['obs'].attrs['_index']][()]]
    pos = {g: i for i, g in enumerate(genes)}
    new_col = -np.ones(len(genes), dtype=np.int64)
    new_col[[pos[g] for g in hvg]] = np.arange(len(hvg))
    rows = [i for i, l in enumerate(labels) if l != 'unlabeled_QCfail']
    indices, values, indptr = [], [], [0]
    for r in rows:
        a, b = ptr[r], ptr[r + 1]
        v = np.log1p(data[a:b] / data[a:b].sum() * 1e6)
        c = new_col[ind[a:b]]
        keep = c >= 0
        order = np.argsort(c[keep])
        indices.append(c[keep][order])
        values.append(v[keep][order])
        indptr.append(indptr[-1] + int(keep.sum()))
    classes = sorted(set(labels[r] for r in rows))
    with h5py.File(out, 'w') as f:
        f.attrs['encoding-type'] = 'anndata'
        f.attrs['encoding-version'] = '0.1.0'
        g = f.create_group('X')
        g.attrs['encoding-type'] = 'csr_matrix'
        g.attrs['encoding-version'] = '0.1.0'
        g.attrs['shape'] = np.array([len(rows), len(hvg)])
        g['data'] = np.concatenate(values).astype(np.float32)
        g['indices'] = np.concatenate(indices).astype(np.int32)
        g['indptr'] = np.array(indptr, dtype=np.int64)
        for name, index in [('obs', [names[r] for r in rows]), ('var', hvg)]:
            d = f.create_group(name)
            d.attrs['encoding-type'] = 'dataframe'
            d.attrs['encoding-version'] = '0.2.0'
            d.attrs['_index'] = '_index'
            d.create_dataset('_index', data=np.array(index, dtype=object), dtype=h5py.string_dtype())
            if name == 'obs':
                d.attrs.create('column-order', data=['cell_type'], dtype=h5py.string_dtype())
                c = d.create_group('cell_type')
                c.attrs['encoding-type'] = 'categorical'
                c.attrs['encoding-version'] = '0.2.0'
                c.attrs['ordered'] = False
                c.create_dataset('categories', data=np.array(classes, dtype=object), dtype=h5py.string_dtype())
                c['codes'] = np.array([classes.index(labels[r]) for r in rows], dtype=np.int8)
            else:
                d.attrs['column-order'] = np.array([], dtype=np.float64)
    return hvg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--cells', type=int, default=100000)
    ap.add_argument('--binary', default=os.path.join(ROOT, 'target', 'debug', 'sclabel'))
    ap.add_argument('--baseline', help='another sclabel binary to compare (e.g. built from an earlier commit)')
    ap.add_argument('--runs', type=int, default=1)
    ap.add_argument('--work', default='/tmp/sclabel-big')
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    query = os.path.join(args.work, f'query_{args.cells}.h5ad')
    if not os.path.exists(query):
        subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'make-big-h5ad.py'), '--cells', str(args.cells), '--out', query], check=True)
    ref = os.path.join(args.work, 'ref2000.h5ad')
    hvg = reference_2000(ref)
    model = os.path.join(args.work, 'model2000.safetensors')
    subprocess.run([args.binary, '--quiet', 'train', '--reference', ref, '--label-key', 'cell_type', '--out', model], check=True)

    with h5py.File(query) as f:
        genes = [g.decode() for g in f['var']['_index'][()]]
        keep = np.isin(np.array(genes, dtype=object), np.array(hvg, dtype=object))
        ind = f['X']['indices'][()]
        nnz, kept = len(ind), int(keep[ind].sum())
        col = f['obs']['cell_type']
        cats = [c.decode() for c in col['categories'][()]]
        truth = [cats[c] for c in col['codes'][()]]
    n = args.cells
    # CSR in memory: 4-byte value + 4-byte index per stored value, 8-byte row offsets.
    kept_bytes, full_bytes = kept * 8 + (n + 1) * 8, nnz * 8 + (n + 1) * 8

    runs = []
    binaries = [('current', args.binary)] + ([('baseline', args.baseline)] if args.baseline else [])
    for k in range(args.runs):
        for name, binary in binaries:
            out = os.path.join(args.work, f'pred_{name}.csv')
            p = subprocess.run(['/usr/bin/time', '-f', 'maxrss_kb=%M wall_s=%e', binary, '--quiet', 'predict', '--model', model,
                                '--input', query, '--normalize', '--out', out], capture_output=True, text=True, check=True)
            rss = int(re.search(r'maxrss_kb=(\d+)', p.stderr).group(1)) * 1024
            wall = float(re.search(r'wall_s=([\d.]+)', p.stderr).group(1))
            pred = [line.split(',')[1] for line in open(out).read().splitlines()[1:]]
            acc = float(np.mean([a == b for a, b in zip(pred, truth)]))
            runs.append({'binary': name, 'run': k, 'peak_rss_bytes': rss, 'wall_seconds': wall, 'accuracy_vs_truth': acc})
            print(f'{name}: peak RSS {rss / 1e6:.0f} MB ({rss / kept_bytes:.2f}x the kept matrix, {rss / full_bytes:.2f}x the whole), {wall:.1f} s, accuracy {acc:.4f}')
    same = None
    if args.baseline:
        same = open(os.path.join(args.work, 'pred_current.csv')).read() == open(os.path.join(args.work, 'pred_baseline.csv')).read()
        print('predictions identical to the baseline:', same)
    result = {
        'task': f'sclabel predict --normalize of {n} resampled pbmc3k cells x {len(genes)} genes (scripts/make-big-h5ad.py defaults) with a 2000-gene model',
        'file_bytes': os.path.getsize(query), 'stored_values': nnz, 'kept_stored_values': kept,
        'kept_matrix_bytes': kept_bytes, 'whole_matrix_bytes': full_bytes,
        'runs': runs, 'identical_predictions': same,
    }
    path = os.path.join(ROOT, 'bench', 'results', f'predict_memory_{n}.json')
    json.dump(result, open(path, 'w'), indent=2)
    print('wrote', path)


if __name__ == '__main__':
    main()

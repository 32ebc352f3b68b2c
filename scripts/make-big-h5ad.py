#!/usr/bin/env python3
"""Writes a realistic AnnData .h5ad of any size by resampling real cells, for the big-data
benchmarks (nothing it writes is committed).

Each new cell copies a random labelled cell of the source (its label kept in obs as truth,
`cell_type`) and draws Poisson counts around a mix of that cell's counts and its type's mean
profile, scaled to a library size drawn around the source's:
    λ = depth · f · ((1 − m) · x_src + m · p_type · size_src),   f ~ LogNormal(0, 0.25)
so every gene of the source is kept (all 32,738 for pbmc3k), sparsity follows real cells, and
`--depth` / `--mix` move the detected genes per cell (the defaults, depth 4 and mix 0.5, give ~1,800 on pbmc3k, like
current 10x data). X is CSR float32 counts written a block of cells at a time (memory stays at one
block whatever the size), with `batch` (donor-like groups of cells) in obs.

Needs numpy and h5py (pip install numpy h5py). Example, from the repository root:
    python scripts/make-big-h5ad.py --cells 100000 --out /tmp/big100k.h5ad
    python scripts/make-big-h5ad.py --cells 1000000 --out /tmp/big1m.h5ad --seed 1
"""
import argparse
import os
import sys
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SOURCE = os.path.join(HERE, '..', '..', 'shared', 'data', 'pbmc3k_raw_labeled.h5ad')


def read_strings(ds):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]]


def keep_genes(data, indices, indptr, genes, wanted_path):
    """Only the genes listed in `wanted_path` (one per line, in that order): a smaller file for
    benchmarks that want realistic cells but not all 33k genes (bench/gpu/)."""
    wanted = [l.strip() for l in open(wanted_path) if l.strip()]
    pos = {g: i for i, g in enumerate(genes)}
    missing = [w for w in wanted if w not in pos]
    if missing:
        sys.exit(f'{wanted_path}: {len(missing)} genes not in the source, e.g. {missing[:3]}')
    new_col = -np.ones(len(genes), dtype=np.int64)
    new_col[[pos[w] for w in wanted]] = np.arange(len(wanted))
    col = new_col[indices]
    kept = col >= 0
    row = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))[kept]
    counts = np.bincount(row, minlength=len(indptr) - 1)
    return data[kept], col[kept], np.r_[0, np.cumsum(counts)], wanted


def read_source(path, label_key, drop):
    with h5py.File(path, 'r') as f:
        x = f['X']
        if not isinstance(x, h5py.Group) or x.attrs.get('encoding-type') not in ('csr_matrix', b'csr_matrix'):
            sys.exit(f'{path}: X must be a CSR matrix of counts')
        n, g = (int(v) for v in x.attrs['shape'])
        data, indices, indptr = x['data'][()], x['indices'][()], x['indptr'][()]
        var = f['var']
        genes = read_strings(var[var.attrs['_index']])
        col = f['obs'][label_key]
        if isinstance(col, h5py.Group):
            cats = read_strings(col['categories'])
            labels = np.array([cats[c] if c >= 0 else '' for c in col['codes'][()]], dtype=object)
        else:
            labels = np.array(read_strings(col), dtype=object)
    if not np.all(np.mod(data, 1) == 0):
        sys.exit(f'{path}: X must hold raw counts')
    keep = np.array([l not in drop and l != '' for l in labels])
    return n, g, data.astype(np.float64), indices.astype(np.int64), indptr.astype(np.int64), genes, labels, keep


def write_strings(group, name, values):
    group.create_dataset(name, data=np.array(values, dtype=object), dtype=h5py.string_dtype())
    group[name].attrs['encoding-type'] = 'string-array'
    group[name].attrs['encoding-version'] = '0.2.0'


def empty_dict(f, name):
    g = f.create_group(name)
    g.attrs['encoding-type'] = 'dict'
    g.attrs['encoding-version'] = '0.1.0'


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--cells', type=int, required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--source', default=DEFAULT_SOURCE, help='an .h5ad of raw counts (CSR) with labels')
    ap.add_argument('--label-key', default='cell_type')
    ap.add_argument('--drop', action='append', default=['unlabeled_QCfail'], help='labels not to resample')
    ap.add_argument('--depth', type=float, default=4.0)
    ap.add_argument('--mix', type=float, default=0.5)
    ap.add_argument('--batches', type=int, default=4)
    ap.add_argument('--block', type=int, default=20000, help='cells per write')
    ap.add_argument('--compression', choices=['none', 'gzip', 'lzf'], default='none')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--genes', help='keep only these genes of the source (a file of names, one per line)')
    args = ap.parse_args()

    n_src, g, data, indices, indptr, genes, labels, keep = read_source(args.source, args.label_key, set(args.drop))
    if args.genes:
        data, indices, indptr, genes = keep_genes(data, indices, indptr, genes, args.genes)
        g = len(genes)
    rng = np.random.default_rng(args.seed)
    cells = np.flatnonzero(keep)
    types = sorted(set(labels[cells]))
    cumulative = np.r_[0.0, np.cumsum(data)]
    size = cumulative[indptr[1:]] - cumulative[indptr[:-1]]
    profile = {}
    for t in types:
        rows = cells[labels[cells] == t]
        p = np.zeros(g)
        for r in rows:
            a, b = indptr[r], indptr[r + 1]
            p[indices[a:b]] += data[a:b] / max(size[r], 1)
        profile[t] = p / p.sum()
    type_code = {t: k for k, t in enumerate(types)}

    comp = None if args.compression == 'none' else args.compression
    t0 = time.time()
    with h5py.File(args.out, 'w') as f:
        f.attrs['encoding-type'] = 'anndata'
        f.attrs['encoding-version'] = '0.1.0'
        x = f.create_group('X')
        x.attrs['encoding-type'] = 'csr_matrix'
        x.attrs['encoding-version'] = '0.1.0'
        x.attrs['shape'] = np.array([args.cells, g], dtype=np.int64)
        dd = x.create_dataset('data', shape=(0,), maxshape=(None,), dtype=np.float32, chunks=(1 << 18,), compression=comp)
        di = x.create_dataset('indices', shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(1 << 18,), compression=comp)
        out_indptr = np.zeros(args.cells + 1, dtype=np.int64)
        out_labels = np.empty(args.cells, dtype=np.int32)
        nnz = 0
        for start in range(0, args.cells, args.block):
            end = min(start + args.block, args.cells)
            src = rng.choice(cells, size=end - start)
            f_lib = rng.lognormal(0.0, 0.25, size=end - start) * args.depth
            blk_i, blk_v = [], []
            for k, r in enumerate(src):
                a, b = indptr[r], indptr[r + 1]
                t = labels[r]
                lam = args.mix * profile[t] * size[r]
                lam[indices[a:b]] += (1 - args.mix) * data[a:b]
                lam *= f_lib[k]
                nz = np.flatnonzero(lam > 0)
                counts = rng.poisson(lam[nz])
                hit = counts > 0
                blk_i.append(nz[hit].astype(np.int32))
                blk_v.append(counts[hit].astype(np.float32))
                out_indptr[start + k + 1] = out_indptr[start + k] + int(hit.sum())
                out_labels[start + k] = type_code[t]
            bi, bv = np.concatenate(blk_i), np.concatenate(blk_v)
            dd.resize((nnz + len(bv),))
            di.resize((nnz + len(bi),))
            dd[nnz:] = bv
            di[nnz:] = bi
            nnz += len(bv)
            print(f'{end}/{args.cells} cells, {nnz / end:.0f} genes per cell, {time.time() - t0:.0f} s', file=sys.stderr)
        x.create_dataset('indptr', data=out_indptr)

        obs = f.create_group('obs')
        obs.attrs['encoding-type'] = 'dataframe'
        obs.attrs['encoding-version'] = '0.2.0'
        obs.attrs['_index'] = '_index'
        obs.attrs.create('column-order', data=[args.label_key, 'batch'], dtype=h5py.string_dtype())
        write_strings(obs, '_index', [f'cell{i}' for i in range(args.cells)])
        for name, codes, cats in [
            (args.label_key, out_labels, types),
            ('batch', rng.integers(0, args.batches, size=args.cells).astype(np.int8), [f'batch{b}' for b in range(args.batches)]),
        ]:
            c = obs.create_group(name)
            c.attrs['encoding-type'] = 'categorical'
            c.attrs['encoding-version'] = '0.2.0'
            c.attrs['ordered'] = False
            write_strings(c, 'categories', cats)
            c.create_dataset('codes', data=codes)
        var = f.create_group('var')
        var.attrs['encoding-type'] = 'dataframe'
        var.attrs['encoding-version'] = '0.2.0'
        var.attrs['_index'] = '_index'
        var.attrs['column-order'] = np.array([], dtype=np.float64)  # anndata writes an empty list so
        write_strings(var, '_index', genes)
        for name in ['uns', 'obsm', 'varm', 'obsp', 'varp', 'layers']:
            empty_dict(f, name)
    print(f'wrote {args.out}: {args.cells} cells x {g} genes, {nnz} stored counts, {os.path.getsize(args.out) / 1e9:.2f} GB', file=sys.stderr)


if __name__ == '__main__':
    main()

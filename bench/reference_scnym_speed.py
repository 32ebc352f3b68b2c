"""Seconds per training epoch of the reference scNym (Python, torch) on the `speed` task's data,
for a ratio against `cargo run --features ndarray,cli --example bench_scnym -- speed` taken on the
same machine (bench/results/README.md).

Same recipe as the Rust benchmark's `resampled` (examples/bench_scnym.rs), with numpy's random
stream: n cells resampled from Symphony (a random cell, Poisson counts around its profile at a
library size of 2500), ln(CPM+1), every fifth cell `Unlabeled`; scNym's `default` config with
n_epochs 3 (10k) or 2 (100k), one torch thread. An epoch runs from one `train_epoch` call to the
next (training, validation and checkpointing), as the Rust benchmark's progress marks do.

Needs scNym 0.4.0 importable (`pip install git+https://github.com/calico/scnym@e19f4f7`; PyPI
stops at 0.3.2) with torch, anndata, scanpy and scikit-learn; one torch thread is set here:
    python bench/reference_scnym_speed.py [--cells 10000] [--out bench/results/reference_scnym_speed.json]
"""
import argparse
import json
import os
import sys
import tempfile
import time

import anndata
import numpy as np
import scipy.sparse as sp
import torch

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "pbmc_symphony_3chemistries.h5ad")


def resampled(src, n, seed):
    rng = np.random.default_rng(seed)
    x = sp.csr_matrix(src.X)
    labels = src.obs["cell_type"].astype(str).to_numpy()
    picks = rng.integers(0, src.n_obs, n)
    rows, cols, vals = [], [], []
    for i, c in enumerate(picks):
        lo, hi = x.indptr[c], x.indptr[c + 1]
        counts = np.expm1(x.data[lo:hi].astype(np.float64))
        k = rng.poisson(np.maximum(counts / counts.sum() * 2500.0, 1e-9))
        keep = k > 0
        rows.append(np.full(keep.sum(), i))
        cols.append(x.indices[lo:hi][keep])
        vals.append(k[keep])
    counts = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, src.n_vars), dtype=np.float32)
    lib = np.asarray(counts.sum(axis=1)).ravel()
    norm = sp.diags(1e6 / np.maximum(lib, 1.0)) @ counts
    norm.data = np.log1p(norm.data)
    obs_labels = np.where(np.arange(n) % 5 == 4, "Unlabeled", labels[picks])
    ad = anndata.AnnData(X=sp.csr_matrix(norm, dtype=np.float32))
    ad.obs["cell_type"] = obs_labels
    ad.obs_names = [f"cell{i}" for i in range(n)]
    ad.var_names = list(src.var_names)
    return ad


def epoch_seconds(ad, epochs):
    import scnym.trainer
    from scnym.api import scnym_api

    marks, shape = [], {}
    original = scnym.trainer.SemiSupervisedTrainer.train_epoch

    def timed(self, *args, **kwargs):
        marks.append(time.perf_counter())
        shape.update(steps_per_epoch=len(self.dataloaders["train"]), n_train=len(self.dataloaders["train"].dataset))
        return original(self, *args, **kwargs)

    scnym.trainer.SemiSupervisedTrainer.train_epoch = timed
    try:
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            scnym_api(adata=ad, task="train", groupby="cell_type", out_path=out, config={"n_epochs": epochs})
        total = time.perf_counter() - t
    finally:
        scnym.trainer.SemiSupervisedTrainer.train_epoch = original
    per = list(np.diff(marks))
    return {"seconds_per_epoch": float(np.mean(per)), "epoch_seconds": [float(p) for p in per], "total_seconds": total, **shape}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, action="append")
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    src = anndata.read_h5ad(DATA)
    runs = []
    for n, epochs in [(10_000, 3), (100_000, 2)]:
        if args.cells and n not in args.cells:
            continue
        run = epoch_seconds(resampled(src, n, 1), epochs)
        run["cells"] = n
        print(f"reference scNym, {n} cells: {run['seconds_per_epoch']:.2f} s/epoch ({run['steps_per_epoch']} steps/epoch, {run['n_train']} trained on; torch threads {torch.get_num_threads()})", file=sys.stderr)
        runs.append(run)
    result = {"task": "speed", "implementation": "scNym 0.4.0 (Python, torch " + torch.__version__ + ")", "torch_threads": 1, "runs": runs}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()

"""Wall time of the reference Annotatability 0.0.5 (Python, torch) on the `pbmc3k-audit` task, for
a ratio against `cargo run --features ndarray,cli --example bench_audit` taken on the same machine
(bench/results/README.md). The same inputs as examples/bench_audit.rs: the reference's 2638 cells
and flipped labels (../shared/reference-outputs/annotatability-pbmc3k-audit), ln(CP10k+1) over all
genes, then its 2000 HVGs; `follow_training_dyn_neural_net` at the package defaults for 50
epochs on the CPU, one torch thread. Times the call only (as bench_audit times its training).

Needs Annotatability 0.0.5 (`pip install annotatability`), torch, anndata, scanpy:
    python bench/reference_annotatability_speed.py [--runs 3]
"""
import argparse
import os
import sys
import time

import anndata
import numpy as np
import pandas as pd
import scanpy as sc
import torch

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")
OUTPUTS = os.path.join(SHARED, "reference-outputs", "annotatability-pbmc3k-audit")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from Annotatability import models

    ad = anndata.read_h5ad(os.path.join(SHARED, "data", "pbmc3k_raw_labeled.h5ad"))
    noisy = pd.read_csv(os.path.join(OUTPUTS, "annotatability_noisy_run.csv"))
    ad = ad[noisy["cell"].to_numpy()].copy()
    sc.pp.normalize_total(ad, target_sum=1e4)
    sc.pp.log1p(ad)
    hvg = open(os.path.join(OUTPUTS, "pbmc3k_hvg2000.txt")).read().split()
    ad = ad[:, hvg].copy()
    ad.obs["given_label"] = noisy["given_label"].to_numpy()
    for seed in range(args.runs):
        torch.manual_seed(seed)
        np.random.seed(seed)
        t = time.perf_counter()
        models.follow_training_dyn_neural_net(ad, label_key="given_label", iterNum=50, device=torch.device("cpu"))
        print(f"reference Annotatability, pbmc3k-audit run {seed}: {time.perf_counter() - t:.1f} s (torch threads {torch.get_num_threads()})", file=sys.stderr)


if __name__ == "__main__":
    main()

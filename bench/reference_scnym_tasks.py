"""The reference scNym (Python) on the benchmark tasks `symphony-loco` and `pancreas-novel`, over
several seeds, with the settings of `cargo run --features ndarray,cli --example bench_scnym`
(examples/bench_scnym.rs): the issue's targets are one reference run each, and this gives the
reference's own spread between seeds to compare our ten-seed means with.

- symphony-loco: leave one chemistry (`donor`) out; reference cells labelled by `cell_type`, query
  cells `Unlabeled`, domain column `donor`, config `no_new_identity`; accuracy, Cohen's kappa and
  macro-F1 (over labels seen in truth or prediction) on the query.
- pancreas-novel: Xin (labelled) → Wang (`Unlabeled`) on their shared genes in Xin's order, config
  `new_identity_discovery`; accuracy on the shared types and AUROC of 1 − confidence for the novel.
Both inputs as ln(CPM+1) (expm1, each cell to 1e6, log1p, as the task definitions say; with
--pancreas-log2 the pancreas files, which are log2, through 2^x − 1 instead, as sclabel's
`normalize` does); seeds set numpy's, torch's and
Python's global generators (scNym has no seed argument). One torch thread.

Needs scNym 0.4.0 importable (`pip install git+https://github.com/calico/scnym@e19f4f7`; PyPI
stops at 0.3.2) with torch, anndata, scanpy and scikit-learn:
    python bench/reference_scnym_tasks.py [symphony-loco] [pancreas-novel] [--seeds 5] [--out FILE]
"""
import argparse
import json
import os
import random
import sys
import tempfile
import time

import anndata
import numpy as np
import scipy.sparse as sp
import torch
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, roc_auc_score

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def load(name, log_base=np.e):
    ad = anndata.read_h5ad(os.path.join(DATA, name))
    x = sp.csr_matrix(ad.X, dtype=np.float64)
    x.data = np.expm1(x.data * np.log(log_base))
    lib = np.asarray(x.sum(axis=1)).ravel()
    x = sp.csr_matrix(sp.diags(1e6 / np.maximum(lib, 1e-12)) @ x)
    x.data = np.log1p(x.data)
    ad.X = x.astype(np.float32)
    ad.obs["cell_type"] = ad.obs["cell_type"].astype(str)
    return ad


def transfer(adata, query_mask, preset, seed, domain=None):
    """Trains on `adata` with the query cells `Unlabeled`; returns the query's labels and confidences."""
    from scnym.api import scnym_api

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    ad = adata.copy()
    ad.obs["train_label"] = np.where(query_mask, "Unlabeled", ad.obs["cell_type"].to_numpy())
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        scnym_api(adata=ad, task="train", groupby="train_label", domain_groupby=domain, out_path=out, config=preset)
        secs = time.perf_counter() - t
        scnym_api(adata=ad, task="predict", trained_model=out, out_path=out, config=preset)
    q = ad[query_mask]
    return q.obs["scNym"].astype(str).to_numpy(), q.obs["scNym_confidence"].to_numpy(), secs


def symphony_loco(seeds):
    ad = load("pbmc_symphony_3chemistries.h5ad")
    donor = ad.obs["donor"].astype(str).to_numpy()
    runs = []
    for fold in ["3pv1", "3pv2", "5p"]:
        for seed in range(seeds):
            pred, _, secs = transfer(ad, donor == fold, "no_new_identity", seed, domain="donor")
            truth = ad.obs["cell_type"].to_numpy()[donor == fold]
            r = {"fold": fold, "seed": seed, "accuracy": accuracy_score(truth, pred), "kappa": cohen_kappa_score(truth, pred),
                 "macro_f1": f1_score(truth, pred, average="macro"), "train_seconds": secs}
            print(f"reference symphony-loco {fold} seed {seed}: accuracy {r['accuracy']:.4f} kappa {r['kappa']:.4f} macro-F1 {r['macro_f1']:.4f}", file=sys.stderr)
            runs.append(r)
    mean = {k: float(np.mean([r[k] for r in runs])) for k in ["accuracy", "kappa", "macro_f1"]}
    per_seed = [float(np.mean([r["accuracy"] for r in runs if r["seed"] == s])) for s in range(seeds)]
    return {"task": "symphony-loco", "preset": "no_new_identity", "runs": runs, "mean": mean, "fold_mean_accuracy_per_seed": per_seed}


def pancreas_novel(seeds, log_base):
    xin, wang = load("pancreas_xin.h5ad", log_base), load("pancreas_wang.h5ad", log_base)
    genes = [g for g in xin.var_names if g in set(wang.var_names)]
    ad = anndata.concat([xin[:, genes], wang[:, genes]], join="inner", index_unique="-")
    query = np.r_[np.zeros(xin.n_obs, bool), np.ones(wang.n_obs, bool)]
    shared = {"alpha", "beta", "gamma", "delta"}
    truth = wang.obs["cell_type"].to_numpy()
    is_shared = np.array([t in shared for t in truth])
    runs = []
    for seed in range(seeds):
        pred, conf, secs = transfer(ad, query, "new_identity_discovery", seed)
        r = {"seed": seed, "n_genes": len(genes), "shared_accuracy": float(np.mean(pred[is_shared] == truth[is_shared])),
             "novel_auroc": float(roc_auc_score(~is_shared, 1.0 - conf)), "train_seconds": secs}
        print(f"reference pancreas-novel seed {seed}: shared-type accuracy {r['shared_accuracy']:.4f}, novel AUROC {r['novel_auroc']:.4f}", file=sys.stderr)
        runs.append(r)
    mean = {k: float(np.mean([r[k] for r in runs])) for k in ["shared_accuracy", "novel_auroc"]}
    return {"task": "pancreas-novel", "preset": "new_identity_discovery", "inverse": "expm1" if log_base == np.e else "2^x - 1", "runs": runs, "mean": mean}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tasks", nargs="*", default=["symphony-loco", "pancreas-novel"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--pancreas-log2", action="store_true", help="invert the pancreas files' log2 with 2^x − 1 (the task definition: expm1)")
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    result = {"implementation": "scNym 0.4.0 (Python, torch " + torch.__version__ + ")", "seeds": args.seeds}
    if "symphony-loco" in args.tasks:
        result["symphony-loco"] = symphony_loco(args.seeds)
    if "pancreas-novel" in args.tasks:
        result["pancreas-novel"] = pancreas_novel(args.seeds, 2.0 if args.pancreas_log2 else np.e)
    for k in ["symphony-loco", "pancreas-novel"]:
        if k in result:
            print(f"reference {k} mean over {args.seeds} seeds: {result[k]['mean']}", file=sys.stderr)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()

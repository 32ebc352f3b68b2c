#!/usr/bin/env python3
"""The scanpy-side figures docs/celltypist.md quotes beside sclabel's over-clustering (measured
2026-12-05 with scanpy 1.11.5, celltypist 1.7.1; the venv of scripts/make-celltypist-fixtures.py):

1. PBMC 3k (www/data/pbmc3k_counts.h5ad), CellTypist's over-clustering pipeline (genes in >= 5
   cells, 2,500 HVGs, scale to 10, 50 PCs, 10 neighbours, Leiden igraph resolution 5, 2
   iterations) with seeds 0, 1, 2: the adjusted Rand index between seeds (how much scanpy varies
   against itself), and the fixture's clusters against seed 0; then the accuracy of the best
   match and of CellTypist's vote (tests/fixtures/celltypist/pbmc3k_lr.majority.csv) against
   ../shared's cell types.
2. symphony-loco's three queries (../shared pbmc_symphony_3chemistries.h5ad, one chemistry each):
   the same pipeline, and the accuracy of voting the TRUE labels within its clusters — the
   ceiling for any majority vote there.

    /tmp/ct/bin/python scripts/celltypist-scanpy-checks.py
"""
import os
import warnings

import anndata as ad
import pandas as pd
import scanpy as sc
from sklearn.metrics import adjusted_rand_score

warnings.filterwarnings("ignore")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "data")


def over_cluster_graph(a):
    b = a.copy()
    sc.pp.filter_genes(b, min_cells=5)
    sc.pp.highly_variable_genes(b, n_top_genes=min(2500, b.n_vars))
    b = b[:, b.var.highly_variable].copy()
    sc.pp.scale(b, max_value=10)
    sc.pp.pca(b, n_comps=50)
    sc.pp.neighbors(b, n_neighbors=10, n_pcs=50)
    return b


a = ad.read_h5ad(os.path.join(ROOT, "www", "data", "pbmc3k_counts.h5ad"))
a.var_names_make_unique()
sc.pp.normalize_total(a, target_sum=1e4)
sc.pp.log1p(a)
b = over_cluster_graph(a)
for seed in [0, 1, 2]:
    sc.tl.leiden(b, resolution=5, flavor="igraph", n_iterations=2, random_state=seed, key_added=f"l{seed}")
fixture = pd.read_csv(os.path.join(ROOT, "tests", "fixtures", "celltypist", "pbmc3k_lr.majority.csv"), index_col=0)
print("PBMC 3k, ARI seed 0 vs 1:", round(adjusted_rand_score(b.obs.l0, b.obs.l1), 3),
      "0 vs 2:", round(adjusted_rand_score(b.obs.l0, b.obs.l2), 3),
      "fixture vs seed 0:", round(adjusted_rand_score(fixture.over_clustering.loc[b.obs_names], b.obs.l0), 3))
truth = ad.read_h5ad(os.path.join(SHARED, "pbmc3k_raw_labeled.h5ad")).obs.cell_type.astype(str)
common = fixture.index.intersection(truth.index)
print("accuracy: best match", round((fixture.predicted_labels.loc[common] == truth.loc[common]).mean(), 3),
      "CellTypist's vote", round((fixture.majority_voting.loc[common] == truth.loc[common]).mean(), 3))

s = ad.read_h5ad(os.path.join(SHARED, "pbmc_symphony_3chemistries.h5ad"))
for fold in ["3pv1", "3pv2", "5p"]:
    q = over_cluster_graph(s[s.obs.donor == fold].copy())
    sc.tl.leiden(q, resolution=5, flavor="igraph", n_iterations=2, key_added="oc")
    t = q.obs.cell_type.astype(str)
    vote = t.groupby(q.obs.oc).agg(lambda v: v.value_counts().index[0])
    print(f"symphony {fold}: {q.n_obs} cells, {q.obs.oc.nunique()} clusters, true-label vote accuracy",
          round((q.obs.oc.map(vote).astype(str) == t).mean(), 4))

#!/usr/bin/env python3
"""Makes the CellTypist test fixtures in tests/fixtures/celltypist/: small models trained with
PyPI's celltypist on ../shared/data, and CellTypist's own predictions with them.

Needs a python with celltypist (1.7.1 was used, with scikit-learn 1.5.2: with scikit-learn 1.9.1
celltypist 1.7.1 fails, passing LogisticRegression a `multi_class` it no longer takes), and
../shared/data and www/data/pbmc3k_counts.h5ad (scripts/setup.sh). Run from the repository root:

    python -m venv /tmp/ct && /tmp/ct/bin/pip install celltypist==1.7.1 scikit-learn==1.5.2
    /tmp/ct/bin/python scripts/make-celltypist-fixtures.py
    # the numpy 1 layout (pickles that name numpy.core rather than numpy._core):
    python -m venv /tmp/ct1 && /tmp/ct1/bin/pip install "numpy<2" scikit-learn==1.5.2 scanpy==1.10.4 "anndata<0.11" celltypist==1.7.1
    /tmp/ct1/bin/python scripts/make-celltypist-fixtures.py

Writes, for each model <name> (suffixed _np1 when run under numpy 1):
  <name>.pkl           the model file, as celltypist's Model.write saves it
  <name>.expected.csv  CellTypist's annotate() on the first 300 cells of www/data/pbmc3k_counts.h5ad
                       (ln(CP10k+1) over all genes, as CellTypist asks): cell, predicted_labels
                       (best match), prob_match (majority_voting off, mode 'prob match',
                       p_thres 0.5), conf_score, then the probability of each class
and, under numpy 2, with the committed pbmc3k_lr.pkl:
  pbmc3k_lr.majority.csv  annotate(majority_voting=True) of all 2,700 cells (scanpy's neighbours,
                       Leiden over-clustering at CellTypist's resolution): cell, predicted_labels,
                       over_clustering, majority_voting
CELLTYPIST_ONLY=majority writes only that file (the models and their predictions stay as they are).
"""
import os
import sys
import warnings

import anndata as ad
import numpy as np
import scanpy as sc
import celltypist

warnings.filterwarnings("ignore")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.environ.get("CELLTYPIST_FIXTURES", os.path.join(ROOT, "tests", "fixtures", "celltypist"))
N_CELLS = 300


def lognorm(a):
    a = a.copy()
    a.var_names_make_unique()
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    return a


labelled = lognorm(ad.read_h5ad(os.path.join(ROOT, "..", "shared", "data", "pbmc3k_raw_labeled.h5ad")))
sc.pp.highly_variable_genes(labelled, n_top_genes=300)
train = labelled[:, labelled.var.highly_variable].copy()
query = lognorm(ad.read_h5ad(os.path.join(ROOT, "www", "data", "pbmc3k_counts.h5ad"))[:N_CELLS])
# Dense: celltypist 1.7.1 fails on a sparse query with a model scaled without the mean (it assigns
# into the scaled coo_matrix); the values are the same either way.
query.X = np.asarray(query.X.todense())

SUFFIX = "_np1" if np.__version__.startswith("1.") else ""
MODELS = {
    # LogisticRegression (CellTypist's default), scaled with the mean
    "pbmc3k_lr": dict(use_SGD=False, with_mean=True, max_iter=200),
    # SGDClassifier (log loss), scaled without the mean (sparse-friendly)
    "pbmc3k_sgd_nomean": dict(use_SGD=True, with_mean=False, max_iter=200),
}
for name, kwargs in (MODELS.items() if os.environ.get("CELLTYPIST_ONLY") != "majority" else []):
    name += SUFFIX
    model = celltypist.train(train, labels="cell_type", n_jobs=1, check_expression=False, **kwargs)
    path = os.path.join(OUT, f"{name}.pkl")
    model.write(path)
    result = celltypist.annotate(query, model=path, mode="prob match", p_thres=0.5)
    probs = result.probability_matrix
    labels = result.predicted_labels
    best = celltypist.annotate(query, model=path, mode="best match").predicted_labels
    with open(os.path.join(OUT, f"{name}.expected.csv"), "w") as f:
        f.write(",".join(["cell", "predicted_labels", "prob_match", "conf_score", *[f"p:{c}" for c in probs.columns]]) + "\n")
        for cell in query.obs_names:
            p = probs.loc[cell].to_numpy()
            f.write(",".join([cell, best.loc[cell, "predicted_labels"], labels.loc[cell, "predicted_labels"], repr(float(p.max())), *[repr(float(v)) for v in p]]) + "\n")
    print(f"{name}: {model.classifier.__class__.__name__}, {len(model.cell_types)} types × {len(model.features)} genes, numpy {np.__version__}")

if not SUFFIX:
    full = lognorm(ad.read_h5ad(os.path.join(ROOT, "www", "data", "pbmc3k_counts.h5ad")))
    full.X = np.asarray(full.X.todense())
    voted = celltypist.annotate(full, model=os.path.join(OUT, "pbmc3k_lr.pkl"), majority_voting=True).predicted_labels
    with open(os.path.join(OUT, "pbmc3k_lr.majority.csv"), "w") as f:
        f.write("cell,predicted_labels,over_clustering,majority_voting\n")
        for cell in full.obs_names:
            r = voted.loc[cell]
            f.write(f"{cell},{r['predicted_labels']},{r['over_clustering']},{r['majority_voting']}\n")
    print(f"majority voting: {voted['over_clustering'].nunique()} clusters, scanpy {sc.__version__}")

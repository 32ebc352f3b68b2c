#!/usr/bin/env python3
"""Makes the AnnData-Zarr test fixtures in tests/fixtures/zarr/ from the shared .h5ad files.

Needs python3 with anndata 0.12 (zarr 3) and ../shared/data/; neither is needed to run the tests,
which use the committed output. Run from the repository root:

    python3 scripts/make-zarr-fixtures.py

Writes (see tests/fixtures/zarr/README.md):
  pancreas_wang.v2.zarr/          zarr v2 directory, CSR X re-chunked small so readers loop
  pancreas_wang.v3.zarr.zip       zarr v3 (anndata defaults) zipped with entries at the root
  pancreas_wang_csc.v2.zarr.zip   zarr v2, CSC X, zipped with deflate under a top folder (as `zip -r`)
  pbmc68k_reduced.v3.zarr/        zarr v3 directory, 175 of the 700 cells, dense X in 40 x 200
                                  chunks, CSR raw, plus bool / string / nullable obs columns
  expected.json                   what a reader must find in each (names, obs values, checksums)
"""
import json
import os
import shutil
import sys
import warnings
import zipfile

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import zarr

warnings.filterwarnings("ignore")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "data")
OUT = os.path.join(ROOT, "tests", "fixtures", "zarr")


def write(adata, path, fmt, **kwargs):
    """anndata's own writer, in zarr format `fmt` (2 or 3)."""
    ad.settings.zarr_write_format = fmt
    ad.settings.allow_write_nullable_strings = True
    if os.path.exists(path):
        shutil.rmtree(path)
    adata.write_zarr(path, **kwargs)


def rechunk(path, array, chunks):
    """Rewrites one array of a written store with smaller chunks (same data, attrs, codecs)."""
    group = zarr.open_group(path, mode="r+")
    old = group[array]
    data, attrs = old[:], dict(old.attrs)
    del group[array]
    new = group.create_array(array, shape=data.shape, dtype=data.dtype, chunks=chunks)
    new[:] = data
    new.attrs.update(attrs)


def zip_dir(src, dst, prefix="", method=zipfile.ZIP_STORED):
    """Zips a store directory; `prefix` puts every entry under a top folder, as `zip -r` does."""
    with zipfile.ZipFile(dst, "w", compression=method) as z:
        for base, _, files in sorted(os.walk(src)):
            for f in sorted(files):
                full = os.path.join(base, f)
                z.write(full, prefix + os.path.relpath(full, src).replace(os.sep, "/"))


def extra_obs(adata):
    """Obs columns in the encodings the pancreas / pbmc files lack, derived from real columns."""
    o = adata.obs
    first = o.columns[0]
    labels = o[first].astype(str).to_numpy()
    o["is_first_class"] = labels == labels[0]  # bool array
    o["barcode"] = o.index.to_numpy().astype(str)  # string-array (not converted to categorical)
    m = adata.raw.X if adata.raw is not None else adata.X
    counts = np.asarray((m != 0).sum(1)).ravel()  # stored genes per cell
    n = pd.array(counts.astype("int32"), dtype="Int32")
    n[::7] = pd.NA
    o["n_stored_nullable"] = n  # nullable-integer
    flag = pd.array(counts > np.median(counts), dtype="boolean")
    flag[::5] = pd.NA
    o["many_genes_nullable"] = flag  # nullable-boolean with missing values
    s = pd.array(labels, dtype="string")
    s[::6] = pd.NA
    o["label_nullable"] = s  # nullable-string-array with missing values


def csr_checksum(m):
    """nnz, sum of values, sum of value * (col + 1) * (row + 1), all in float64."""
    m = sp.csr_matrix(m) if not sp.issparse(m) else m.tocsr()
    m.eliminate_zeros()
    coo = m.tocoo()
    v = coo.data.astype(np.float64)
    return {"nnz": int(m.nnz), "sum": float(v.sum()), "weighted": float((v * (coo.col + 1.0) * (coo.row + 1.0)).sum())}


def obs_values(col):
    """Each value as the wasm Dataset.obs() reports it: strings, null where missing; numbers as floats."""
    if isinstance(col.dtype, pd.CategoricalDtype) or col.dtype == object or isinstance(col.dtype, pd.StringDtype):
        return [None if pd.isna(v) else str(v) for v in col.astype(object)]
    if col.dtype == bool:
        return ["True" if v else "False" for v in col]
    if isinstance(col.dtype, pd.BooleanDtype):
        return [None if pd.isna(v) else ("True" if v else "False") for v in col]
    return [None if pd.isna(v) else float(v) for v in col]


def kind(col):
    """The kind Dataset.summary() gives a column (missing values make nullable bools/strings categorical)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return "categorical"
    if isinstance(col.dtype, (pd.BooleanDtype, pd.StringDtype)):
        return "categorical" if col.isna().any() else ("bool" if isinstance(col.dtype, pd.BooleanDtype) else "string")
    if col.dtype == bool:
        return "bool"
    if col.dtype == object:
        return "string"
    return "numeric"


def expected(adata, source, rows=None):
    return {
        "source": source,
        "rows": rows,
        "n_obs": adata.n_obs,
        "n_vars": adata.n_vars,
        "obs_names": list(map(str, adata.obs_names)),
        "var_names": list(map(str, adata.var_names)),
        "obs": {c: {"kind": kind(adata.obs[c]), "values": obs_values(adata.obs[c])} for c in adata.obs.columns},
        "x": csr_checksum(adata.X),
        "raw": None if adata.raw is None else {"var_names": list(map(str, adata.raw.var_names)), "x": csr_checksum(adata.raw.X)},
    }


def size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(b, f)) for b, _, fs in os.walk(path) for f in fs)


def main():
    if not os.path.isdir(SHARED):
        sys.exit(f"{SHARED} not found: the shared data sets sit beside the project")
    os.makedirs(OUT, exist_ok=True)
    tmp = os.path.join(OUT, "_tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    exp = {}

    wang = ad.read_h5ad(os.path.join(SHARED, "pancreas_wang.h5ad"))

    # 1. v2 directory; X's arrays re-chunked (data/indices 10 000, indptr 128) so every reader
    #    loop runs several times and ends on a partial chunk.
    name = "pancreas_wang.v2.zarr"
    write(wang, os.path.join(OUT, name), 2)
    for part, chunks in [("X/data", 10000), ("X/indices", 10000), ("X/indptr", 128)]:
        rechunk(os.path.join(OUT, name), part, (chunks,))
    os.remove(os.path.join(OUT, name, ".zmetadata"))  # stale after re-chunking; readers don't need it
    exp[name] = expected(wang, "pancreas_wang.h5ad")

    # 2. v3 with anndata's defaults, zipped as zarr's ZipStore does (stored, entries at the root).
    name = "pancreas_wang.v3.zarr.zip"
    write(wang, os.path.join(tmp, "w3.zarr"), 3)
    zip_dir(os.path.join(tmp, "w3.zarr"), os.path.join(OUT, name))
    exp[name] = expected(wang, "pancreas_wang.h5ad")

    # 3. CSC X in v2 with the extra obs encodings, zipped with deflate under a top folder.
    name = "pancreas_wang_csc.v2.zarr.zip"
    csc = wang.copy()
    csc.X = sp.csc_matrix(csc.X)
    extra_obs(csc)
    write(csc, os.path.join(tmp, "csc.zarr"), 2, convert_strings_to_categoricals=False)
    rechunk(os.path.join(tmp, "csc.zarr"), "X/indptr", (50,))
    zip_dir(os.path.join(tmp, "csc.zarr"), os.path.join(OUT, name), prefix="pancreas_wang_csc.zarr/", method=zipfile.ZIP_DEFLATED)
    exp[name] = expected(csc, "pancreas_wang.h5ad")

    # 4. Dense X and .raw: every 4th cell of pbmc68k_reduced (keeps the fixture under 1 MB); 2-D
    #    chunks of 40 x 200, so rows come from several column chunks, with partial edge chunks.
    name = "pbmc68k_reduced.v3.zarr"
    pbmc = ad.read_h5ad(os.path.join(SHARED, "pbmc68k_reduced.h5ad"))
    rows = list(range(0, pbmc.n_obs, 4))
    small = pbmc[rows].copy()
    small.obsm, small.obsp, small.varm, small.uns = {}, {}, {}, {}
    extra_obs(small)
    write(small, os.path.join(OUT, name), 3, chunks=(40, 200), convert_strings_to_categoricals=False)
    exp[name] = expected(small, "pbmc68k_reduced.h5ad", rows)

    shutil.rmtree(tmp)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(exp, f, separators=(",", ":"))
    for n in sorted(exp) + ["expected.json"]:
        print(f"{n}: {size(os.path.join(OUT, n))} bytes")


if __name__ == "__main__":
    main()

"""Writes the seeds tests/fuzz.rs mutates (tests/fixtures/fuzz/):
- scnym_small.pt: a small torch.save checkpoint with scNym's state-dict layout (3 hidden layers of
  8 units over 12 genes, 3 classes) for the checkpoint importer. torch is not needed: the pickle
  names torch's classes as torch.save does.
- csr_gzip.h5ad, dense.h5ad: small AnnData files written with h5py the way anndata writes them
  (version-0 superblock, vlen strings in global heaps, categorical / string / numeric obs, `.raw`,
  obsm; CSR X chunked and gzip-compressed, or dense contiguous X) for the .h5ad reader and export.
- ../soft_link_x.h5ad: dense.h5ad with X as a soft link (tests/h5ad_layouts.rs).

    python3 scripts/make-fuzz-seeds.py   # needs numpy and h5py for the .h5ad seeds
"""
import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

# Stand-ins for the torch names the pickle refers to (pickle records module + name only).
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")


class FloatStorage:
    pass


class LongStorage:
    pass


FloatStorage.__module__ = LongStorage.__module__ = "torch"
torch.FloatStorage, torch.LongStorage = FloatStorage, LongStorage


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
sys.modules["torch"], sys.modules["torch._utils"] = torch, torch_utils


class Tensor:
    def __init__(self, key, kind, shape, values):
        self.key, self.kind, self.shape, self.values = key, kind, shape, values

    def __reduce__(self):
        stride = tuple(int(__import__("math").prod(self.shape[i + 1:])) for i in range(len(self.shape)))
        return (_rebuild_tensor_v2, (StorageRef(self), 0, tuple(self.shape), stride, False, collections.OrderedDict()))


class StorageRef:
    def __init__(self, t):
        self.t = t


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            t = obj.t
            return ("storage", t.kind, t.key, "cpu", len(t.values))
        return None


def main():
    genes, hidden, classes = 12, 8, 3
    state = collections.OrderedDict()
    storages = {}

    def add(name, shape, kind=FloatStorage, fill=None):
        n = 1
        for s in shape:
            n *= s
        key = str(len(storages))
        values = fill if fill is not None else [((i * 37 + len(storages) * 11) % 19 - 9) / 20 for i in range(n)]
        storages[key] = struct.pack(f"<{len(values)}{'f' if kind is FloatStorage else 'q'}", *values)
        state[name] = Tensor(key, kind, shape, values)

    for layer, width_in in [(0, genes), (4, hidden), (8, hidden)]:
        add(f"embed.{layer}.weight", (hidden, width_in))
        add(f"embed.{layer}.bias", (hidden,))
        bn = layer + 1
        add(f"embed.{bn}.weight", (hidden,), fill=[1.0] * hidden)
        add(f"embed.{bn}.bias", (hidden,), fill=[0.0] * hidden)
        add(f"embed.{bn}.running_mean", (hidden,), fill=[0.1] * hidden)
        add(f"embed.{bn}.running_var", (hidden,), fill=[1.5] * hidden)
        add(f"embed.{bn}.num_batches_tracked", (), kind=LongStorage, fill=[7])
    add("classif.0.weight", (classes, hidden))
    add("classif.0.bias", (classes,))

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(state)
    out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "fuzz", "scnym_small.pt")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("scnym_small/data.pkl", buf.getvalue())
        z.writestr("scnym_small/byteorder", "little")
        for key, raw in storages.items():
            z.writestr(f"scnym_small/data/{key}", raw)
        z.writestr("scnym_small/version", "3\n")
    print(out, os.path.getsize(out), "bytes")
    write_h5ad_seeds(os.path.dirname(out))


def write_h5ad_seeds(folder):
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    n_obs, n_vars = 40, 30
    counts = rng.poisson(0.6, size=(n_obs, n_vars)).astype(np.float32)
    counts[3] = 0  # a cell with no counts
    vlen = h5py.string_dtype("utf-8")

    def attrs(node, kind, version):
        node.attrs["encoding-type"] = kind
        node.attrs["encoding-version"] = version

    def frame(g, names, columns):
        attrs(g, "dataframe", "0.2.0")
        g.attrs["_index"] = "_index"
        # anndata writes an empty column-order as an empty float array, a non-empty one as strings.
        g.attrs["column-order"] = np.array(list(columns), dtype=vlen) if columns else np.array([], dtype=np.float64)
        g.create_dataset("_index", data=np.array(names, dtype=object), dtype=vlen)
        attrs(g["_index"], "string-array", "0.2.0")
        for name, col in columns.items():
            if isinstance(col, tuple):
                codes, cats = col
                c = g.create_group(name)
                attrs(c, "categorical", "0.2.0")
                c.attrs["ordered"] = False
                c.create_dataset("codes", data=np.asarray(codes, dtype=np.int8))
                c.create_dataset("categories", data=np.array(cats, dtype=object), dtype=vlen)
                attrs(c["categories"], "string-array", "0.2.0")
            elif col.dtype == object:
                g.create_dataset(name, data=col, dtype=vlen)
                attrs(g[name], "string-array", "0.2.0")
            else:
                g.create_dataset(name, data=col)
                attrs(g[name], "array", "0.2.0")

    def csr(g, m, **kw):
        attrs(g, "csr_matrix", "0.1.0")
        g.attrs["shape"] = np.array(m.shape, dtype=np.int64)
        rows, cols = np.nonzero(m)
        indptr = np.concatenate([[0], np.cumsum(np.count_nonzero(m, axis=1))]).astype(np.int32)
        g.create_dataset("data", data=m[rows, cols], **kw)
        g.create_dataset("indices", data=cols.astype(np.int32), **kw)
        g.create_dataset("indptr", data=indptr)

    obs = {
        "cell_type": ([k % 3 for k in range(n_obs)], ["B", "NK", "T"]),
        "batch": np.array([f"b{k % 2}" for k in range(n_obs)], dtype=object),
        "n_counts": counts.sum(1).astype(np.float64),
    }
    for name, dense in [("csr_gzip.h5ad", False), ("dense.h5ad", True)]:
        with h5py.File(os.path.join(folder, name), "w") as f:
            attrs(f, "anndata", "0.1.0")
            if dense:
                f.create_dataset("X", data=np.log1p(counts))
                attrs(f["X"], "array", "0.2.0")
            else:
                csr(f.create_group("X"), counts, compression="gzip", chunks=(64,))
            frame(f.create_group("obs"), [f"cell{k}" for k in range(n_obs)], obs)
            frame(f.create_group("var"), [f"GENE{j}" for j in range(n_vars)], {})
            raw = f.create_group("raw")
            attrs(raw, "raw", "0.1.0")
            csr(raw.create_group("X"), counts)
            frame(raw.create_group("var"), [f"GENE{j}" for j in range(n_vars)], {})
            obsm = f.create_group("obsm")
            attrs(obsm, "dict", "0.1.0")
            obsm.create_dataset("X_pca", data=rng.normal(size=(n_obs, 2)).astype(np.float32))
            attrs(obsm["X_pca"], "array", "0.2.0")
            for g in ["uns", "varm", "obsp", "varp", "layers"]:
                attrs(f.create_group(g), "dict", "0.1.0")
        print(os.path.join(folder, name), os.path.getsize(os.path.join(folder, name)), "bytes")
    # tests/fixtures/soft_link_x.h5ad: dense.h5ad with X moved to /X_data and X a soft link to it
    # (anndata follows it; sclabel refuses it by name).
    import shutil
    soft = os.path.join(folder, "..", "soft_link_x.h5ad")
    shutil.copy(os.path.join(folder, "dense.h5ad"), soft)
    with h5py.File(soft, "a") as f:
        f.move("X", "X_data")
        f["X"] = h5py.SoftLink("/X_data")
    print(soft, os.path.getsize(soft), "bytes")


main()

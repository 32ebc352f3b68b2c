//! AnnData `.h5ad` reader in pure Rust (on `hdf5-pure`, so it reads from bytes and builds for wasm).
//!
//! What it reads:
//! - `X` as a dense 2-D dataset, or as a sparse group (`encoding-type` = `csr_matrix` /
//!   `csc_matrix`, or the older `h5sparse_format` = `csr` / `csc`) with `data`, `indices`, `indptr`
//!   and a `shape` (or `h5sparse_shape`) attribute. CSC is converted to CSR. Values of any float or
//!   integer type become `f32`; `indices` / `indptr` may be any integer width.
//! - `.raw`: the group `raw` (`raw/X`, `raw/var`), or the old root-level `raw.X` / `raw.var`.
//! - `obs` (all columns) and `var` (names only), as a dataframe group (`_index` attribute naming
//!   the index column, `column-order`) or as an old compound dataset (field `index`).
//!   Columns: categoricals (group with `categories` + `codes`; or, in old files, a codes dataset
//!   whose categories sit in `obs/__categories/<col>` or `uns/<col>_categories`), strings (fixed-
//!   and variable-length), numbers, booleans, and the nullable integer / boolean / string arrays.
//!   Columns in encodings it does not know are skipped.
//!
//! It never panics on bad input: every value taken from the file is checked before it sizes an
//! allocation or indexes a slice, and hdf5-pure errors become [`SclabelError`]s.
use std::collections::HashMap;

use hdf5_pure::{
    AttrValue, Dataset, Datatype, DatatypeByteOrder, File, FileAccessProperties, Group, MetadataCacheConfig, StringPadding, VlenStringReadOptions,
};
pub use hdf5_pure::{FormatError as SourceError, ReadSeekSource, Source};

use crate::data::anndata::{categorical_from_strings, swap_var_names, AnnData, Column, ObsTable, Raw};
use crate::data::matrix::{csc_to_csr, CsrMatrix};
use crate::data::normalize::ValueStats;
use crate::error::{Result, SclabelError};

/// Largest decoded size allowed per byte of file (deflate tops out near 1032:1). A dataset that
/// claims more is corrupt, and refusing it keeps a forged shape from asking for terabytes.
const MAX_INFLATION: u64 = 2048;
/// Decoded-size allowance that small files get regardless of their length.
const MIN_DECODED_BUDGET: u64 = 1 << 26;
/// Values per window when a dense matrix is converted to CSR a block of rows at a time.
const DENSE_WINDOW_VALUES: u64 = 1 << 22;
/// Elements per window when 64-bit integers are narrowed to `u32`.
const INT_WINDOW: u64 = 1 << 20;
/// Metadata cache for sources read on demand (each miss is a callback to JS or a disk read).
const SOURCE_METADATA_CACHE: usize = 8 << 20;

/// Reads an AnnData `.h5ad` file from its bytes. `file_name` is used in error messages only.
///
/// hdf5-pure parses from an owned buffer, so this copies `bytes`; a caller that already owns a
/// `Vec<u8>` it no longer needs can use [`read_h5ad_owned`] and skip the copy.
pub fn read_h5ad(bytes: &[u8], file_name: &str) -> Result<AnnData> {
    read_h5ad_owned(bytes.to_vec(), file_name)
}

/// [`read_h5ad`] taking ownership of the bytes (no copy of the file is made).
pub fn read_h5ad_owned(bytes: Vec<u8>, file_name: &str) -> Result<AnnData> {
    Reader::open(bytes, file_name)?.read()
}

/// Reads an `.h5ad` through a [`Source`] (a file on disk, a browser `Blob`, …) without holding the
/// whole file: peak memory is the decoded AnnData plus one dataset's worth of decoding.
pub fn read_h5ad_source<S: Source + Send + Sync + 'static>(source: S, file_name: &str) -> Result<AnnData> {
    Reader::open_source(source, file_name)?.read()
}

type Attrs = HashMap<String, AttrValue>;

#[derive(Clone)]
struct Reader {
    file: File,
    name: String,
    /// Most bytes any one dataset may decode to.
    budget: u64,
    len: usize,
}

/// A group with its member names listed once.
struct Node {
    group: Group,
    path: String,
    datasets: Vec<String>,
    groups: Vec<String>,
}

impl Node {
    fn has_dataset(&self, name: &str) -> bool {
        self.datasets.iter().any(|n| n == name)
    }
    fn has_group(&self, name: &str) -> bool {
        self.groups.iter().any(|n| n == name)
    }
    fn child(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.path)
        }
    }
}

/// What a dataset declares, checked against the decode budget before anything is read.
struct Meta {
    shape: Vec<u64>,
    dtype: Datatype,
    /// Number of elements (product of `shape`).
    n: u64,
}

/// An index column and, when asked for, the other columns of a dataframe.
struct Frame {
    index: Vec<String>,
    columns: Vec<(String, Column)>,
}

/// Which sparse layout a group holds.
#[derive(Clone, Copy, PartialEq)]
enum Sparse {
    Csr,
    Csc,
}

impl Reader {
    fn open(bytes: Vec<u8>, file_name: &str) -> Result<Self> {
        let invalid = |reason: String| SclabelError::InvalidFile { file: file_name.to_string(), reason };
        if bytes.is_empty() {
            return Err(invalid("the file is empty".into()));
        }
        if !hdf5_pure::is_hdf5_bytes(&bytes) {
            return Err(invalid(format!("no HDF5 signature in its {} bytes (not an HDF5 file)", bytes.len())));
        }
        let len = bytes.len() as u64;
        let file = File::from_bytes(bytes).map_err(|e| invalid(format!("cannot open as HDF5: {e}")))?;
        Self::with_file(file, len, file_name)
    }

    /// Reads through `source` on demand: only metadata and the datasets read are ever resident.
    fn open_source<S: Source + Send + Sync + 'static>(source: S, file_name: &str) -> Result<Self> {
        let invalid = |reason: String| SclabelError::InvalidFile { file: file_name.to_string(), reason };
        let len = source.len();
        // The signature sits at 0 or, after a user block (anndata writes one), at 512, 1024, 2048 …
        let mut found = false;
        let mut offset = 0u64;
        while offset + 8 <= len && !found {
            let mut head = [0u8; 8];
            source.read_at(offset, &mut head).map_err(|e| invalid(format!("cannot read: {e}")))?;
            found = hdf5_pure::is_hdf5_bytes(&head);
            offset = if offset == 0 { 512 } else { offset * 2 };
        }
        if len == 0 {
            return Err(invalid("the file is empty".into()));
        }
        if !found {
            return Err(invalid(format!("no HDF5 signature in its {len} bytes (not an HDF5 file)")));
        }
        let options = FileAccessProperties::new().with_metadata_cache(MetadataCacheConfig::new(SOURCE_METADATA_CACHE));
        let file = File::from_source_with_options(source, options).map_err(|e| invalid(format!("cannot open as HDF5: {e}")))?;
        Self::with_file(file, len, file_name)
    }

    fn with_file(file: File, len: u64, file_name: &str) -> Result<Self> {
        let sb = file.superblock();
        // The superblock records where the file ends; fewer bytes than that means a truncated
        // copy (an interrupted download or upload), which would otherwise fail somewhere deep.
        // The C library stores this address absolute (userblock included; see the truncation
        // check in H5Fsuper.c), so it is compared with the byte count as is.
        if sb.eof_address != u64::MAX {
            let end = sb.eof_address;
            if end > len {
                return Err(SclabelError::InvalidFile {
                    file: file_name.to_string(),
                    reason: format!("truncated: the file declares {end} bytes but only {len} are present"),
                });
            }
        }
        let budget = len.saturating_mul(MAX_INFLATION).max(MIN_DECODED_BUDGET);
        Ok(Self { file, name: file_name.to_string(), budget, len: to_usize(len) })
    }

    fn read(&self) -> Result<AnnData> {
        let root = self.node(self.file.root(), String::new())?;
        if !root.has_dataset("X") && !root.has_group("X") {
            return Err(self.unsupported(
                "X",
                "missing (the file has no X matrix: is it an AnnData .h5ad file? An X reached through an external link is not followed)".into(),
            ));
        }
        let uns = if root.has_group("uns") { Some(self.subgroup(&root, "uns")?) } else { None };

        // The names come first: their counts are what X's declared shape is checked against before
        // anything is sized from it.
        let obs = self.read_frame(&root, "obs", uns.as_ref(), true)?;
        let n_obs = obs.index.len();
        for (name, col) in &obs.columns {
            if col.len() != n_obs {
                return Err(self.unsupported(&format!("obs/{name}"), format!("{} values but obs has {n_obs} names", col.len())));
            }
        }
        let var = self.read_var(&root, uns.as_ref())?;
        let x = self.read_matrix(&root, "X", (n_obs, var.index.len()))?;
        let raw = self.read_raw(&root, n_obs)?;
        let ad = AnnData {
            x,
            obs: ObsTable { columns: obs.columns },
            obs_names: obs.index,
            var_ids: gene_id_columns(var.columns, var.index.len()),
            var_names: var.index,
            x_stats: None,
            raw,
        };
        ad.validate()?;
        Ok(ad)
    }

    // ---------------------------------------------------------------- errors

    fn invalid(&self, reason: String) -> SclabelError {
        SclabelError::InvalidFile { file: self.name.clone(), reason }
    }

    fn unsupported(&self, element: &str, reason: String) -> SclabelError {
        SclabelError::UnsupportedLayout { file: self.name.clone(), element: element.to_string(), reason }
    }

    /// Sorts an hdf5-pure error into "we don't read this layout" and "the bytes are broken".
    fn h5(&self, element: &str, e: hdf5_pure::Error) -> SclabelError {
        use hdf5_pure::{Error as E, FormatError as F};
        let layout = match &e {
            E::NotADataset(_) | E::NotAGroup(_) | E::NotANamedDatatype(_) => true,
            E::Format(f) => matches!(
                f,
                F::PathNotFound(_)
                    | F::TypeMismatch { .. }
                    | F::UnsupportedFilter(_)
                    | F::UnsupportedVirtualLayout
                    | F::UnsupportedExternalStorage
                    | F::UnsupportedZfp(_)
                    | F::UnsupportedFilteredHeapObject
                    | F::UnsupportedSohmReference
                    | F::VariableLengthElementLimitExceeded { .. }
                    | F::VariableLengthByteLimitExceeded { .. }
            ),
            _ => false,
        };
        // A member whose link holds no object address: hdf5-pure follows hard links only, and
        // reads a soft link's undefined address (all ones) as an offset past the end.
        if matches!(&e, E::Format(F::UnexpectedEof { expected, .. }) if *expected as u64 >= u64::MAX / 2) {
            return self.unsupported(
                element,
                "a member is linked without an object address — a soft or external link? sclabel reads hard links only: copy the linked object in its place (h5py: del f[name]; f.copy(target, name))".into(),
            );
        }
        if layout {
            self.unsupported(element, e.to_string())
        } else {
            self.invalid(format!("while reading '{element}': {e}"))
        }
    }

    // ------------------------------------------------------------ navigation

    fn node(&self, group: Group, path: String) -> Result<Node> {
        let shown = if path.is_empty() { "/" } else { path.as_str() };
        let datasets = group.datasets().map_err(|e| self.h5(shown, e))?;
        let groups = group.groups().map_err(|e| self.h5(shown, e))?;
        Ok(Node { group, path, datasets, groups })
    }

    fn subgroup(&self, parent: &Node, name: &str) -> Result<Node> {
        let path = parent.child(name);
        let g = parent.group.group(name).map_err(|e| self.h5(&path, e))?;
        self.node(g, path)
    }

    fn dataset(&self, parent: &Node, name: &str) -> Result<Dataset> {
        parent.group.dataset(name).map_err(|e| self.h5(&parent.child(name), e))
    }

    fn group_attrs(&self, node: &Node) -> Result<Attrs> {
        node.group.attrs().map_err(|e| self.h5(&node.path, e))
    }

    fn meta(&self, ds: &Dataset, path: &str) -> Result<Meta> {
        let shape = ds.shape().map_err(|e| self.h5(path, e))?;
        let dtype = ds.datatype().map_err(|e| self.h5(path, e))?;
        let n =
            shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(|| self.invalid(format!("'{path}' declares an impossible shape {shape:?}")))?;
        let bytes = n.checked_mul(u64::from(dtype.type_size().max(1)));
        if bytes.is_none_or(|b| b > self.budget) || usize::try_from(n).is_err() {
            return Err(self.invalid(format!("'{path}' declares shape {shape:?} of {}, more than a {}-byte file can hold", describe(&dtype), self.len)));
        }
        self.check_chunks_in_file(ds, path, &shape)?;
        Ok(Meta { shape, dtype, n })
    }

    // ------------------------------------------------------------- matrices

    /// Reads `parent/name` as a matrix that must be `expected` = (cells, genes), the counts of the
    /// names read before it.
    fn read_matrix(&self, parent: &Node, name: &str, expected: (usize, usize)) -> Result<CsrMatrix> {
        let path = parent.child(name);
        if parent.has_dataset(name) {
            let ds = self.dataset(parent, name)?;
            return self.read_dense(&ds, &path, expected);
        }
        if parent.has_group(name) {
            let node = self.subgroup(parent, name)?;
            return self.read_sparse(&node, expected);
        }
        Err(self.unsupported(&path, "missing".into()))
    }

    /// Refuses a declared matrix shape that disagrees with the obs / var names.
    fn check_shape(&self, path: &str, n_rows: u64, n_cols: u64, expected: (usize, usize)) -> Result<(usize, usize)> {
        if (n_rows, n_cols) != (expected.0 as u64, expected.1 as u64) {
            return Err(self.unsupported(path, format!("shape {n_rows} × {n_cols} does not match the {} obs names and {} var names", expected.0, expected.1)));
        }
        Ok(expected)
    }

    fn read_dense(&self, ds: &Dataset, path: &str, expected: (usize, usize)) -> Result<CsrMatrix> {
        let meta = self.meta(ds, path)?;
        if meta.shape.len() != 2 {
            return Err(self.unsupported(path, format!("a dense matrix must be 2-D, found shape {:?}", meta.shape)));
        }
        if !is_numeric(&meta.dtype) {
            return Err(self.unsupported(path, format!("a dense matrix of {} (expected numbers)", describe(&meta.dtype))));
        }
        let (n_rows, n_cols) = (meta.shape[0], meta.shape[1]);
        let (rows, cols) = self.check_shape(path, n_rows, n_cols, expected)?;
        if n_cols > u64::from(u32::MAX) {
            return Err(self.unsupported(path, format!("{n_cols} columns is more than this reader indexes")));
        }
        let mut indptr = Vec::with_capacity(rows + 1);
        indptr.push(0u64);
        let (mut indices, mut data) = (Vec::new(), Vec::new());
        if n_rows == 0 || n_cols == 0 {
            indptr.resize(rows + 1, 0);
            return CsrMatrix::new(rows, cols, indptr, indices, data).map_err(|e| self.unsupported(path, e.to_string()));
        }
        // Whole chunks per window, so no chunk is inflated twice.
        let chunk_rows = ds.chunk_shape().ok().flatten().and_then(|c| c.first().copied()).filter(|&c| c > 0).unwrap_or(1);
        let target = (DENSE_WINDOW_VALUES / n_cols).max(1);
        let window = if target >= chunk_rows { target - target % chunk_rows } else { chunk_rows };
        let mut start = 0u64;
        while start < n_rows {
            let count = window.min(n_rows - start);
            let values = ds.read_f32_rows(start, count).map_err(|e| self.h5(path, e))?;
            if values.len() as u64 != count * n_cols {
                return Err(self.invalid(format!("'{path}': rows {start}..{} decoded to {} values, expected {}", start + count, values.len(), count * n_cols)));
            }
            for row in values.chunks_exact(cols) {
                for (j, &v) in row.iter().enumerate() {
                    if v != 0.0 {
                        indices.push(j as u32);
                        data.push(v);
                    }
                }
                indptr.push(data.len() as u64);
            }
            start += count;
        }
        CsrMatrix::new(rows, cols, indptr, indices, data).map_err(|e| self.unsupported(path, e.to_string()))
    }

    fn read_sparse(&self, node: &Node, expected: (usize, usize)) -> Result<CsrMatrix> {
        let path = node.path.as_str();
        let attrs = self.group_attrs(node)?;
        let format = attr_str(&attrs, "encoding-type").or_else(|| attr_str(&attrs, "h5sparse_format"));
        let kind = match format.as_deref() {
            Some("csr_matrix") | Some("csr") => Sparse::Csr,
            Some("csc_matrix") | Some("csc") => Sparse::Csc,
            Some(other) => return Err(self.unsupported(path, format!("a group with encoding-type '{other}' (expected csr_matrix or csc_matrix)"))),
            None => return Err(self.unsupported(path, "a group without an encoding-type (expected a csr_matrix or csc_matrix)".into())),
        };
        let shape = attrs
            .get("shape")
            .or_else(|| attrs.get("h5sparse_shape"))
            .and_then(AttrValue::to_u64s)
            .filter(|s| s.len() == 2)
            .ok_or_else(|| self.unsupported(path, "sparse matrix without a 2-element 'shape' attribute".into()))?;
        for part in ["data", "indices", "indptr"] {
            if !node.has_dataset(part) {
                return Err(self.unsupported(&node.child(part), "missing from the sparse matrix".into()));
            }
        }
        let (n_rows, n_cols) = (shape[0], shape[1]);
        let (rows, cols) = self.check_shape(path, n_rows, n_cols, expected)?;
        let (major, minor) = if kind == Sparse::Csr { (n_rows, n_cols) } else { (n_cols, n_rows) };
        if minor > u64::from(u32::MAX) + 1 {
            return Err(self.unsupported(path, format!("{minor} columns is more than this reader indexes")));
        }

        let indptr_path = node.child("indptr");
        let indptr_ds = self.dataset(node, "indptr")?;
        let indptr = self.read_offsets(&indptr_ds, &indptr_path)?;
        if major.checked_add(1) != Some(indptr.len() as u64) {
            return Err(self.unsupported(&indptr_path, format!("{} entries for a {n_rows} × {n_cols} matrix (expected {major} + 1)", indptr.len())));
        }
        // The matrix held whole: 8 bytes per stored value (CSC: twice, while it becomes CSR).
        let nnz = indptr.last().copied().unwrap_or(0);
        let whole = nnz.saturating_mul(8).saturating_add(major.saturating_add(1).saturating_mul(8));
        crate::memory::reserve(
            &format!("{} of {} ({} × {}, {nnz} stored values)", path, self.name, n_rows, n_cols),
            if kind == Sparse::Csr { whole } else { whole.saturating_mul(2) },
            "predict it without loading it (predictScnym takes the file itself and reads a block of cells at a time), load a subset of cells or genes, or use the native CLI",
        )?;
        let indices_path = node.child("indices");
        let indices = self.read_u32s(&self.dataset(node, "indices")?, &indices_path)?;
        let data_path = node.child("data");
        let data_ds = self.dataset(node, "data")?;
        let data_meta = self.meta(&data_ds, &data_path)?;
        if !is_numeric(&data_meta.dtype) {
            return Err(self.unsupported(&data_path, format!("{} (expected numbers)", describe(&data_meta.dtype))));
        }
        let data = data_ds.read_f32().map_err(|e| self.h5(&data_path, e))?;
        if indices.len() != data.len() {
            return Err(self.unsupported(path, format!("{} indices but {} values", indices.len(), data.len())));
        }
        let csr = match kind {
            Sparse::Csr => CsrMatrix::new(rows, cols, indptr, indices, data),
            Sparse::Csc => csc_to_csr(rows, cols, &indptr, &indices, &data),
        };
        csr.map_err(|e| self.unsupported(path, e.to_string()))
    }

    /// Reads a non-negative integer array (an `indptr`) as `u64`.
    fn read_offsets(&self, ds: &Dataset, path: &str) -> Result<Vec<u64>> {
        let meta = self.meta(ds, path)?;
        match int_class(&meta.dtype) {
            Some((false, _)) => ds.read_u64().map_err(|e| self.h5(path, e)),
            Some((true, _)) => {
                let v = ds.read_i64().map_err(|e| self.h5(path, e))?;
                if let Some(bad) = v.iter().find(|&&x| x < 0) {
                    return Err(self.unsupported(path, format!("negative offset {bad}")));
                }
                Ok(v.into_iter().map(|x| x as u64).collect())
            }
            None => Err(self.unsupported(path, format!("{} (expected integers)", describe(&meta.dtype)))),
        }
    }

    /// Reads a non-negative integer array (sparse `indices`) as `u32`, refusing values that don't fit.
    fn read_u32s(&self, ds: &Dataset, path: &str) -> Result<Vec<u32>> {
        let meta = self.meta(ds, path)?;
        let Some((signed, size)) = int_class(&meta.dtype) else {
            return Err(self.unsupported(path, format!("{} (expected integers)", describe(&meta.dtype))));
        };
        if size <= 4 {
            if signed {
                let v = ds.read_i32().map_err(|e| self.h5(path, e))?;
                if let Some(bad) = v.iter().find(|&&x| x < 0) {
                    return Err(self.unsupported(path, format!("negative index {bad}")));
                }
                return Ok(v.into_iter().map(|x| x as u32).collect());
            }
            return ds.read_u32().map_err(|e| self.h5(path, e));
        }
        // 64-bit: narrow a window at a time so the i64 copy never exists whole.
        let total = meta.n;
        let chunk = ds.chunk_shape().ok().flatten().and_then(|c| c.first().copied()).filter(|&c| c > 0).unwrap_or(1);
        let window = if INT_WINDOW >= chunk { INT_WINDOW - INT_WINDOW % chunk } else { chunk };
        let mut out: Vec<u32> = Vec::new();
        out.try_reserve_exact(to_usize(total)).map_err(|_| self.invalid(format!("'{path}': no memory for {total} indices")))?;
        let mut start = 0u64;
        while start < total {
            let count = window.min(total - start);
            if signed {
                let v = ds.read_i64_rows(start, count).map_err(|e| self.h5(path, e))?;
                for x in v {
                    out.push(u32::try_from(x).map_err(|_| self.unsupported(path, format!("index {x} out of range")))?);
                }
            } else {
                let v = ds.read_u64_rows(start, count).map_err(|e| self.h5(path, e))?;
                for x in v {
                    out.push(u32::try_from(x).map_err(|_| self.unsupported(path, format!("index {x} out of range")))?);
                }
            }
            start += count;
        }
        if out.len() as u64 != total {
            return Err(self.invalid(format!("'{path}' decoded to {} values, expected {total}", out.len())));
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- raw

    fn read_raw(&self, root: &Node, n_obs: usize) -> Result<Option<Raw>> {
        let (x, var) = if root.has_group("raw") {
            let raw = self.subgroup(root, "raw")?;
            let var = self.read_frame(&raw, "var", None, false)?;
            (self.read_matrix(&raw, "X", (n_obs, var.index.len()))?, var)
        } else if root.has_dataset("raw.X") || root.has_group("raw.X") {
            let var = self.read_frame(root, "raw.var", None, false)?;
            (self.read_matrix(root, "raw.X", (n_obs, var.index.len()))?, var)
        } else {
            return Ok(None);
        };
        Ok(Some(Raw { x, var_names: var.index, x_stats: None }))
    }

    // ----------------------------------------------------------- dataframes

    /// X's var with its columns (for other gene identifiers). Var columns were never needed before
    /// and a file may hold one in an encoding this reader refuses: then the index alone is read.
    fn read_var(&self, root: &Node, uns: Option<&Node>) -> Result<Frame> {
        self.read_frame(root, "var", uns, true).or_else(|_| self.read_frame(root, "var", None, false))
    }

    /// Reads the dataframe `parent/name` (group or old compound dataset). Columns are read only
    /// when `columns` is set (obs); for var only the index is needed.
    fn read_frame(&self, parent: &Node, name: &str, uns: Option<&Node>, columns: bool) -> Result<Frame> {
        let path = parent.child(name);
        if parent.has_group(name) {
            let node = self.subgroup(parent, name)?;
            return self.read_frame_group(&node, columns);
        }
        if parent.has_dataset(name) {
            let ds = self.dataset(parent, name)?;
            return self.read_frame_compound(&ds, &path, uns, columns);
        }
        Err(self.unsupported(&path, "missing".into()))
    }

    fn read_frame_group(&self, node: &Node, want_columns: bool) -> Result<Frame> {
        let attrs = self.group_attrs(node)?;
        let index_name = match attr_str(&attrs, "_index") {
            Some(n) => n,
            None if node.has_dataset("_index") => "_index".to_string(),
            None if node.has_dataset("index") => "index".to_string(),
            None => return Err(self.unsupported(&node.path, "dataframe without an '_index' attribute or index column".into())),
        };
        if !node.has_dataset(&index_name) {
            return Err(self.unsupported(&node.child(&index_name), "the dataframe's index column is missing".into()));
        }
        let index_path = node.child(&index_name);
        let index_ds = self.dataset(node, &index_name)?;
        let index = self.read_strings(&index_ds, &index_path)?;
        let mut columns = Vec::new();
        if !want_columns {
            return Ok(Frame { index, columns });
        }
        let order: Vec<String> = match attrs.get("column-order") {
            // An empty column list is written as an empty float array, which has no strings.
            Some(v) => v.as_strings().map(<[String]>::to_vec).unwrap_or_default(),
            None => node.datasets.iter().chain(node.groups.iter()).filter(|n| n.as_str() != "__categories").cloned().collect(),
        };
        for col in order {
            if col == index_name || columns.iter().any(|(n, _)| *n == col) {
                continue;
            }
            if let Some(c) = self.read_column(node, &col)? {
                columns.push((col, c));
            }
        }
        Ok(Frame { index, columns })
    }

    /// One column of a dataframe group; `None` for encodings we skip.
    fn read_column(&self, node: &Node, col: &str) -> Result<Option<Column>> {
        let path = node.child(col);
        if node.has_group(col) {
            let g = self.subgroup(node, col)?;
            let attrs = self.group_attrs(&g)?;
            let enc = attr_str(&attrs, "encoding-type");
            return match enc.as_deref() {
                Some("categorical") => self.read_categorical_group(&g).map(Some),
                None if g.has_dataset("categories") && g.has_dataset("codes") => self.read_categorical_group(&g).map(Some),
                Some("nullable-integer") | Some("nullable-boolean") | Some("nullable-string-array") => {
                    self.read_nullable(&g, enc.as_deref().unwrap_or_default())
                }
                _ => Ok(None),
            };
        }
        if !node.has_dataset(col) {
            return Err(self.unsupported(&path, "listed in column-order but not in the file".into()));
        }
        let ds = self.dataset(node, col)?;
        let meta = self.meta(&ds, &path)?;
        if meta.shape.len() != 1 {
            return Ok(None);
        }
        // anndata 0.7: codes dataset with a `categories` attribute that is an object reference to
        // `<frame>/__categories/<col>`. hdf5-pure does not hand out reference-valued attributes, so
        // the conventional location is read instead.
        let attr_types = ds.attr_datatypes().map_err(|e| self.h5(&path, e))?;
        if attr_types.contains_key("categories") {
            if !node.has_group("__categories") {
                return Ok(None);
            }
            let cats_node = self.subgroup(node, "__categories")?;
            if !cats_node.has_dataset(col) {
                return Ok(None);
            }
            let cats_path = cats_node.child(col);
            let categories = self.read_strings(&self.dataset(&cats_node, col)?, &cats_path)?;
            let codes = self.read_codes(&ds, &path, categories.len())?;
            return Ok(Some(Column::Categorical { codes, categories }));
        }
        self.read_plain_column(&ds, &path, &meta)
    }

    /// A 1-D dataset as a column by its type: strings, booleans or numbers; `None` otherwise.
    fn read_plain_column(&self, ds: &Dataset, path: &str, meta: &Meta) -> Result<Option<Column>> {
        if is_string(&meta.dtype) {
            return self.read_strings(ds, path).map(|v| Some(Column::Strings(v)));
        }
        if is_bool_enum(&meta.dtype) {
            let v = ds.read_u8().map_err(|e| self.h5(path, e))?;
            return Ok(Some(Column::Bool(v.into_iter().map(|b| b != 0).collect())));
        }
        if is_numeric(&meta.dtype) {
            let v = ds.read_f64().map_err(|e| self.h5(path, e))?;
            return Ok(Some(Column::Numeric(v)));
        }
        Ok(None)
    }

    fn read_categorical_group(&self, g: &Node) -> Result<Column> {
        for part in ["categories", "codes"] {
            if !g.has_dataset(part) {
                return Err(self.unsupported(&g.child(part), "missing from the categorical column".into()));
            }
        }
        let cats_path = g.child("categories");
        let categories = self.read_strings(&self.dataset(g, "categories")?, &cats_path)?;
        let codes_path = g.child("codes");
        let codes = self.read_codes(&self.dataset(g, "codes")?, &codes_path, categories.len())?;
        Ok(Column::Categorical { codes, categories })
    }

    /// Integer category codes, checked against the number of categories (negative = missing).
    fn read_codes(&self, ds: &Dataset, path: &str, n_categories: usize) -> Result<Vec<i32>> {
        let meta = self.meta(ds, path)?;
        if int_class(&meta.dtype).is_none() && !matches!(meta.dtype, Datatype::Enumeration { .. }) {
            return Err(self.unsupported(path, format!("category codes of {} (expected integers)", describe(&meta.dtype))));
        }
        let mut codes = ds.read_i32().map_err(|e| self.h5(path, e))?;
        for c in codes.iter_mut() {
            if *c < 0 {
                *c = -1;
            } else if *c as usize >= n_categories {
                return Err(self.unsupported(path, format!("code {c} but only {n_categories} categories")));
            }
        }
        Ok(codes)
    }

    /// anndata's nullable arrays: `values` + boolean `mask` (true = missing).
    fn read_nullable(&self, g: &Node, enc: &str) -> Result<Option<Column>> {
        if !g.has_dataset("values") {
            return Ok(None);
        }
        let values_path = g.child("values");
        let values_ds = self.dataset(g, "values")?;
        let values_meta = self.meta(&values_ds, &values_path)?;
        if values_meta.shape.len() != 1 {
            return Ok(None);
        }
        let mask = if g.has_dataset("mask") {
            let mask_path = g.child("mask");
            let mask_ds = self.dataset(g, "mask")?;
            let mask_meta = self.meta(&mask_ds, &mask_path)?;
            if mask_meta.n != values_meta.n || !is_numeric(&mask_meta.dtype) {
                return Err(self.unsupported(&mask_path, "mask does not match its values".into()));
            }
            mask_ds.read_u8().map_err(|e| self.h5(&mask_path, e))?.into_iter().map(|m| m != 0).collect()
        } else {
            vec![false; to_usize(values_meta.n)]
        };
        let any_missing = mask.iter().any(|&m| m);
        match enc {
            "nullable-integer" => {
                if !is_numeric(&values_meta.dtype) {
                    return Ok(None);
                }
                let mut v = values_ds.read_f64().map_err(|e| self.h5(&values_path, e))?;
                for (x, &m) in v.iter_mut().zip(&mask) {
                    if m {
                        *x = f64::NAN;
                    }
                }
                Ok(Some(Column::Numeric(v)))
            }
            "nullable-boolean" => {
                if !is_numeric(&values_meta.dtype) {
                    return Ok(None);
                }
                let v: Vec<bool> = values_ds.read_u8().map_err(|e| self.h5(&values_path, e))?.into_iter().map(|b| b != 0).collect();
                if !any_missing {
                    return Ok(Some(Column::Bool(v)));
                }
                let codes = v.iter().zip(&mask).map(|(&b, &m)| if m { -1 } else { i32::from(b) }).collect();
                Ok(Some(Column::Categorical { codes, categories: vec!["False".into(), "True".into()] }))
            }
            _ => {
                if !is_string(&values_meta.dtype) {
                    return Ok(None);
                }
                let v = self.read_strings(&values_ds, &values_path)?;
                if !any_missing {
                    return Ok(Some(Column::Strings(v)));
                }
                Ok(Some(categorical_from_strings(&v, &mask)))
            }
        }
    }

    /// Old anndata (≤ 0.6): the dataframe is one compound dataset, categories in `uns/<col>_categories`.
    fn read_frame_compound(&self, ds: &Dataset, path: &str, uns: Option<&Node>, want_columns: bool) -> Result<Frame> {
        let meta = self.meta(ds, path)?;
        let Datatype::Compound { size, members } = &meta.dtype else {
            return Err(self.unsupported(path, format!("a dataset of {} (expected a dataframe group or a compound dataset)", describe(&meta.dtype))));
        };
        if meta.shape.len() != 1 {
            return Err(self.unsupported(path, format!("a compound dataframe must be 1-D, found shape {:?}", meta.shape)));
        }
        let n = to_usize(meta.n);
        let rec = *size as usize;
        let raw = ds.read_raw().map_err(|e| self.h5(path, e))?;
        if rec == 0 || n.checked_mul(rec) != Some(raw.len()) {
            return Err(self.invalid(format!("'{path}': {} bytes for {n} records of {rec} bytes", raw.len())));
        }
        let mut index = None;
        let mut columns = Vec::new();
        for m in members {
            let is_index = m.name == "index" || m.name == "_index";
            if !is_index && !want_columns {
                continue;
            }
            let Some(values) = decode_member(&raw, rec, n, m) else {
                continue;
            };
            if is_index && index.is_none() {
                index = Some(values.into_strings());
                continue;
            }
            let col = match values {
                Field::Ints(codes) => match self.uns_categories(uns, &m.name)? {
                    Some(categories) => {
                        let mut out = Vec::with_capacity(codes.len());
                        for c in codes {
                            if c < 0 {
                                out.push(-1);
                            } else if c as u64 >= categories.len() as u64 {
                                return Err(self.unsupported(
                                    &format!("{path}/{}", m.name),
                                    format!("code {c} but only {} categories in uns/{}_categories", categories.len(), m.name),
                                ));
                            } else {
                                out.push(c as i32);
                            }
                        }
                        Column::Categorical { codes: out, categories }
                    }
                    None => Column::Numeric(codes.into_iter().map(|c| c as f64).collect()),
                },
                Field::Floats(v) => Column::Numeric(v),
                Field::Bools(v) => Column::Bool(v),
                Field::Strings(v) => Column::Strings(v),
            };
            columns.push((m.name.clone(), col));
        }
        // pandas' default index when the frame was written without one.
        let index = index.unwrap_or_else(|| (0..n).map(|i| i.to_string()).collect());
        Ok(Frame { index, columns })
    }

    fn uns_categories(&self, uns: Option<&Node>, col: &str) -> Result<Option<Vec<String>>> {
        let Some(uns) = uns else { return Ok(None) };
        let name = format!("{col}_categories");
        if !uns.has_dataset(&name) {
            return Ok(None);
        }
        let path = uns.child(&name);
        self.read_strings(&self.dataset(uns, &name)?, &path).map(Some)
    }

    /// Any 1-D dataset as strings: fixed- or variable-length text, or numbers / booleans formatted
    /// the way pandas prints them.
    fn read_strings(&self, ds: &Dataset, path: &str) -> Result<Vec<String>> {
        let meta = self.meta(ds, path)?;
        let out = if matches!(meta.dtype, Datatype::String { .. }) {
            ds.read_string().map_err(|e| self.h5(path, e))?
        } else if is_string(&meta.dtype) {
            // Variable-length payloads sit uncompressed in the file, so the file's size bounds them.
            let opts = VlenStringReadOptions::new().with_max_elements(to_usize(meta.n)).with_max_payload_bytes(self.len);
            ds.read_vlen_strings(opts).map_err(|e| self.h5(path, e))?
        } else if is_bool_enum(&meta.dtype) {
            ds.read_u8().map_err(|e| self.h5(path, e))?.into_iter().map(|b| if b != 0 { "True" } else { "False" }.to_string()).collect()
        } else if is_numeric(&meta.dtype) {
            ds.read_f64().map_err(|e| self.h5(path, e))?.into_iter().map(format_number).collect()
        } else {
            return Err(self.unsupported(path, format!("{} (expected strings)", describe(&meta.dtype))));
        };
        if out.len() as u64 != meta.n {
            return Err(self.unsupported(path, format!("{} strings decoded for {} elements", out.len(), meta.n)));
        }
        Ok(out)
    }
}

// ------------------------------------------------------------ row blocks

/// Stored values per block when X is streamed: 1M f32 values and u32 indices, 8 MB (16 MB while the
/// decoded bytes are converted). Larger blocks measured no faster natively (one read per block).
const STREAM_BLOCK_VALUES: u64 = 1 << 20;

/// Which of X's columns to keep, and where each goes: `map[source column]` = kept column.
#[derive(Debug, Clone)]
pub struct ColumnMap {
    map: Vec<Option<u32>>,
    pub n_kept: usize,
}

impl ColumnMap {
    /// `map[j]` = the kept column of source column `j`, if kept; `n_kept` columns in all (kept
    /// columns no source column fills stay zero).
    pub fn new(map: Vec<Option<u32>>, n_kept: usize) -> Result<Self> {
        if let Some(bad) = map.iter().flatten().find(|&&k| k as usize >= n_kept) {
            return Err(SclabelError::shape(format!("column map sends a gene to column {bad} of {n_kept}")));
        }
        Ok(Self { map, n_kept })
    }

    /// Every column, unchanged.
    pub fn all(n: usize) -> Self {
        Self { map: (0..n as u32).map(Some).collect(), n_kept: n }
    }

    /// Keeps source columns `kept` (of `n`) as columns 0, 1, … in that order.
    pub fn keeping(n: usize, kept: &[usize]) -> Result<Self> {
        let mut map = vec![None; n];
        for (k, &j) in kept.iter().enumerate() {
            *map.get_mut(j).ok_or_else(|| SclabelError::shape(format!("column {j} is out of range for {n} columns")))? = Some(k as u32);
        }
        Self::new(map, kept.len())
    }

    /// Which kept columns some source column fills.
    pub fn filled(&self) -> Vec<bool> {
        let mut filled = vec![false; self.n_kept];
        self.map.iter().flatten().for_each(|&k| filled[k as usize] = true);
        filled
    }

    /// The kept column of source column `j`, if it is kept.
    pub fn kept(&self, j: usize) -> Option<u32> {
        self.map.get(j).copied().flatten()
    }

    /// Keeps the pairs (source, kept) of one row whose column is kept, in kept-column order.
    fn keep_into(&self, idx: &[u32], val: &[f32], row: &mut Vec<(u32, f32)>) {
        row.clear();
        row.extend(idx.iter().zip(val).filter_map(|(&j, &v)| self.map.get(j as usize).copied().flatten().map(|k| (k, v))));
        if row.windows(2).any(|w| w[0].0 >= w[1].0) {
            // Stable, so a repeated column's values are summed in file order, as CsrMatrix::new does.
            row.sort_by_key(|p| p.0);
            row.dedup_by(|later, kept| {
                let same = later.0 == kept.0;
                if same {
                    kept.1 += later.1;
                }
                same
            });
        }
    }
}

/// Where X's values live in the file.
enum XLayout {
    /// `indptr` read whole (n_rows + 1 offsets); `data` / `indices` read a block of rows at a time.
    Csr {
        data: Dataset,
        indices: Dataset,
        indptr: Vec<u64>,
        data_path: String,
        indices_path: String,
    },
    /// Column pointers read whole; a block of rows needs every kept column's range.
    Csc {
        data: Dataset,
        indices: Dataset,
        colptr: Vec<u64>,
        data_path: String,
        indices_path: String,
    },
    Dense {
        ds: Dataset,
        path: String,
    },
}

/// An `.h5ad`'s X (or `.raw`'s) opened for reading a block of cells at a time, keeping only
/// chosen genes, plus its obs and var names — never the whole matrix. For CSR and dense X the
/// resident memory is one block; CSC X stores cells scattered over genes, so each block reads
/// every kept gene's column (use one block for all cells: memory is then the kept matrix).
pub struct H5adRows {
    reader: Reader,
    layout: XLayout,
    /// Whether the file has a `.raw` (see [`H5adRows::raw_rows`]).
    pub has_raw: bool,
    pub n_rows: usize,
    pub n_cols: usize,
    pub obs_names: Vec<String>,
    pub obs: ObsTable,
    pub var_names: Vec<String>,
    /// Other identifiers of the genes (see `AnnData::var_ids`; none for `.raw`).
    pub var_ids: Vec<(String, Vec<String>)>,
}

/// Opens `source`'s X (or, with `use_raw`, `.raw`'s X and var names) for block reads.
pub fn open_h5ad_rows<S: Source + Send + Sync + 'static>(source: S, file_name: &str, use_raw: bool) -> Result<H5adRows> {
    rows_of(Reader::open_source(source, file_name)?, use_raw)
}

fn rows_of(reader: Reader, use_raw: bool) -> Result<H5adRows> {
    let root = reader.node(reader.file.root(), String::new())?;
    let uns = if root.has_group("uns") { Some(reader.subgroup(&root, "uns")?) } else { None };
    let obs = reader.read_frame(&root, "obs", uns.as_ref(), true)?;
    let n_obs = obs.index.len();
    for (name, col) in &obs.columns {
        if col.len() != n_obs {
            return Err(reader.unsupported(&format!("obs/{name}"), format!("{} values but obs has {n_obs} names", col.len())));
        }
    }
    let (parent, var_frame, x_name) = if use_raw {
        if root.has_group("raw") {
            let raw = reader.subgroup(&root, "raw")?;
            let var = reader.read_frame(&raw, "var", None, false)?;
            (raw, var, "X")
        } else if root.has_dataset("raw.X") || root.has_group("raw.X") {
            let var = reader.read_frame(&root, "raw.var", None, false)?;
            (reader.node(reader.file.root(), String::new())?, var, "raw.X")
        } else {
            return Err(reader.unsupported("raw", "use_raw was asked for, but the file has no .raw".into()));
        }
    } else {
        if !root.has_dataset("X") && !root.has_group("X") {
            return Err(reader.unsupported(
                "X",
                "missing (the file has no X matrix: is it an AnnData .h5ad file? An X reached through an external link is not followed)".into(),
            ));
        }
        let var = reader.read_var(&root, uns.as_ref())?;
        (reader.node(reader.file.root(), String::new())?, var, "X")
    };
    let expected = (n_obs, var_frame.index.len());
    let layout = reader.x_layout(&parent, x_name, expected)?;
    let has_raw = root.has_group("raw") || root.has_dataset("raw.X") || root.has_group("raw.X");
    Ok(H5adRows {
        reader,
        layout,
        has_raw,
        n_rows: expected.0,
        n_cols: expected.1,
        obs_names: obs.index,
        obs: ObsTable { columns: obs.columns },
        var_ids: gene_id_columns(var_frame.columns, var_frame.index.len()),
        var_names: var_frame.index,
    })
}

/// Reads an `.h5ad`'s X keeping only `genes` (matched by whichever of var's identifier columns
/// shares the most with them), with obs, and what normalisation needs from the whole rows
/// (`AnnData::x_stats`: the scale, each cell's totals over all genes), so every result equals that
/// of the full matrix. `.raw` is read the same way (its kept genes and whole-row statistics, in
/// `Raw::x_stats`). Memory is the kept matrices plus one block, never the whole X. The kept genes
/// stay in the file's order; `genes` the file lacks are simply absent.
pub fn read_h5ad_source_genes<S: Source + Send + Sync + 'static>(source: S, file_name: &str, genes: &[String]) -> Result<AnnData> {
    let rows = open_h5ad_rows(source, file_name, false)?;
    let ids = rows.gene_ids();
    let (names, _) = crate::data::align::best_gene_ids(&ids, genes);
    let kept = kept_columns(names, genes);
    if kept.is_empty() {
        return Err(SclabelError::genes(format!(
            "{file_name}: none of the {} genes asked for (e.g. '{}') is in the file ({} genes, e.g. '{}')",
            genes.len(),
            genes.first().map(String::as_str).unwrap_or(""),
            rows.n_cols,
            rows.var_names.first().map(String::as_str).unwrap_or("")
        )));
    }
    let (x, stats) = read_columns(&rows, &kept, file_name, "")?;
    let pick = |v: &[String]| kept.iter().map(|&j| v[j].clone()).collect::<Vec<String>>();
    let var_names = pick(names);
    // Every identifier column but the one that became the names (the index under `var_index`).
    let var_ids = ids
        .iter()
        .filter(|(_, v)| !std::ptr::eq(v.as_ptr(), names.as_ptr()))
        .map(|&(n, v)| (if n == "var index" { crate::data::anndata::VAR_INDEX.to_string() } else { n.to_string() }, pick(v)))
        .collect();
    // .raw: the same genes by its names (none of them is a raw of no columns, which a model then
    // reports as sharing no genes).
    let raw = match rows.raw_rows()? {
        Some(raw_rows) => {
            let raw_kept = kept_columns(&raw_rows.var_names, genes);
            let (x, stats) = read_columns(&raw_rows, &raw_kept, file_name, " .raw")?;
            Some(Raw { x, var_names: raw_kept.iter().map(|&j| raw_rows.var_names[j].clone()).collect(), x_stats: Some(stats) })
        }
        None => None,
    };
    let ad = AnnData { x, obs: rows.obs.clone(), obs_names: rows.obs_names.clone(), var_names, var_ids, x_stats: Some(stats), raw };
    ad.validate()?;
    Ok(ad)
}

/// The columns whose name is one of `genes`, in the file's order.
pub(crate) fn kept_columns(names: &[String], genes: &[String]) -> Vec<usize> {
    let wanted: std::collections::HashSet<&str> = genes.iter().map(String::as_str).collect();
    (0..names.len()).filter(|&j| wanted.contains(names[j].as_str())).collect()
}

/// Columns `kept` of every cell, and the whole rows' value statistics.
fn read_columns(rows: &H5adRows, kept: &[usize], file_name: &str, what: &str) -> Result<(CsrMatrix, ValueStats)> {
    let keep = ColumnMap::keeping(rows.n_cols, kept)?;
    let stats = rows.value_stats()?;
    let x = rows.read_kept(
        &keep,
        &format!("{file_name}{what}: {} of its genes for {} cells", kept.len(), rows.n_rows),
        "keep fewer genes or cells, or predict the file without loading it (predictScnym takes the file itself)",
        |_, _| {},
    )?;
    Ok((x, stats))
}

impl H5adRows {
    /// Var column `column` as the gene names (see `AnnData::with_var_names_from`).
    pub fn use_var_names_from(&mut self, column: &str) -> Result<()> {
        let (names, ids) = swap_var_names(&self.var_names, &self.var_ids, column)?;
        self.var_names = names;
        self.var_ids = ids;
        Ok(())
    }

    /// The genes' identifiers: the names, then every other identifier column.
    pub fn gene_ids(&self) -> Vec<(&str, &[String])> {
        crate::data::anndata::gene_ids_of(&self.var_names, &self.var_ids)
    }
}

/// Var's string-valued columns with a value for every gene: the candidates for gene identifiers.
fn gene_id_columns(columns: Vec<(String, Column)>, n: usize) -> Vec<(String, Vec<String>)> {
    columns
        .into_iter()
        .filter(|(_, c)| matches!(c, Column::Strings(_) | Column::Categorical { .. }) && c.len() == n)
        .filter_map(|(name, c)| c.to_strings().into_iter().collect::<Option<Vec<String>>>().map(|v| (name, v)))
        .collect()
}

impl Reader {
    /// X's layout and the offsets that index it, checked against the expected shape.
    fn x_layout(&self, parent: &Node, name: &str, expected: (usize, usize)) -> Result<XLayout> {
        let path = parent.child(name);
        if parent.has_dataset(name) {
            let ds = self.dataset(parent, name)?;
            let meta = self.meta(&ds, &path)?;
            if meta.shape.len() != 2 || !is_numeric(&meta.dtype) {
                return Err(self
                    .unsupported(&path, format!("a dense matrix must be a 2-D array of numbers, found {} of shape {:?}", describe(&meta.dtype), meta.shape)));
            }
            self.check_shape(&path, meta.shape[0], meta.shape[1], expected)?;
            return Ok(XLayout::Dense { ds, path });
        }
        if !parent.has_group(name) {
            return Err(self.unsupported(&path, "missing".into()));
        }
        let node = self.subgroup(parent, name)?;
        let attrs = self.group_attrs(&node)?;
        let format = attr_str(&attrs, "encoding-type").or_else(|| attr_str(&attrs, "h5sparse_format"));
        let csr = match format.as_deref() {
            Some("csr_matrix") | Some("csr") => true,
            Some("csc_matrix") | Some("csc") => false,
            other => return Err(self.unsupported(&path, format!("a group with encoding-type {other:?} (expected csr_matrix or csc_matrix)"))),
        };
        let shape = attrs
            .get("shape")
            .or_else(|| attrs.get("h5sparse_shape"))
            .and_then(AttrValue::to_u64s)
            .filter(|s| s.len() == 2)
            .ok_or_else(|| self.unsupported(&path, "sparse matrix without a 2-element 'shape' attribute".into()))?;
        for part in ["data", "indices", "indptr"] {
            if !node.has_dataset(part) {
                return Err(self.unsupported(&node.child(part), "missing from the sparse matrix".into()));
            }
        }
        self.check_shape(&path, shape[0], shape[1], expected)?;
        let (major, minor) = if csr { (shape[0], shape[1]) } else { (shape[1], shape[0]) };
        if minor > u64::from(u32::MAX) + 1 {
            return Err(self.unsupported(&path, format!("{minor} columns is more than this reader indexes")));
        }
        let indptr_path = node.child("indptr");
        let indptr = self.read_offsets(&self.dataset(&node, "indptr")?, &indptr_path)?;
        if major.checked_add(1) != Some(indptr.len() as u64) {
            return Err(self.unsupported(&indptr_path, format!("{} entries for a {} × {} matrix (expected {major} + 1)", indptr.len(), shape[0], shape[1])));
        }
        let (data, indices) = (self.dataset(&node, "data")?, self.dataset(&node, "indices")?);
        let (data_path, indices_path) = (node.child("data"), node.child("indices"));
        let (dm, im) = (self.meta(&data, &data_path)?, self.meta(&indices, &indices_path)?);
        if !is_numeric(&dm.dtype) {
            return Err(self.unsupported(&data_path, format!("{} (expected numbers)", describe(&dm.dtype))));
        }
        if int_class(&im.dtype).is_none() {
            return Err(self.unsupported(&indices_path, format!("{} (expected integers)", describe(&im.dtype))));
        }
        if dm.n != im.n || indptr.first() != Some(&0) || indptr.last() != Some(&dm.n) || indptr.windows(2).any(|w| w[1] < w[0]) {
            return Err(self.unsupported(
                &path,
                format!("{} indices, {} values and offsets {}..{} do not describe one sparse matrix", im.n, dm.n, indptr[0], indptr[indptr.len() - 1]),
            ));
        }
        Ok(if csr {
            XLayout::Csr { data, indices, indptr, data_path, indices_path }
        } else {
            XLayout::Csc { data, indices, colptr: indptr, data_path, indices_path }
        })
    }

    /// Elements `start .. start + count` of a 1-D integer array as `u32`, each below `bound`.
    fn read_u32_window(&self, ds: &Dataset, path: &str, start: u64, count: u64, bound: u64) -> Result<Vec<u32>> {
        // Called once per block: only the datatype is read here (`meta`, with its checks of the
        // shape and the chunk index, ran once when the matrix was opened).
        let dtype = ds.datatype().map_err(|e| self.h5(path, e))?;
        let (signed, size) = int_class(&dtype).ok_or_else(|| self.unsupported(path, format!("{} (expected integers)", describe(&dtype))))?;
        let out_of_range = |x: i64| self.unsupported(path, format!("index {x} out of range 0..{bound}"));
        let check = |x: i64| if x >= 0 && (x as u64) < bound { Ok(x as u32) } else { Err(out_of_range(x)) };
        let out: Vec<u32> = match (signed, size <= 4) {
            (true, true) => ds.read_i32_rows(start, count).map_err(|e| self.h5(path, e))?.into_iter().map(|x| check(i64::from(x))).collect::<Result<_>>()?,
            (false, true) => {
                let v = ds.read_u32_rows(start, count).map_err(|e| self.h5(path, e))?;
                if let Some(&x) = v.iter().find(|&&x| u64::from(x) >= bound) {
                    return Err(out_of_range(i64::from(x)));
                }
                v
            }
            (true, false) => ds.read_i64_rows(start, count).map_err(|e| self.h5(path, e))?.into_iter().map(check).collect::<Result<_>>()?,
            (false, false) => ds
                .read_u64_rows(start, count)
                .map_err(|e| self.h5(path, e))?
                .into_iter()
                .map(|x| check(i64::try_from(x).unwrap_or(i64::MAX)))
                .collect::<Result<_>>()?,
        };
        if out.len() as u64 != count {
            return Err(self.invalid(format!("'{path}': elements {start}..{} decoded to {} values", start + count, out.len())));
        }
        Ok(out)
    }

    /// Refuses a chunked dataset whose chunk index points past the end of the file before anything
    /// is read: hdf5-pure sizes its read buffer from the index, so a damaged entry would otherwise
    /// allocate what it claims (gigabytes) before the read fails.
    fn check_chunks_in_file(&self, ds: &Dataset, path: &str, shape: &[u64]) -> Result<()> {
        if !ds.is_chunked() {
            return Ok(());
        }
        // Listing the chunks may enumerate the whole chunk grid (an implicit index): refuse a grid
        // with more chunks than the file has bytes before listing it.
        if let Some(chunk) = ds.chunk_shape().map_err(|e| self.h5(path, e))? {
            let grid = shape.iter().zip(&chunk).try_fold(1u64, |n, (&d, &c)| n.checked_mul(if c == 0 { u64::MAX } else { d.div_ceil(c) }));
            if grid.is_none_or(|g| g > self.len as u64) {
                return Err(self.invalid(format!("'{path}': chunks of {chunk:?} over shape {shape:?} are more than a {}-byte file can hold", self.len)));
            }
        }
        for c in ds.chunks().map_err(|e| self.h5(path, e))? {
            if c.address.checked_add(c.storage_size).is_none_or(|end| end > self.len as u64) {
                return Err(self.invalid(format!(
                    "'{path}': a chunk of {} bytes at offset {} lies past the end of the file ({} bytes): the file is truncated or damaged",
                    c.storage_size, c.address, self.len
                )));
            }
        }
        Ok(())
    }

    fn read_f32_window(&self, ds: &Dataset, path: &str, start: u64, count: u64) -> Result<Vec<f32>> {
        let v = ds.read_f32_rows(start, count).map_err(|e| self.h5(path, e))?;
        if v.len() as u64 != count {
            return Err(self.invalid(format!("'{path}': elements {start}..{} decoded to {} values", start + count, v.len())));
        }
        Ok(v)
    }
}

impl H5adRows {
    /// Rows per block such that a block holds about `STREAM_BLOCK_VALUES` stored values (CSC: all
    /// rows, see the type's note).
    pub fn block_rows(&self) -> usize {
        let per_row = match &self.layout {
            XLayout::Csr { indptr, .. } => (indptr[indptr.len() - 1] / self.n_rows.max(1) as u64).max(1),
            XLayout::Dense { .. } => self.n_cols.max(1) as u64,
            XLayout::Csc { .. } => return self.n_rows.max(1),
        };
        ((STREAM_BLOCK_VALUES / per_row).max(1) as usize).min(self.n_rows.max(1))
    }

    /// The file's `.raw` opened the same way (sharing the open file), if it has one.
    pub fn raw_rows(&self) -> Result<Option<H5adRows>> {
        if !self.has_raw {
            return Ok(None);
        }
        rows_of(self.reader.clone(), true).map(Some)
    }

    /// The cells `wanted` (ascending) with the columns `keep` keeps, a block at a time:
    /// `each(start, block, local)` gets each block that holds wanted cells (rows `start..` of the
    /// file) and those cells as rows of the block. Memory is one block.
    pub fn for_blocks_of(&self, wanted: &[usize], keep: &ColumnMap, mut each: impl FnMut(usize, CsrMatrix, &[usize]) -> Result<()>) -> Result<()> {
        if let Some(&r) = wanted.iter().find(|&&r| r >= self.n_rows) {
            return Err(SclabelError::shape(format!("cell {r} is out of range for {} cells", self.n_rows)));
        }
        if !wanted.windows(2).all(|w| w[0] < w[1]) {
            return Err(SclabelError::shape("cells to read must be ascending and distinct"));
        }
        let block = self.block_rows().max(1);
        let (mut next, mut local) = (0, Vec::new());
        while next < wanted.len() {
            let start = wanted[next] / block * block;
            let end = (start + block).min(self.n_rows);
            let upto = next + wanted[next..].partition_point(|&r| r < end);
            local.clear();
            local.extend(wanted[next..upto].iter().map(|&r| r - start));
            each(start, self.read_rows(start..end, keep)?, &local)?;
            next = upto;
        }
        Ok(())
    }

    /// Every cell with the columns `keep` keeps, read a block at a time, each block passed through
    /// `adjust(start, block)` (e.g. normalised with whole-cell totals) and appended in place: memory
    /// is the kept matrix and one block, checked against the memory budget (`what` and `advice`
    /// name it in a refusal).
    pub fn read_kept(&self, keep: &ColumnMap, what: &str, advice: &str, mut adjust: impl FnMut(usize, &mut CsrMatrix)) -> Result<CsrMatrix> {
        let (mut indptr, mut indices, mut data) = (vec![0u64], Vec::new(), Vec::new());
        let block = self.block_rows().max(1);
        let mut start = 0;
        while start < self.n_rows {
            let end = (start + block).min(self.n_rows);
            let mut part = self.read_rows(start..end, keep)?;
            crate::memory::reserve(what, (part.nnz() as u64) * 8, advice)?;
            adjust(start, &mut part);
            let offset = data.len() as u64;
            indptr.extend(part.indptr[1..].iter().map(|&p| p + offset));
            indices.extend_from_slice(&part.indices);
            data.extend_from_slice(&part.data);
            start = end;
        }
        CsrMatrix::new(self.n_rows, keep.n_kept, indptr, indices, data)
    }

    /// Cells `rows` with only the columns `keep` keeps, in its order.
    pub fn read_rows(&self, rows: std::ops::Range<usize>, keep: &ColumnMap) -> Result<CsrMatrix> {
        let r = &self.reader;
        if rows.end > self.n_rows || rows.start > rows.end {
            return Err(SclabelError::shape(format!("cells {}..{} of {}", rows.start, rows.end, self.n_rows)));
        }
        if keep.map.len() != self.n_cols {
            return Err(SclabelError::shape(format!("a column map of {} genes for X's {}", keep.map.len(), self.n_cols)));
        }
        let n = rows.len();
        let mut indptr = Vec::with_capacity(n + 1);
        indptr.push(0u64);
        let (mut indices, mut data) = (Vec::new(), Vec::new());
        let mut row: Vec<(u32, f32)> = Vec::new();
        let mut push = |row: &[(u32, f32)], indptr: &mut Vec<u64>| {
            indices.extend(row.iter().map(|p| p.0));
            data.extend(row.iter().map(|p| p.1));
            indptr.push(data.len() as u64);
        };
        match &self.layout {
            XLayout::Csr { data: dds, indices: ids, indptr: offsets, data_path, indices_path } => {
                let (a, b) = (offsets[rows.start], offsets[rows.end]);
                let idx = if b > a { r.read_u32_window(ids, indices_path, a, b - a, self.n_cols as u64)? } else { Vec::new() };
                let val = if b > a { r.read_f32_window(dds, data_path, a, b - a)? } else { Vec::new() };
                for i in rows.clone() {
                    let (s, e) = ((offsets[i] - a) as usize, (offsets[i + 1] - a) as usize);
                    keep.keep_into(&idx[s..e], &val[s..e], &mut row);
                    push(&row, &mut indptr);
                }
            }
            XLayout::Dense { ds, path } => {
                let values = if n > 0 { ds.read_f32_rows(rows.start as u64, n as u64).map_err(|e| r.h5(path, e))? } else { Vec::new() };
                if values.len() != n * self.n_cols {
                    return Err(r.invalid(format!("'{path}': rows {}..{} decoded to {} values", rows.start, rows.end, values.len())));
                }
                for chunk in values.chunks_exact(self.n_cols.max(1)).take(n) {
                    row.clear();
                    row.extend(chunk.iter().zip(&keep.map).filter(|(&v, _)| v != 0.0).filter_map(|(&v, k)| k.map(|k| (k, v))));
                    if row.windows(2).any(|w| w[0].0 > w[1].0) {
                        row.sort_unstable_by_key(|p| p.0);
                    }
                    push(&row, &mut indptr);
                }
                if self.n_cols == 0 {
                    indptr.resize(n + 1, 0);
                }
            }
            XLayout::Csc { data: dds, indices: ids, colptr, data_path, indices_path } => {
                // Kept columns only; each read whole and filtered to the block's rows.
                let mut per_row: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
                for (j, k) in keep.map.iter().enumerate() {
                    let Some(k) = *k else { continue };
                    let (a, b) = (colptr[j], colptr[j + 1]);
                    if b == a {
                        continue;
                    }
                    let cells = r.read_u32_window(ids, indices_path, a, b - a, self.n_rows as u64)?;
                    let val = r.read_f32_window(dds, data_path, a, b - a)?;
                    for (&c, &v) in cells.iter().zip(&val) {
                        if rows.contains(&(c as usize)) {
                            per_row[c as usize - rows.start].push((k, v));
                        }
                    }
                }
                for mut cell in per_row {
                    cell.sort_unstable_by_key(|p| p.0);
                    push(&cell, &mut indptr);
                }
            }
        }
        CsrMatrix::new(n, keep.n_kept, indptr, indices, data)
    }

    /// What normalisation needs from every stored value (scale detection, each cell's totals over
    /// all genes), in one pass over the values (CSR: `data` only).
    pub fn value_stats(&self) -> Result<ValueStats> {
        let r = &self.reader;
        let mut stats = ValueStats::default();
        match &self.layout {
            XLayout::Csr { data: dds, indices: ids, indptr, data_path, indices_path } => {
                let block = self.block_rows();
                let mut start = 0;
                while start < self.n_rows {
                    let end = (start + block).min(self.n_rows);
                    let (a, b) = (indptr[start], indptr[end]);
                    let val = if b > a { r.read_f32_window(dds, data_path, a, b - a)? } else { Vec::new() };
                    for i in start..end {
                        let (s, e) = ((indptr[i] - a) as usize, (indptr[i + 1] - a) as usize);
                        let row = &val[s..e];
                        if stats.non_finite.is_none() && row.iter().any(|v| !v.is_finite()) {
                            // Read this row's gene indices only to name the gene.
                            let idx = r.read_u32_window(ids, indices_path, indptr[i], (e - s) as u64, self.n_cols as u64)?;
                            stats.add_row(&idx, row);
                        } else {
                            stats.add_row(&[], row);
                        }
                    }
                    start = end;
                }
            }
            XLayout::Dense { .. } => {
                let keep = ColumnMap::all(self.n_cols);
                let block = self.block_rows();
                let mut start = 0;
                while start < self.n_rows {
                    let end = (start + block).min(self.n_rows);
                    let x = self.read_rows(start..end, &keep)?;
                    for i in 0..x.n_rows {
                        let (idx, val) = x.row(i);
                        stats.add_row(idx, val);
                    }
                    start = end;
                }
            }
            XLayout::Csc { data: dds, indices: ids, colptr, data_path, indices_path } => {
                stats.start_rows(self.n_rows);
                let total = colptr[colptr.len() - 1];
                let mut j = 0usize;
                let mut a = 0u64;
                while a < total {
                    let b = (a + STREAM_BLOCK_VALUES).min(total);
                    let cells = r.read_u32_window(ids, indices_path, a, b - a, self.n_rows as u64)?;
                    let val = r.read_f32_window(dds, data_path, a, b - a)?;
                    for (k, (&c, &v)) in cells.iter().zip(&val).enumerate() {
                        while colptr[j + 1] <= a + k as u64 {
                            j += 1;
                        }
                        stats.add_value(c as usize, j as u32, v);
                    }
                    a = b;
                }
            }
        }
        // Gene positions count in the file's columns (a gene-selecting caller keeps fewer names).
        stats.n_cols = Some(self.n_cols);
        Ok(stats)
    }
}

// ------------------------------------------------------------------ helpers

fn to_usize(x: u64) -> usize {
    // Callers only pass values already checked against the decode budget (which fits usize).
    usize::try_from(x).unwrap_or(usize::MAX)
}

fn attr_str(attrs: &Attrs, name: &str) -> Option<String> {
    attrs.get(name).and_then(AttrValue::as_str).map(str::to_string)
}

/// `Some((signed, size))` for integer types (including enumerations over an integer).
fn int_class(dt: &Datatype) -> Option<(bool, u32)> {
    match dt {
        Datatype::FixedPoint { size, layout, .. } if (1..=8).contains(size) => Some((layout.signed, *size)),
        Datatype::Enumeration { base_type, .. } => match base_type.as_ref() {
            Datatype::FixedPoint { .. } => int_class(base_type),
            _ => None,
        },
        _ => None,
    }
}

fn is_numeric(dt: &Datatype) -> bool {
    match dt {
        Datatype::FloatingPoint { size, .. } => *size == 4 || *size == 8,
        _ => int_class(dt).is_some(),
    }
}

/// h5py writes `np.bool_` as an 8-bit enumeration {FALSE, TRUE}.
fn is_bool_enum(dt: &Datatype) -> bool {
    match dt {
        Datatype::Enumeration { base_type, members, .. } => {
            matches!(base_type.as_ref(), Datatype::FixedPoint { size: 1, .. })
                && members.len() == 2
                && members.iter().all(|m| m.name.eq_ignore_ascii_case("false") || m.name.eq_ignore_ascii_case("true"))
        }
        _ => false,
    }
}

fn is_string(dt: &Datatype) -> bool {
    match dt {
        Datatype::String { .. } => true,
        Datatype::VariableLength { is_string: true, .. } => true,
        Datatype::VariableLength { is_string: false, base_type, .. } => {
            matches!(base_type.as_ref(), Datatype::String { size: 1, .. })
        }
        _ => false,
    }
}

fn describe(dt: &Datatype) -> String {
    match dt {
        Datatype::FixedPoint { size, layout, .. } => {
            format!("{}int{}", if layout.signed { "" } else { "u" }, u64::from(*size) * 8)
        }
        Datatype::FloatingPoint { size, .. } => format!("float{}", u64::from(*size) * 8),
        Datatype::String { size, .. } => format!("fixed-length strings ({size} bytes)"),
        Datatype::VariableLength { .. } if is_string(dt) => "variable-length strings".into(),
        Datatype::VariableLength { .. } => "variable-length sequences".into(),
        Datatype::Compound { members, .. } => format!("a compound type with {} fields", members.len()),
        Datatype::Enumeration { .. } if is_bool_enum(dt) => "booleans".into(),
        Datatype::Enumeration { .. } => "an enumeration".into(),
        Datatype::Reference { .. } => "object references".into(),
        Datatype::Array { .. } => "fixed-size arrays".into(),
        Datatype::Opaque { .. } => "opaque bytes".into(),
        Datatype::BitField { .. } => "bit fields".into(),
        Datatype::Time { .. } => "time values".into(),
        _ => "an unknown HDF5 type".into(),
    }
}

/// Same formatting as `Column::to_strings` uses for numbers (integers without a fraction).
fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// One decoded field of a compound record.
enum Field {
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Bools(Vec<bool>),
    Strings(Vec<String>),
}

impl Field {
    fn into_strings(self) -> Vec<String> {
        match self {
            Field::Strings(v) => v,
            Field::Ints(v) => v.into_iter().map(|x| x.to_string()).collect(),
            Field::Floats(v) => v.into_iter().map(format_number).collect(),
            Field::Bools(v) => v.into_iter().map(|b| if b { "True" } else { "False" }.to_string()).collect(),
        }
    }
}

/// Decodes one member of `n` compound records of `rec` bytes; `None` for types we skip.
fn decode_member(raw: &[u8], rec: usize, n: usize, m: &hdf5_pure::CompoundMember) -> Option<Field> {
    let off = usize::try_from(m.byte_offset).ok()?;
    let size = m.datatype.type_size() as usize;
    if size == 0 || off.checked_add(size)? > rec {
        return None;
    }
    let field = |i: usize| &raw[i * rec + off..i * rec + off + size];
    match &m.datatype {
        Datatype::String { padding, .. } => Some(Field::Strings((0..n).map(|i| fixed_string(field(i), padding)).collect())),
        dt if is_bool_enum(dt) => Some(Field::Bools((0..n).map(|i| field(i)[0] != 0).collect())),
        Datatype::FixedPoint { byte_order, layout, .. } if size <= 8 => {
            let be = matches!(byte_order, DatatypeByteOrder::BigEndian);
            Some(Field::Ints((0..n).map(|i| read_int(field(i), be, layout.signed)).collect()))
        }
        Datatype::FloatingPoint { byte_order, .. } if size == 4 || size == 8 => {
            let be = match byte_order {
                DatatypeByteOrder::LittleEndian => false,
                DatatypeByteOrder::BigEndian => true,
                _ => return None,
            };
            Some(Field::Floats(
                (0..n)
                    .map(|i| {
                        let bits = read_int(field(i), be, false) as u64;
                        if size == 4 {
                            f64::from(f32::from_bits(bits as u32))
                        } else {
                            f64::from_bits(bits)
                        }
                    })
                    .collect(),
            ))
        }
        _ => None,
    }
}

/// A little- or big-endian integer of 1..=8 bytes, sign-extended when `signed`.
fn read_int(b: &[u8], be: bool, signed: bool) -> i64 {
    let mut v: u64 = 0;
    if be {
        for &x in b {
            v = (v << 8) | u64::from(x);
        }
    } else {
        for &x in b.iter().rev() {
            v = (v << 8) | u64::from(x);
        }
    }
    let bits = (b.len() * 8) as u32;
    if signed && bits < 64 && bits > 0 && (v >> (bits - 1)) & 1 == 1 {
        v |= u64::MAX << bits;
    }
    v as i64
}

fn fixed_string(b: &[u8], padding: &StringPadding) -> String {
    let end = match padding {
        StringPadding::NullTerminate => b.iter().position(|&c| c == 0).unwrap_or(b.len()),
        StringPadding::SpacePad => b.iter().rposition(|&c| c != b' ' && c != 0).map_or(0, |p| p + 1),
        _ => b.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1),
    };
    String::from_utf8_lossy(&b[..end]).into_owned()
}

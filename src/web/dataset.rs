//! `Dataset`: a loaded AnnData held on the wasm side (so big matrices are not copied back to JS).
use std::rc::Rc;

use js_sys::{Function, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::data::anndata::{AnnData, Column};
use crate::data::normalize::detect_from_stats;
use crate::data::synthetic::{synthetic_counts, SyntheticSpec};
use crate::io::h5ad::{read_h5ad_source, read_h5ad_source_genes, Source, SourceError};
use crate::web::{convert, error::to_js};

/// Bytes from JS on demand: `readAt(offset, length)` returns a `Uint8Array` of exactly `length`
/// bytes (a worker reads a `Blob` slice with `FileReaderSync`, Node a file descriptor, or a view of
/// an `ArrayBuffer`). The file is never copied whole into wasm memory.
pub(crate) struct JsSource {
    len: u64,
    read_at: Function,
}

impl JsSource {
    pub(crate) fn new(length: f64, read_at: Function) -> Self {
        Self { len: length as u64, read_at }
    }
}

// hdf5-pure asks Send + Sync of a source because natively a `File` may be shared across threads.
// This crate's wasm build has no threads (no `atomics` target feature), so a JS function can't be
// reached from another thread.
#[cfg(target_feature = "atomics")]
compile_error!("JsSource assumes single-threaded wasm");
// SAFETY: see above — wasm32 without atomics has exactly one thread.
unsafe impl Send for JsSource {}
// SAFETY: as above.
unsafe impl Sync for JsSource {}

impl Source for JsSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        let out = self
            .read_at
            .call2(&JsValue::NULL, &(offset as f64).into(), &(buf.len() as f64).into())
            .map_err(|e| SourceError::Source(format!("readAt({offset}, {}) threw: {}", buf.len(), js_message(&e))))?;
        let bytes: Uint8Array = out.dyn_into().map_err(|_| SourceError::Source("readAt must return a Uint8Array".into()))?;
        if bytes.length() as usize != buf.len() {
            return Err(SourceError::Source(format!("readAt({offset}, {}) returned {} bytes", buf.len(), bytes.length())));
        }
        bytes.copy_to(buf);
        Ok(())
    }
}

fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).or_else(|| e.as_string()).unwrap_or_else(|| format!("{e:?}"))
}

#[wasm_bindgen(js_name = Dataset)]
pub struct JsDataset {
    pub(crate) inner: Rc<AnnData>,
}

#[derive(Serialize)]
struct ColumnSummary {
    name: String,
    kind: &'static str,
    /// For categorical columns: category → cell count.
    categories: Option<Vec<(String, usize)>>,
}

#[derive(Serialize)]
struct Summary {
    n_obs: usize,
    n_vars: usize,
    nnz: usize,
    has_raw: bool,
    obs: Vec<ColumnSummary>,
    normalization: Option<crate::data::normalize::NormalizationReport>,
}

/// Value counts of a string column in first-seen order, unless it looks like an identifier
/// column (more than 1000 distinct values).
fn string_counts(values: &[String]) -> Option<Vec<(String, usize)>> {
    let mut index = std::collections::HashMap::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for v in values {
        let k = *index.entry(v.as_str()).or_insert_with(|| {
            counts.push((v.clone(), 0));
            counts.len() - 1
        });
        counts[k].1 += 1;
        if counts.len() > 1000 {
            return None;
        }
    }
    Some(counts)
}

#[wasm_bindgen(js_class = Dataset)]
impl JsDataset {
    /// Reads an `.h5ad` on demand through `readAt(offset, length) -> Uint8Array` (see `JsSource`):
    /// only the decoded data set is held, not the file.
    #[wasm_bindgen(js_name = fromH5adReader)]
    pub fn from_h5ad_reader(length: f64, read_at: Function, name: &str) -> Result<JsDataset, JsValue> {
        read_h5ad_source(JsSource::new(length, read_at), name).map(|a| JsDataset { inner: Rc::new(a) }).map_err(to_js)
    }

    /// As `fromH5adReader`, keeping only `genes` of X (matched by whichever var identifier column
    /// shares the most), with each cell's whole-row statistics, so normalisation and every result
    /// equal the full file's: memory is the kept matrix, never the whole one. `.raw` keeps the same
    /// genes, with its own whole-row statistics.
    #[wasm_bindgen(js_name = fromH5adReaderGenes)]
    pub fn from_h5ad_reader_genes(length: f64, read_at: Function, name: &str, genes: Vec<String>) -> Result<JsDataset, JsValue> {
        read_h5ad_source_genes(JsSource::new(length, read_at), name, &genes).map(|a| JsDataset { inner: Rc::new(a) }).map_err(to_js)
    }

    /// An atlas's preconverted reference matrix (`sclabel atlas build`): X = ln(CPM+1), obs = its
    /// label (and domain) column; with `genes`, only those of its genes.
    #[wasm_bindgen(js_name = fromAtlasMatrix)]
    pub fn from_atlas_matrix(bytes: &[u8], genes: Option<Vec<String>>) -> Result<JsDataset, JsValue> {
        let m = crate::atlas::matrix::AtlasMatrix::from_bytes(bytes).map_err(to_js)?;
        let m = match genes {
            Some(g) => m.keep_genes(&g).map_err(to_js)?,
            None => m,
        };
        Ok(JsDataset { inner: Rc::new(m.to_anndata()) })
    }

    /// Seeded synthetic raw counts with `cell_type` and `batch` columns.
    pub fn synthetic(n_cells: usize, n_genes: usize, n_classes: usize, seed: u64) -> JsDataset {
        let spec = SyntheticSpec { n_cells, n_genes, n_classes, seed, ..SyntheticSpec::default() };
        JsDataset { inner: Rc::new(synthetic_counts(&spec)) }
    }

    #[wasm_bindgen(getter, js_name = nObs)]
    pub fn n_obs(&self) -> usize {
        self.inner.n_obs()
    }

    #[wasm_bindgen(getter, js_name = nVars)]
    pub fn n_vars(&self) -> usize {
        self.inner.n_vars()
    }

    /// Shape, obs columns with category counts, and the detected normalisation of X.
    pub fn summary(&self) -> Result<JsValue, JsValue> {
        let a = &self.inner;
        let obs = a
            .obs
            .columns
            .iter()
            .map(|(name, c)| {
                let (kind, categories) = match c {
                    Column::Categorical { codes, categories } => {
                        let mut counts = vec![0usize; categories.len()];
                        codes.iter().filter(|&&k| k >= 0).for_each(|&k| counts[k as usize] += 1);
                        ("categorical", Some(categories.iter().cloned().zip(counts).collect()))
                    }
                    Column::Strings(values) => ("string", string_counts(values)),
                    Column::Numeric(_) => ("numeric", None),
                    Column::Bool(_) => ("bool", None),
                };
                ColumnSummary { name: name.clone(), kind, categories }
            })
            .collect();
        let summary = Summary {
            n_obs: a.n_obs(),
            n_vars: a.n_vars(),
            nnz: a.x.nnz(),
            has_raw: a.raw.is_some(),
            obs,
            normalization: a.value_stats(false).ok().and_then(|s| detect_from_stats(&s, &a.var_names).ok()),
        };
        convert::to_js(&summary)
    }

    /// A second handle on the same data (nothing is copied), for bindings that take a data set by
    /// value (an optional argument is consumed by wasm-bindgen).
    pub fn share(&self) -> JsDataset {
        JsDataset { inner: Rc::clone(&self.inner) }
    }

    /// A new data set with only the cells at `rows` (this one is unchanged).
    pub fn subset(&self, rows: Vec<u32>) -> Result<JsDataset, JsValue> {
        let rows: Vec<usize> = rows.into_iter().map(|r| r as usize).collect();
        self.inner.select_obs(&rows).map(|a| JsDataset { inner: Rc::new(a) }).map_err(to_js)
    }

    /// A new data set with obs column `name` set to `values` (e.g. labels with `Unlabeled` for
    /// the cells to annotate); this one is unchanged.
    #[wasm_bindgen(js_name = withObs)]
    pub fn with_obs(&self, name: &str, values: Vec<String>) -> Result<JsDataset, JsValue> {
        self.inner.with_obs_column(name, Column::Strings(values)).map(|a| JsDataset { inner: Rc::new(a) }).map_err(to_js)
    }

    /// The values of obs column `name` as strings (missing values are null).
    pub fn obs(&self, name: &str) -> Result<JsValue, JsValue> {
        let col = self.inner.obs.get(name).map_err(to_js)?;
        convert::to_js(&col.to_strings())
    }

    /// A new data set whose gene names are var column `column` (scanpy's `gene_symbols`); the old
    /// index stays as an identifier column (`var_index`).
    #[wasm_bindgen(js_name = withVarNamesFrom)]
    pub fn with_var_names_from(&self, column: &str) -> Result<JsDataset, JsValue> {
        self.inner.with_var_names_from(column).map(|a| JsDataset { inner: Rc::new(a) }).map_err(to_js)
    }

    /// X as it is held: `{ nObs, nVars, indptr: Float64Array, indices: Uint32Array, data:
    /// Float32Array }` (CSR, values as read; only the kept genes of a data set loaded with some).
    pub fn matrix(&self) -> Result<JsValue, JsValue> {
        convert::csr_to_js(&self.inner.x, 0..self.inner.x.n_rows).map(Into::into)
    }

    #[wasm_bindgen(js_name = varNames)]
    pub fn var_names(&self) -> Vec<String> {
        self.inner.var_names.clone()
    }

    #[wasm_bindgen(js_name = obsNames)]
    pub fn obs_names(&self) -> Vec<String> {
        self.inner.obs_names.clone()
    }
}

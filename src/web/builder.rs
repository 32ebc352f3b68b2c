//! `DatasetBuilder`: JS readers of chunked formats (AnnData-Zarr, `src/js/zarr.js`) hand the core
//! a data set a chunk at a time, in the chunks' stored types; the core's
//! [`AnnDataBuilder`](crate::io::builder::AnnDataBuilder) validates and assembles it. This file
//! only converts JS values (typed arrays, string arrays, numbers) to core types.
use std::rc::Rc;

use js_sys::{
    BigInt64Array, BigUint64Array, Float32Array, Float64Array, Int16Array, Int32Array, Int8Array, Uint16Array, Uint32Array, Uint8Array, Uint8ClampedArray,
};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::data::matrix::MatrixChecksum;
use crate::io::builder::{AnnDataBuilder, DenseBlock, Layout, Target};
use crate::web::convert;
use crate::web::dataset::JsDataset;
use crate::web::error::{invalid_option, to_js};

/// A typed array's contents, copied into wasm memory (one chunk at a time).
enum Chunk {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
}

/// Runs `$body` with `$v` bound to the chunk's values as a slice of their own type.
macro_rules! with_chunk {
    ($chunk:expr, |$v:ident| $body:expr) => {
        match $chunk {
            Chunk::F32($v) => $body,
            Chunk::F64($v) => $body,
            Chunk::I8($v) => $body,
            Chunk::I16($v) => $body,
            Chunk::I32($v) => $body,
            Chunk::I64($v) => $body,
            Chunk::U8($v) => $body,
            Chunk::U16($v) => $body,
            Chunk::U32($v) => $body,
            Chunk::U64($v) => $body,
        }
    };
}

fn chunk(value: &JsValue, what: &str) -> Result<Chunk, JsValue> {
    macro_rules! try_as {
        ($($t:ty => $variant:ident),*) => {$(
            if let Some(a) = value.dyn_ref::<$t>() {
                return Ok(Chunk::$variant(a.to_vec()));
            }
        )*};
    }
    try_as!(Float32Array => F32, Float64Array => F64, Int8Array => I8, Int16Array => I16, Int32Array => I32, BigInt64Array => I64,
            Uint8Array => U8, Uint8ClampedArray => U8, Uint16Array => U16, Uint32Array => U32, BigUint64Array => U64);
    Err(invalid_option(what, "expected a typed array (Float32Array, Float64Array, Int8/16/32Array, Uint8/16/32Array, BigInt64Array or BigUint64Array)"))
}

/// JS counts are numbers; refuses anything that is not an exact non-negative integer.
fn count(x: f64, what: &str) -> Result<usize, JsValue> {
    if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x <= usize::MAX as f64 {
        Ok(x as usize)
    } else {
        Err(invalid_option(what, format!("{x} is not a count")))
    }
}

fn to_mask(m: Option<Vec<u8>>) -> Option<Vec<bool>> {
    m.map(|m| m.into_iter().map(|b| b != 0).collect())
}

/// Receives a data set piece by piece and makes a `Dataset` of it (see `src/js/zarr.js`).
#[wasm_bindgen(js_name = DatasetBuilder)]
pub struct JsDatasetBuilder {
    /// `None` once `finish` has run.
    inner: Option<AnnDataBuilder>,
}

#[wasm_bindgen(js_class = DatasetBuilder)]
impl JsDatasetBuilder {
    /// A data set called `name` (for messages) of `nObs` cells × `nVars` genes whose X arrives as
    /// `layout` ('csr' | 'csc' | 'dense'); `nnz` is the length of X's data (0 for dense).
    #[wasm_bindgen(constructor)]
    pub fn new(name: &str, n_obs: f64, n_vars: f64, layout: &str, nnz: f64) -> Result<JsDatasetBuilder, JsValue> {
        let layout = Layout::parse(layout).map_err(to_js)?;
        let inner = AnnDataBuilder::new(name, count(n_obs, "nObs")?, count(n_vars, "nVars")?, layout, count(nnz, "nnz")?).map_err(to_js)?;
        Ok(Self { inner: Some(inner) })
    }

    fn builder(&mut self) -> Result<&mut AnnDataBuilder, JsValue> {
        self.inner.as_mut().ok_or_else(|| invalid_option("DatasetBuilder", "finish() has already been called"))
    }

    /// Announces `.raw` (`nVars` genes, its own layout and nnz); push to it with target 'raw'.
    #[wasm_bindgen(js_name = beginRaw)]
    pub fn begin_raw(&mut self, n_vars: f64, layout: &str, nnz: f64) -> Result<(), JsValue> {
        let layout = Layout::parse(layout).map_err(to_js)?;
        let (n_vars, nnz) = (count(n_vars, "nVars")?, count(nnz, "nnz")?);
        self.builder()?.begin_raw(n_vars, layout, nnz).map_err(to_js)
    }

    /// The next entries of `target`'s ('X' | 'raw') indptr: any integer typed array (or floats
    /// holding integers).
    #[wasm_bindgen(js_name = pushIndptr)]
    pub fn push_indptr(&mut self, target: &str, values: &JsValue) -> Result<(), JsValue> {
        let target = Target::parse(target).map_err(to_js)?;
        let c = chunk(values, "indptr")?;
        with_chunk!(c, |v| self.builder()?.push_indptr(target, &v)).map_err(to_js)
    }

    /// The next entries of `target`'s indices.
    #[wasm_bindgen(js_name = pushIndices)]
    pub fn push_indices(&mut self, target: &str, values: &JsValue) -> Result<(), JsValue> {
        let target = Target::parse(target).map_err(to_js)?;
        let c = chunk(values, "indices")?;
        with_chunk!(c, |v| self.builder()?.push_indices(target, &v)).map_err(to_js)
    }

    /// The next entries of `target`'s data (any numeric typed array; stored as float32).
    #[wasm_bindgen(js_name = pushData)]
    pub fn push_data(&mut self, target: &str, values: &JsValue) -> Result<(), JsValue> {
        let target = Target::parse(target).map_err(to_js)?;
        let c = chunk(values, "data")?;
        with_chunk!(c, |v| self.builder()?.push_data(target, &v)).map_err(to_js)
    }

    /// Whole rows of a dense matrix (row-major), after the rows already pushed.
    #[wasm_bindgen(js_name = pushDenseRows)]
    pub fn push_dense_rows(&mut self, target: &str, values: &JsValue) -> Result<(), JsValue> {
        let target = Target::parse(target).map_err(to_js)?;
        let c = chunk(values, "values")?;
        with_chunk!(c, |v| self.builder()?.push_dense_rows(target, &v)).map_err(to_js)
    }

    /// One decoded chunk of a dense matrix: `nRows × nCols` values at (`startRow`, `startCol`),
    /// value (r, c) at `values[r * rowStride + c * colStride]` (zarrita's `chunk.stride`; edge
    /// chunks keep their padding). Row bands top to bottom, each band's chunks left to right.
    #[wasm_bindgen(js_name = pushDenseBlock)]
    #[allow(clippy::too_many_arguments)]
    pub fn push_dense_block(
        &mut self,
        target: &str,
        start_row: f64,
        start_col: f64,
        n_rows: f64,
        n_cols: f64,
        values: &JsValue,
        row_stride: f64,
        col_stride: f64,
    ) -> Result<(), JsValue> {
        let target = Target::parse(target).map_err(to_js)?;
        let (start_row, start_col) = (count(start_row, "startRow")?, count(start_col, "startCol")?);
        let (n_rows, n_cols) = (count(n_rows, "nRows")?, count(n_cols, "nCols")?);
        let (row_stride, col_stride) = (count(row_stride, "rowStride")?, count(col_stride, "colStride")?);
        let c = chunk(values, "values")?;
        with_chunk!(c, |v| {
            let block = DenseBlock { start_row, start_col, n_rows, n_cols, values: &v, row_stride, col_stride };
            self.builder()?.push_dense_block(target, block)
        })
        .map_err(to_js)
    }

    /// Keeps only the columns of `target` ('X' | 'raw') named in `genes` (after `setVarNames`,
    /// before its values); every value still counts in each cell's whole-row statistics, so
    /// normalisation equals the full matrix's. Sparse indices and data must then arrive in step.
    /// Returns the number of genes kept.
    #[wasm_bindgen(js_name = keepGenes)]
    pub fn keep_genes(&mut self, target: &str, genes: Vec<String>) -> Result<usize, JsValue> {
        let target = Target::parse(target).map_err(to_js)?;
        self.builder()?.keep_genes(target, &genes).map_err(to_js)
    }

    /// Cell names (the obs index).
    #[wasm_bindgen(js_name = setObsNames)]
    pub fn set_obs_names(&mut self, names: Vec<String>) -> Result<(), JsValue> {
        self.builder()?.set_obs_names(names).map_err(to_js)
    }

    /// Gene names of `target` ('X' | 'raw').
    #[wasm_bindgen(js_name = setVarNames)]
    pub fn set_var_names(&mut self, target: &str, names: Vec<String>) -> Result<(), JsValue> {
        let target = Target::parse(target).map_err(to_js)?;
        self.builder()?.set_var_names(target, names).map_err(to_js)
    }

    /// A categorical obs column: integer `codes` (any integer typed array; negative = missing)
    /// into `categories`.
    #[wasm_bindgen(js_name = addObsCategorical)]
    pub fn add_obs_categorical(&mut self, name: &str, codes: &JsValue, categories: Vec<String>) -> Result<(), JsValue> {
        let c = chunk(codes, "codes")?;
        with_chunk!(c, |v| self.builder()?.add_obs_categorical(name, &v, categories)).map_err(to_js)
    }

    /// A string obs column; `null` entries are missing (the column then becomes categorical).
    #[wasm_bindgen(js_name = addObsStrings)]
    pub fn add_obs_strings(&mut self, name: &str, values: JsValue) -> Result<(), JsValue> {
        let values: Vec<Option<String>> = serde_wasm_bindgen::from_value(values).map_err(|e| invalid_option("values", e))?;
        self.builder()?.add_obs_strings(name, values).map_err(to_js)
    }

    /// A numeric obs column (any numeric typed array); `mask` (Uint8Array, non-zero = missing)
    /// for anndata's nullable integers.
    #[wasm_bindgen(js_name = addObsNumeric)]
    pub fn add_obs_numeric(&mut self, name: &str, values: &JsValue, mask: Option<Vec<u8>>) -> Result<(), JsValue> {
        let c = chunk(values, "values")?;
        let mask = to_mask(mask);
        with_chunk!(c, |v| self.builder()?.add_obs_numeric(name, &v, mask.as_deref())).map_err(to_js)
    }

    /// A boolean obs column (non-zero = true); `mask` for anndata's nullable booleans.
    #[wasm_bindgen(js_name = addObsBool)]
    pub fn add_obs_bool(&mut self, name: &str, values: &JsValue, mask: Option<Vec<u8>>) -> Result<(), JsValue> {
        let c = chunk(values, "values")?;
        let mask = to_mask(mask);
        with_chunk!(c, |v| self.builder()?.add_obs_bool(name, &v, mask.as_deref())).map_err(to_js)
    }

    /// Checks that everything arrived and returns the `Dataset`; the builder is spent afterwards.
    pub fn finish(&mut self) -> Result<JsDataset, JsValue> {
        let inner = self.inner.take().ok_or_else(|| invalid_option("DatasetBuilder", "finish() has already been called"))?;
        inner.finish().map(|a| JsDataset { inner: Rc::new(a) }).map_err(to_js)
    }
}

#[derive(Serialize)]
struct Checksums {
    x: MatrixChecksum,
    raw: Option<MatrixChecksum>,
}

/// Fingerprints of a data set's X and `.raw` matrices (`{ x, raw }`, each `{ n_rows, n_cols, nnz,
/// sum, weighted }`), to check that two readers produced the same matrix.
#[wasm_bindgen(js_name = datasetChecksum)]
pub fn dataset_checksum(dataset: &JsDataset) -> Result<JsValue, JsValue> {
    let a = &dataset.inner;
    convert::to_js(&Checksums { x: a.x.checksum(), raw: a.raw.as_ref().map(|r| r.x.checksum()) })
}

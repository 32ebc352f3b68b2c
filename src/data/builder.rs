//! Building an [`AnnData`] from parts that arrive one at a time: the matrix a chunk at a time
//! (CSR, CSC or dense), then names and obs columns. Readers of chunked formats (AnnData-Zarr, read
//! in JS by zarrita) push each decoded chunk as it comes, so the whole matrix is never held twice:
//! sparse arrays go straight into buffers reserved once at their final size, and dense blocks are
//! converted to CSR as they arrive.
//!
//! Every value is checked as it is pushed — offsets non-negative, starting at 0, never
//! decreasing and at most nnz; indices within the matrix; values finite; lengths matching the
//! declared shape — and [`AnnDataBuilder::finish`] checks that nothing is missing. Errors name the
//! file, the element (`X/indices`, `raw/X/indptr`, `obs/cell_type/codes` …) and the problem, with
//! the same [`SclabelError`] variants the `.h5ad` reader uses: `UnsupportedLayout` for malformed or
//! missing elements, `InvalidValues` for non-finite matrix values. Nothing here panics on input.
use crate::data::anndata::{categorical_from_strings, AnnData, Column, ObsTable, Raw};
use crate::data::matrix::{csc_to_csr, CsrMatrix};
use crate::error::{Result, SclabelError};

/// How a matrix arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `indptr` over rows, `indices` = column of each value.
    Csr,
    /// `indptr` over columns, `indices` = row of each value; converted to CSR by `finish`.
    Csc,
    /// Row-major or column-major blocks of a dense array, converted to CSR as they arrive.
    Dense,
}

impl Layout {
    /// `"csr"`, `"csc"` or `"dense"`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "csr" => Ok(Self::Csr),
            "csc" => Ok(Self::Csc),
            "dense" => Ok(Self::Dense),
            other => Err(SclabelError::InvalidOption { option: "layout".into(), reason: format!("'{other}' (use 'csr', 'csc' or 'dense')") }),
        }
    }
}

/// Which matrix a push goes to: X, or `.raw`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    X,
    Raw,
}

impl Target {
    /// `"X"` or `"raw"`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "X" => Ok(Self::X),
            "raw" => Ok(Self::Raw),
            other => Err(SclabelError::InvalidOption { option: "target".into(), reason: format!("'{other}' (use 'X' or 'raw')") }),
        }
    }
}

/// A number as a stored array holds it: any integer or float width. Conversions are exact or
/// refused, so a reader can hand over chunks in their stored type without converting them first.
pub trait Element: Copy + std::fmt::Display {
    /// The value as an exact non-negative integer (offsets, indices), or `None`.
    fn to_index(self) -> Option<u64>;
    /// The value as an exact integer (category codes; negative means missing), or `None`.
    fn to_int(self) -> Option<i64>;
    /// The value as a matrix entry (may round; overflow gives an infinity, which is refused).
    fn to_f32(self) -> f32;
    /// The value as an obs number.
    fn to_f64(self) -> f64;
}

macro_rules! int_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            fn to_index(self) -> Option<u64> { u64::try_from(self).ok() }
            fn to_int(self) -> Option<i64> { i64::try_from(self).ok() }
            fn to_f32(self) -> f32 { self as f32 }
            fn to_f64(self) -> f64 { self as f64 }
        }
    )*};
}
int_element!(i8, i16, i32, i64, u8, u16, u32, u64);

/// Largest integer a float holds exactly in every case that matters here (2^53).
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

macro_rules! float_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            fn to_index(self) -> Option<u64> {
                let x = f64::from(self);
                (x.is_finite() && x.fract() == 0.0 && (0.0..=MAX_EXACT).contains(&x)).then_some(x as u64)
            }
            fn to_int(self) -> Option<i64> {
                let x = f64::from(self);
                (x.is_finite() && x.fract() == 0.0 && x.abs() <= MAX_EXACT).then_some(x as i64)
            }
            fn to_f32(self) -> f32 { self as f32 }
            fn to_f64(self) -> f64 { f64::from(self) }
        }
    )*};
}
float_element!(f32, f64);

/// One block of a dense matrix: `n_rows × n_cols` values at (`start_row`, `start_col`), value
/// (r, c) of the block at `values[r * row_stride + c * col_stride]`. Strides let a reader pass a
/// decoded chunk as it is: C order, Fortran order, or an edge chunk padded past the matrix.
#[derive(Debug, Clone, Copy)]
pub struct DenseBlock<'a, T> {
    pub start_row: usize,
    pub start_col: usize,
    pub n_rows: usize,
    pub n_cols: usize,
    pub values: &'a [T],
    pub row_stride: usize,
    pub col_stride: usize,
}

/// A row band of a dense matrix whose column blocks have not all arrived yet: only its non-zeros.
struct Band {
    start: usize,
    n_rows: usize,
    /// Columns received so far (blocks arrive left to right).
    cols_done: usize,
    rows: Vec<(Vec<u32>, Vec<f32>)>,
}

/// One matrix being received.
struct MatrixBuilder {
    /// Element path for messages: `X` or `raw/X`.
    path: String,
    layout: Layout,
    n_rows: usize,
    n_cols: usize,
    /// Declared number of stored values (sparse layouts; the length of `data`).
    nnz: usize,
    indptr: Vec<u64>,
    indices: Vec<u32>,
    data: Vec<f32>,
    /// Dense: rows converted so far, and the band in progress.
    rows_done: usize,
    band: Option<Band>,
}

/// Receives a data set's parts and assembles the [`AnnData`]; see the module documentation.
pub struct AnnDataBuilder {
    file: String,
    n_obs: usize,
    x: MatrixBuilder,
    var_names: Option<Vec<String>>,
    obs_names: Option<Vec<String>>,
    obs: Vec<(String, Column)>,
    raw: Option<(MatrixBuilder, Option<Vec<String>>)>,
}

impl AnnDataBuilder {
    /// Starts a data set of `n_obs` cells × `n_vars` genes whose X arrives in `layout`; `nnz` is
    /// the length of X's `data` / `indices` arrays (ignored for dense). `file` names the data set
    /// in error messages.
    pub fn new(file: &str, n_obs: usize, n_vars: usize, layout: Layout, nnz: usize) -> Result<Self> {
        let x = MatrixBuilder::new(file, "X", n_obs, n_vars, layout, nnz)?;
        Ok(Self { file: file.to_string(), n_obs, x, var_names: None, obs_names: None, obs: Vec::new(), raw: None })
    }

    /// Announces `.raw`: a matrix over the same cells with its own `n_vars` genes.
    pub fn begin_raw(&mut self, n_vars: usize, layout: Layout, nnz: usize) -> Result<()> {
        if self.raw.is_some() {
            return Err(self.unsupported("raw", "given twice".into()));
        }
        self.raw = Some((MatrixBuilder::new(&self.file, "raw/X", self.n_obs, n_vars, layout, nnz)?, None));
        Ok(())
    }

    /// The next entries of a sparse matrix's `indptr` (any integer or integral float type).
    pub fn push_indptr<T: Element>(&mut self, target: Target, values: &[T]) -> Result<()> {
        let file = self.file.clone();
        self.matrix(target)?.push_indptr(&file, values)
    }

    /// The next entries of a sparse matrix's `indices`.
    pub fn push_indices<T: Element>(&mut self, target: Target, values: &[T]) -> Result<()> {
        let file = self.file.clone();
        self.matrix(target)?.push_indices(&file, values)
    }

    /// The next entries of a sparse matrix's `data`.
    pub fn push_data<T: Element>(&mut self, target: Target, values: &[T]) -> Result<()> {
        let file = self.file.clone();
        self.matrix(target)?.push_data(&file, values)
    }

    /// A block of a dense matrix. Blocks come in row bands from the top; within a band, left to
    /// right, all the band's height (one chunk row of a chunked array).
    pub fn push_dense_block<T: Element>(&mut self, target: Target, block: DenseBlock<'_, T>) -> Result<()> {
        let file = self.file.clone();
        self.matrix(target)?.push_dense_block(&file, block)
    }

    /// Whole rows of a dense matrix (row-major), following the rows already pushed.
    pub fn push_dense_rows<T: Element>(&mut self, target: Target, values: &[T]) -> Result<()> {
        let file = self.file.clone();
        let m = self.matrix(target)?;
        let n_cols = m.n_cols;
        if n_cols == 0 || !values.len().is_multiple_of(n_cols) {
            return Err(m.unsupported(&file, "", format!("{} values are not whole rows of {n_cols} columns", values.len())));
        }
        let block = DenseBlock { start_row: m.rows_done, start_col: 0, n_rows: values.len() / n_cols, n_cols, values, row_stride: n_cols, col_stride: 1 };
        if block.n_rows == 0 {
            return Ok(());
        }
        m.push_dense_block(&file, block)
    }

    /// The cell names (obs index); one per cell.
    pub fn set_obs_names(&mut self, names: Vec<String>) -> Result<()> {
        if names.len() != self.n_obs {
            return Err(self.unsupported("obs", format!("{} names for the {} rows of X", names.len(), self.n_obs)));
        }
        self.obs_names = Some(names);
        Ok(())
    }

    /// The gene names (var index) of X or of `.raw`; one per column.
    pub fn set_var_names(&mut self, target: Target, names: Vec<String>) -> Result<()> {
        let (element, n) = match target {
            Target::X => ("var", self.x.n_cols),
            Target::Raw => ("raw/var", self.raw_matrix()?.n_cols),
        };
        if names.len() != n {
            return Err(self.unsupported(element, format!("{} names for the {n} columns of its matrix", names.len())));
        }
        match target {
            Target::X => self.var_names = Some(names),
            Target::Raw => {
                if let Some(raw) = self.raw.as_mut() {
                    raw.1 = Some(names);
                }
            }
        }
        Ok(())
    }

    /// A categorical column: integer `codes` into `categories` (negative = missing).
    pub fn add_obs_categorical<T: Element>(&mut self, name: &str, codes: &[T], categories: Vec<String>) -> Result<()> {
        let path = format!("obs/{name}/codes");
        self.check_column(name, codes.len(), &path)?;
        let mut out = Vec::with_capacity(codes.len());
        for (i, &c) in codes.iter().enumerate() {
            match c.to_int() {
                Some(k) if k < 0 => out.push(-1),
                Some(k) if (k as u64) < categories.len() as u64 => out.push(k as i32),
                Some(k) => return Err(self.unsupported(&path, format!("code {k} (cell {i}) but only {} categories", categories.len()))),
                None => return Err(self.unsupported(&path, format!("code {c} (cell {i}) is not an integer"))),
            }
        }
        self.obs.push((name.to_string(), Column::Categorical { codes: out, categories }));
        Ok(())
    }

    /// A string column; `None` marks a missing value, which makes it a categorical (as the `.h5ad`
    /// reader does with nullable strings).
    pub fn add_obs_strings(&mut self, name: &str, values: Vec<Option<String>>) -> Result<()> {
        self.check_column(name, values.len(), &format!("obs/{name}"))?;
        let column = if values.iter().all(Option::is_some) {
            Column::Strings(values.into_iter().flatten().collect())
        } else {
            let missing: Vec<bool> = values.iter().map(Option::is_none).collect();
            let values: Vec<String> = values.into_iter().map(Option::unwrap_or_default).collect();
            categorical_from_strings(&values, &missing)
        };
        self.obs.push((name.to_string(), column));
        Ok(())
    }

    /// A numeric column; `missing[i]` true (a nullable integer's mask) makes value i NaN.
    pub fn add_obs_numeric<T: Element>(&mut self, name: &str, values: &[T], missing: Option<&[bool]>) -> Result<()> {
        self.check_column(name, values.len(), &format!("obs/{name}"))?;
        self.check_mask(name, values.len(), missing)?;
        let v = values
            .iter()
            .enumerate()
            .map(|(i, x)| if missing.is_some_and(|m| m[i]) { f64::NAN } else { x.to_f64() })
            .collect();
        self.obs.push((name.to_string(), Column::Numeric(v)));
        Ok(())
    }

    /// A boolean column (non-zero = true); with missing values (a nullable boolean's mask) it
    /// becomes a categorical over `False` / `True`, as in the `.h5ad` reader.
    pub fn add_obs_bool<T: Element>(&mut self, name: &str, values: &[T], missing: Option<&[bool]>) -> Result<()> {
        self.check_column(name, values.len(), &format!("obs/{name}"))?;
        self.check_mask(name, values.len(), missing)?;
        let v: Vec<bool> = values.iter().map(|x| x.to_f64() != 0.0).collect();
        let column = match missing {
            Some(m) if m.iter().any(|&b| b) => Column::Categorical {
                codes: v.iter().zip(m).map(|(&b, &miss)| if miss { -1 } else { i32::from(b) }).collect(),
                categories: vec!["False".into(), "True".into()],
            },
            _ => Column::Bool(v),
        };
        self.obs.push((name.to_string(), column));
        Ok(())
    }

    /// Checks that every part arrived complete and assembles the data set (CSC is converted to
    /// CSR here).
    pub fn finish(self) -> Result<AnnData> {
        let obs_names = self.obs_names.ok_or_else(|| unsupported(&self.file, "obs", "no cell names (obs index) were given".into()))?;
        let var_names = self.var_names.ok_or_else(|| unsupported(&self.file, "var", "no gene names (var index) were given".into()))?;
        let x = self.x.finish(&self.file)?;
        let raw = match self.raw {
            Some((m, names)) => {
                let var_names = names.ok_or_else(|| unsupported(&self.file, "raw/var", "no gene names for .raw were given".into()))?;
                Some(Raw { x: m.finish(&self.file)?, var_names, x_stats: None })
            }
            None => None,
        };
        let ad = AnnData { x, obs: ObsTable { columns: self.obs }, obs_names, var_names, var_ids: Vec::new(), x_stats: None, raw };
        ad.validate()?;
        Ok(ad)
    }

    // ---------------------------------------------------------------- helpers

    fn matrix(&mut self, target: Target) -> Result<&mut MatrixBuilder> {
        match target {
            Target::X => Ok(&mut self.x),
            Target::Raw => {
                let file = &self.file;
                self.raw.as_mut().map(|r| &mut r.0).ok_or_else(|| unsupported(file, "raw/X", "pushed before begin_raw".into()))
            }
        }
    }

    fn raw_matrix(&self) -> Result<&MatrixBuilder> {
        self.raw.as_ref().map(|r| &r.0).ok_or_else(|| self.unsupported("raw/var", "given before begin_raw".into()))
    }

    fn check_column(&self, name: &str, len: usize, path: &str) -> Result<()> {
        if self.obs.iter().any(|(n, _)| n == name) {
            return Err(self.unsupported(&format!("obs/{name}"), "the column is given twice".into()));
        }
        if len != self.n_obs {
            return Err(self.unsupported(path, format!("{len} values but X has {} rows", self.n_obs)));
        }
        Ok(())
    }

    fn check_mask(&self, name: &str, len: usize, missing: Option<&[bool]>) -> Result<()> {
        match missing {
            Some(m) if m.len() != len => Err(self.unsupported(&format!("obs/{name}/mask"), format!("{} entries for {len} values", m.len()))),
            _ => Ok(()),
        }
    }

    fn unsupported(&self, element: &str, reason: String) -> SclabelError {
        unsupported(&self.file, element, reason)
    }
}

fn unsupported(file: &str, element: &str, reason: String) -> SclabelError {
    SclabelError::UnsupportedLayout { file: file.to_string(), element: element.to_string(), reason }
}

/// Reserves exactly `n` more elements, or says the data set does not fit in memory.
fn reserve<T>(v: &mut Vec<T>, n: usize, file: &str, element: &str) -> Result<()> {
    v.try_reserve_exact(n).map_err(|_| SclabelError::InvalidFile {
        file: file.to_string(),
        reason: format!("no memory for the {n} values of '{element}'"),
    })
}

impl MatrixBuilder {
    fn new(file: &str, path: &str, n_rows: usize, n_cols: usize, layout: Layout, nnz: usize) -> Result<Self> {
        let minor = if layout == Layout::Csc { n_rows } else { n_cols };
        if minor as u64 > u64::from(u32::MAX) + 1 {
            return Err(unsupported(file, path, format!("{n_rows} × {n_cols} is more than this reader indexes")));
        }
        let mut m = Self {
            path: path.to_string(),
            layout,
            n_rows,
            n_cols,
            nnz: if layout == Layout::Dense { 0 } else { nnz },
            indptr: Vec::new(),
            indices: Vec::new(),
            data: Vec::new(),
            rows_done: 0,
            band: None,
        };
        // Sparse arrays arrive at their declared size: reserve it once, so the buffers never
        // reallocate (a reallocation briefly holds the old and the new buffer).
        let major = m.major();
        let element = m.element("indptr");
        reserve(&mut m.indptr, major.saturating_add(1), file, &element)?;
        if layout == Layout::Dense {
            m.indptr.push(0);
        } else {
            let (indices, data) = (m.element("indices"), m.element("data"));
            reserve(&mut m.indices, nnz, file, &indices)?;
            reserve(&mut m.data, nnz, file, &data)?;
        }
        Ok(m)
    }

    /// Rows for CSR and dense, columns for CSC: what `indptr` runs over.
    fn major(&self) -> usize {
        if self.layout == Layout::Csc {
            self.n_cols
        } else {
            self.n_rows
        }
    }

    fn element(&self, part: &str) -> String {
        if part.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{part}", self.path)
        }
    }

    fn unsupported(&self, file: &str, part: &str, reason: String) -> SclabelError {
        unsupported(file, &self.element(part), reason)
    }

    fn expect_sparse(&self, file: &str, part: &str) -> Result<()> {
        if self.layout == Layout::Dense {
            return Err(self.unsupported(file, part, "sparse parts pushed to a matrix announced as dense".into()));
        }
        Ok(())
    }

    /// Refuses a chunk that would take `part` past its declared length `limit`.
    fn check_room(&self, file: &str, part: &str, have: usize, more: usize, limit: usize, what: &str) -> Result<()> {
        if have.checked_add(more).is_none_or(|n| n > limit) {
            return Err(self.unsupported(file, part, format!("more than the {limit} entries {what}")));
        }
        Ok(())
    }

    fn push_indptr<T: Element>(&mut self, file: &str, values: &[T]) -> Result<()> {
        self.expect_sparse(file, "indptr")?;
        let expected = self.major() + 1;
        let what = format!("a {} × {} matrix has ({} + 1)", self.n_rows, self.n_cols, self.major());
        self.check_room(file, "indptr", self.indptr.len(), values.len(), expected, &what)?;
        for &v in values {
            let pos = self.indptr.len();
            let Some(x) = v.to_index() else {
                return Err(self.unsupported(file, "indptr", format!("entry {pos} is {v}, not a non-negative integer")));
            };
            match self.indptr.last() {
                None if x != 0 => return Err(self.unsupported(file, "indptr", format!("starts at {x}, not 0"))),
                Some(&prev) if x < prev => {
                    return Err(self.unsupported(file, "indptr", format!("decreases at entry {pos} ({prev} then {x})")));
                }
                _ => {}
            }
            if x > self.nnz as u64 {
                return Err(self.unsupported(file, "indptr", format!("entry {pos} is {x}, past nnz = {} (the length of {})", self.nnz, self.element("data"))));
            }
            self.indptr.push(x);
        }
        Ok(())
    }

    fn push_indices<T: Element>(&mut self, file: &str, values: &[T]) -> Result<()> {
        self.expect_sparse(file, "indices")?;
        let what = format!("nnz = {} (the length of {}) allows", self.nnz, self.element("data"));
        self.check_room(file, "indices", self.indices.len(), values.len(), self.nnz, &what)?;
        let (bound, unit) = if self.layout == Layout::Csc { (self.n_rows, "rows") } else { (self.n_cols, "columns") };
        for &v in values {
            match v.to_index() {
                Some(x) if x < bound as u64 => self.indices.push(x as u32),
                Some(x) => {
                    return Err(self.unsupported(file, "indices", format!("entry {} is {x}, out of range for {bound} {unit}", self.indices.len())));
                }
                None => return Err(self.unsupported(file, "indices", format!("entry {} is {v}, not a non-negative integer", self.indices.len()))),
            }
        }
        Ok(())
    }

    fn push_data<T: Element>(&mut self, file: &str, values: &[T]) -> Result<()> {
        self.expect_sparse(file, "data")?;
        let what = format!("nnz = {} allows", self.nnz);
        self.check_room(file, "data", self.data.len(), values.len(), self.nnz, &what)?;
        for &v in values {
            let x = v.to_f32();
            if !x.is_finite() {
                return Err(self.non_finite(file, "data", self.data.len(), v));
            }
            self.data.push(x);
        }
        Ok(())
    }

    fn non_finite(&self, file: &str, part: &str, pos: impl std::fmt::Display, v: impl std::fmt::Display) -> SclabelError {
        SclabelError::InvalidValues(format!(
            "{file}: '{}' has a non-finite value at {pos} ({v}, as float32); the matrix must hold finite numbers",
            self.element(part)
        ))
    }

    fn push_dense_block<T: Element>(&mut self, file: &str, b: DenseBlock<'_, T>) -> Result<()> {
        if self.layout != Layout::Dense {
            return Err(self.unsupported(file, "", "dense blocks pushed to a matrix announced as sparse".into()));
        }
        let bad = |reason: String| self.unsupported(file, "", reason);
        let where_ = format!("block at ({}, {}) of {} × {}", b.start_row, b.start_col, b.n_rows, b.n_cols);
        if b.n_rows == 0 || b.n_cols == 0 {
            return Err(bad(format!("{where_} is empty")));
        }
        if b.start_row.checked_add(b.n_rows).is_none_or(|e| e > self.n_rows) || b.start_col.checked_add(b.n_cols).is_none_or(|e| e > self.n_cols) {
            return Err(bad(format!("{where_} reaches past the {} × {} matrix", self.n_rows, self.n_cols)));
        }
        let last = (b.n_rows - 1).checked_mul(b.row_stride).and_then(|a| (b.n_cols - 1).checked_mul(b.col_stride).and_then(|c| a.checked_add(c)));
        if last.is_none_or(|l| l >= b.values.len()) {
            return Err(bad(format!("{where_} with strides ({}, {}) needs more than the {} values given", b.row_stride, b.col_stride, b.values.len())));
        }
        // Bands run top to bottom; within one, blocks run left to right over the band's rows.
        match &self.band {
            None if b.start_row != self.rows_done || b.start_col != 0 => {
                return Err(bad(format!("{where_} arrives out of order (next: row {}, column 0)", self.rows_done)));
            }
            Some(band) if b.start_row != band.start || b.n_rows != band.n_rows || b.start_col != band.cols_done => {
                return Err(bad(format!("{where_} arrives out of order (next: rows {}..{}, column {})", band.start, band.start + band.n_rows, band.cols_done)));
            }
            _ => {}
        }
        if self.band.is_none() && b.n_cols == self.n_cols {
            // A full-width block: straight into the CSR arrays.
            for r in 0..b.n_rows {
                for c in 0..b.n_cols {
                    let v = b.values[r * b.row_stride + c * b.col_stride];
                    let x = v.to_f32();
                    if !x.is_finite() {
                        return Err(self.non_finite(file, "", format!("row {}, column {c}", b.start_row + r), v));
                    }
                    if x != 0.0 {
                        self.indices.push(c as u32);
                        self.data.push(x);
                    }
                }
                self.indptr.push(self.data.len() as u64);
            }
            self.rows_done += b.n_rows;
            return Ok(());
        }
        let mut band = self.band.take().unwrap_or_else(|| Band { start: b.start_row, n_rows: b.n_rows, cols_done: 0, rows: vec![(Vec::new(), Vec::new()); b.n_rows] });
        for (r, (idx, val)) in band.rows.iter_mut().enumerate() {
            for c in 0..b.n_cols {
                let v = b.values[r * b.row_stride + c * b.col_stride];
                let x = v.to_f32();
                if !x.is_finite() {
                    return Err(self.non_finite(file, "", format!("row {}, column {}", b.start_row + r, b.start_col + c), v));
                }
                if x != 0.0 {
                    idx.push((b.start_col + c) as u32);
                    val.push(x);
                }
            }
        }
        band.cols_done += b.n_cols;
        if band.cols_done < self.n_cols {
            self.band = Some(band);
            return Ok(());
        }
        for (idx, val) in band.rows {
            self.indices.extend_from_slice(&idx);
            self.data.extend_from_slice(&val);
            self.indptr.push(self.data.len() as u64);
        }
        self.rows_done += band.n_rows;
        Ok(())
    }

    fn finish(mut self, file: &str) -> Result<CsrMatrix> {
        if self.layout == Layout::Dense {
            if let Some(band) = &self.band {
                return Err(self.unsupported(file, "", format!("rows {}..{} stop at column {} of {}", band.start, band.start + band.n_rows, band.cols_done, self.n_cols)));
            }
            if self.n_cols == 0 {
                // No values to push: every row is empty.
                self.indptr.resize(self.n_rows + 1, 0);
                self.rows_done = self.n_rows;
            }
            if self.rows_done != self.n_rows {
                return Err(self.unsupported(file, "", format!("only {} of its {} rows arrived", self.rows_done, self.n_rows)));
            }
            // Dense data grow as they come; give back the unused capacity (in place).
            self.indices.shrink_to_fit();
            self.data.shrink_to_fit();
        } else {
            let expected = self.major() + 1;
            for (part, got, want) in [("indptr", self.indptr.len(), expected), ("indices", self.indices.len(), self.nnz), ("data", self.data.len(), self.nnz)] {
                if got != want {
                    return Err(self.unsupported(file, part, format!("{got} entries arrived, expected {want}")));
                }
            }
            if self.indptr.last().copied() != Some(self.nnz as u64) {
                return Err(self.unsupported(file, "indptr", format!("ends at {}, not at nnz = {}", self.indptr.last().copied().unwrap_or(0), self.nnz)));
            }
        }
        let (path, n_rows, n_cols) = (self.path.clone(), self.n_rows, self.n_cols);
        let m = match self.layout {
            Layout::Csr | Layout::Dense => CsrMatrix::new(n_rows, n_cols, self.indptr, self.indices, self.data),
            // The CSC arrays are dropped as soon as the CSR copy exists.
            Layout::Csc => csc_to_csr(n_rows, n_cols, &self.indptr, &self.indices, &self.data),
        };
        m.map_err(|e| unsupported(file, &path, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 3 × 4 matrix used throughout, with its CSR and CSC forms.
    ///   [1 0 2 0]
    ///   [0 0 0 3]
    ///   [4 5 0 0]
    const DENSE: [f32; 12] = [1., 0., 2., 0., 0., 0., 0., 3., 4., 5., 0., 0.];
    const CSR: ([u64; 4], [u32; 5], [f32; 5]) = ([0, 2, 3, 5], [0, 2, 3, 0, 1], [1., 2., 3., 4., 5.]);
    const CSC: ([u64; 5], [u32; 5], [f32; 5]) = ([0, 2, 3, 4, 5], [0, 2, 2, 0, 1], [1., 4., 5., 2., 3.]);

    fn expected() -> CsrMatrix {
        CsrMatrix::from_dense(3, 4, &DENSE).unwrap()
    }

    fn named(mut b: AnnDataBuilder) -> AnnDataBuilder {
        b.set_obs_names(vec!["c0".into(), "c1".into(), "c2".into()]).unwrap();
        b.set_var_names(Target::X, vec!["g0".into(), "g1".into(), "g2".into(), "g3".into()]).unwrap();
        b
    }

    fn msg(r: Result<impl std::fmt::Debug>) -> String {
        let e = r.expect_err("expected an error");
        e.to_string()
    }

    #[test]
    fn csr_in_uneven_chunks_of_any_integer_type() {
        let mut b = named(AnnDataBuilder::new("t.zarr", 3, 4, Layout::Csr, 5).unwrap());
        // indptr as int64 in two chunks, indices as int32 in three, data as float64.
        b.push_indptr(Target::X, &[0i64, 2]).unwrap();
        b.push_indptr(Target::X, &[3i64, 5]).unwrap();
        b.push_indices(Target::X, &[0i32, 2]).unwrap();
        b.push_indices(Target::X, &[3i32]).unwrap();
        b.push_indices(Target::X, &[0i32, 1]).unwrap();
        b.push_data(Target::X, &[1f64, 2., 3., 4., 5.]).unwrap();
        let ad = b.finish().unwrap();
        assert_eq!(ad.x, expected());
        assert_eq!(ad.x.indptr, CSR.0);
    }

    #[test]
    fn csc_becomes_csr() {
        let mut b = named(AnnDataBuilder::new("t.zarr", 3, 4, Layout::Csc, 5).unwrap());
        b.push_indptr(Target::X, &CSC.0).unwrap();
        b.push_indices(Target::X, &CSC.1).unwrap();
        b.push_data(Target::X, &CSC.2).unwrap();
        assert_eq!(b.finish().unwrap().x, expected());
    }

    #[test]
    fn dense_rows_and_two_d_blocks_with_padding_and_fortran_order() {
        // Whole rows.
        let mut b = named(AnnDataBuilder::new("t.zarr", 3, 4, Layout::Dense, 0).unwrap());
        b.push_dense_rows(Target::X, &DENSE[..8]).unwrap();
        b.push_dense_rows(Target::X, &DENSE[8..]).unwrap();
        assert_eq!(b.finish().unwrap().x, expected());

        // 2 × 3 chunks, C order, edge chunks padded to the full chunk shape (as zarr decodes them).
        let mut b = named(AnnDataBuilder::new("t.zarr", 3, 4, Layout::Dense, 0).unwrap());
        let chunk = |r0: usize, c0: usize| -> Vec<f64> {
            let mut v = vec![f64::NAN; 6]; // padding is never read
            for r in 0..2 {
                for c in 0..3 {
                    if r0 + r < 3 && c0 + c < 4 {
                        v[r * 3 + c] = f64::from(DENSE[(r0 + r) * 4 + c0 + c]);
                    }
                }
            }
            v
        };
        for r0 in [0, 2] {
            let rows = 2.min(3 - r0);
            for c0 in [0, 3] {
                let v = chunk(r0, c0);
                let block = DenseBlock { start_row: r0, start_col: c0, n_rows: rows, n_cols: 3.min(4 - c0), values: &v, row_stride: 3, col_stride: 1 };
                b.push_dense_block(Target::X, block).unwrap();
            }
        }
        assert_eq!(b.finish().unwrap().x, expected());

        // The whole matrix as one Fortran-order block of int16.
        let mut b = named(AnnDataBuilder::new("t.zarr", 3, 4, Layout::Dense, 0).unwrap());
        let fortran: Vec<i16> = (0..12).map(|k| DENSE[(k % 3) * 4 + k / 3] as i16).collect();
        let block = DenseBlock { start_row: 0, start_col: 0, n_rows: 3, n_cols: 4, values: &fortran, row_stride: 1, col_stride: 3 };
        b.push_dense_block(Target::X, block).unwrap();
        assert_eq!(b.finish().unwrap().x, expected());
    }

    #[test]
    fn raw_obs_columns_and_names() {
        let mut b = named(AnnDataBuilder::new("t.zarr", 3, 4, Layout::Csr, 5).unwrap());
        b.push_indptr(Target::X, &CSR.0).unwrap();
        b.push_indices(Target::X, &CSR.1).unwrap();
        b.push_data(Target::X, &CSR.2).unwrap();
        b.begin_raw(2, Layout::Dense, 0).unwrap();
        b.push_dense_rows(Target::Raw, &[0f32, 1., 2., 0., 0., 0.]).unwrap();
        b.set_var_names(Target::Raw, vec!["r0".into(), "r1".into()]).unwrap();
        b.add_obs_categorical("type", &[1i8, -1, 0], vec!["a".into(), "b".into()]).unwrap();
        b.add_obs_strings("id", vec![Some("x".into()), Some("y".into()), Some("z".into())]).unwrap();
        b.add_obs_strings("maybe", vec![Some("x".into()), None, Some("x".into())]).unwrap();
        b.add_obs_numeric("n", &[1i64, 2, 3], Some(&[false, true, false][..])).unwrap();
        b.add_obs_bool("flag", &[1u8, 0, 1], None).unwrap();
        b.add_obs_bool("nflag", &[1u8, 0, 1], Some(&[false, false, true][..])).unwrap();
        let ad = b.finish().unwrap();
        let raw = ad.raw.as_ref().unwrap();
        assert_eq!(raw.x, CsrMatrix::from_dense(3, 2, &[0., 1., 2., 0., 0., 0.]).unwrap());
        assert_eq!(raw.var_names, ["r0", "r1"]);
        let col = |n: &str| ad.obs.get(n).unwrap().to_strings();
        let s = |x: &str| Some(x.to_string());
        assert_eq!(col("type"), [s("b"), None, s("a")]);
        assert_eq!(ad.obs.get("id").unwrap(), &Column::Strings(vec!["x".into(), "y".into(), "z".into()]));
        assert_eq!(ad.obs.get("maybe").unwrap(), &Column::Categorical { codes: vec![0, -1, 0], categories: vec!["x".into()] });
        assert_eq!(col("n"), [s("1"), None, s("3")]);
        assert_eq!(ad.obs.get("flag").unwrap(), &Column::Bool(vec![true, false, true]));
        assert_eq!(col("nflag"), [s("True"), s("False"), None]);
        assert_eq!(ad.obs.names(), ["type", "id", "maybe", "n", "flag", "nflag"]);
    }

    #[test]
    fn bad_sparse_parts_are_named() {
        let new = || AnnDataBuilder::new("bad.zarr", 3, 4, Layout::Csr, 5).unwrap();
        let e = msg(new().push_indptr(Target::X, &[1u32, 2]));
        assert!(e.contains("bad.zarr") && e.contains("'X/indptr'") && e.contains("starts at 1"), "{e}");
        let e = msg(new().push_indptr(Target::X, &[0u32, 3, 2]));
        assert!(e.contains("decreases at entry 2 (3 then 2)"), "{e}");
        let e = msg(new().push_indptr(Target::X, &[0u32, 6]));
        assert!(e.contains("past nnz = 5"), "{e}");
        let e = msg(new().push_indptr(Target::X, &[0i32, -1]));
        assert!(e.contains("entry 1 is -1, not a non-negative integer"), "{e}");
        let e = msg(new().push_indptr(Target::X, &[0f64, 1.5]));
        assert!(e.contains("1.5"), "{e}");
        let e = msg(new().push_indptr(Target::X, &[0u32, 1, 2, 3, 5]));
        assert!(e.contains("more than the 4 entries"), "{e}");
        let e = msg(new().push_indices(Target::X, &[0u32, 4]));
        assert!(e.contains("'X/indices'") && e.contains("entry 1 is 4, out of range for 4 columns"), "{e}");
        let e = msg(new().push_indices(Target::X, &[0u64; 6]));
        assert!(e.contains("more than the 5 entries"), "{e}");
        let e = msg(new().push_data(Target::X, &[1f32, f32::NAN]));
        assert!(e.contains("bad.zarr") && e.contains("'X/data'") && e.contains("NaN"), "{e}");
        // float64 beyond float32's range is refused too.
        assert!(msg(new().push_data(Target::X, &[1e300f64])).contains("non-finite"));
        let mut csc = AnnDataBuilder::new("bad.zarr", 3, 4, Layout::Csc, 5).unwrap();
        assert!(msg(csc.push_indices(Target::X, &[3u32])).contains("out of range for 3 rows"));
        // Pushing to .raw before announcing it.
        assert!(msg(new().push_data(Target::Raw, &[1f32])).contains("'raw/X'"));
    }

    #[test]
    fn incomplete_parts_are_refused_at_finish() {
        let partial = |indptr: &[u64], indices: &[u32], data: &[f32]| {
            let mut b = named(AnnDataBuilder::new("p.zarr", 3, 4, Layout::Csr, 5).unwrap());
            b.push_indptr(Target::X, indptr).unwrap();
            b.push_indices(Target::X, indices).unwrap();
            b.push_data(Target::X, data).unwrap();
            b.finish().map(|_| ())
        };
        assert!(msg(partial(&CSR.0[..3], &CSR.1, &CSR.2)).contains("'X/indptr': 3 entries arrived, expected 4"));
        assert!(msg(partial(&CSR.0, &CSR.1[..4], &CSR.2)).contains("'X/indices': 4 entries arrived, expected 5"));
        assert!(msg(partial(&[0, 2, 3, 4], &CSR.1, &CSR.2)).contains("ends at 4, not at nnz = 5"));
        // No names.
        let mut b = AnnDataBuilder::new("p.zarr", 1, 1, Layout::Dense, 0).unwrap();
        b.push_dense_rows(Target::X, &[1f32]).unwrap();
        assert!(msg(b.finish()).contains("no cell names"));
        // Dense: a band missing its right-hand block, and missing rows.
        let mut b = named(AnnDataBuilder::new("p.zarr", 3, 4, Layout::Dense, 0).unwrap());
        let block = DenseBlock { start_row: 0, start_col: 0, n_rows: 2, n_cols: 2, values: &DENSE, row_stride: 4, col_stride: 1 };
        b.push_dense_block(Target::X, block).unwrap();
        assert!(msg(b.finish()).contains("rows 0..2 stop at column 2 of 4"));
        let mut b = named(AnnDataBuilder::new("p.zarr", 3, 4, Layout::Dense, 0).unwrap());
        b.push_dense_rows(Target::X, &DENSE[..4]).unwrap();
        assert!(msg(b.finish()).contains("only 1 of its 3 rows arrived"));
    }

    #[test]
    fn bad_dense_blocks_and_columns_are_named() {
        let new = || named(AnnDataBuilder::new("d.zarr", 3, 4, Layout::Dense, 0).unwrap());
        fn block(r: usize, c: usize, nr: usize, nc: usize, v: &[f32]) -> DenseBlock<'_, f32> {
            DenseBlock { start_row: r, start_col: c, n_rows: nr, n_cols: nc, values: v, row_stride: 4, col_stride: 1 }
        }
        assert!(msg(new().push_dense_block(Target::X, block(1, 0, 1, 4, &DENSE))).contains("out of order (next: row 0, column 0)"));
        assert!(msg(new().push_dense_block(Target::X, block(0, 2, 1, 3, &DENSE))).contains("reaches past the 3 × 4 matrix"));
        assert!(msg(new().push_dense_block(Target::X, block(0, 0, 3, 4, &DENSE[..11]))).contains("needs more than the 11 values"));
        let mut b = new();
        b.push_dense_block(Target::X, block(0, 0, 2, 2, &DENSE)).unwrap();
        assert!(msg(b.push_dense_block(Target::X, block(0, 2, 1, 2, &DENSE))).contains("next: rows 0..2, column 2"));
        let e = msg(new().push_dense_rows(Target::X, &[0f32, 1., f32::INFINITY, 0.]));
        assert!(e.contains("'X'") && e.contains("row 0, column 2"), "{e}");
        assert!(msg(new().push_dense_rows(Target::X, &[0f32; 5])).contains("not whole rows of 4 columns"));
        assert!(msg(new().push_indptr(Target::X, &[0u32])).contains("announced as dense"));

        let mut b = new();
        assert!(msg(b.add_obs_categorical("t", &[0i32, 2, 0], vec!["a".into(), "b".into()])).contains("'obs/t/codes': code 2 (cell 1) but only 2 categories"));
        assert!(msg(b.add_obs_numeric("n", &[1f64, 2.], None)).contains("'obs/n': 2 values but X has 3 rows"));
        assert!(msg(b.add_obs_bool("f", &[1u8, 0, 1], Some(&[false][..]))).contains("'obs/f/mask': 1 entries for 3 values"));
        b.add_obs_numeric("n", &[1f64, 2., 3.], None).unwrap();
        assert!(msg(b.add_obs_numeric("n", &[1f64, 2., 3.], None)).contains("given twice"));
        assert!(msg(b.set_obs_names(vec!["a".into()])).contains("1 names for the 3 rows of X"));
        assert!(msg(b.set_var_names(Target::Raw, vec![])).contains("before begin_raw"));
        assert!(msg(AnnDataBuilder::new("d.zarr", 3, 4, Layout::Dense, 0).and_then(|mut b| b.begin_raw(1, Layout::Csr, usize::MAX))).contains("no memory"));
    }

    #[test]
    fn empty_shapes() {
        // 0 cells, and 0 genes (dense with no columns has no blocks to push).
        let mut b = AnnDataBuilder::new("e.zarr", 0, 2, Layout::Csr, 0).unwrap();
        b.push_indptr(Target::X, &[0u32]).unwrap();
        b.set_obs_names(vec![]).unwrap();
        b.set_var_names(Target::X, vec!["a".into(), "b".into()]).unwrap();
        assert_eq!(b.finish().unwrap().n_obs(), 0);
        let mut b = AnnDataBuilder::new("e.zarr", 2, 0, Layout::Dense, 0).unwrap();
        b.set_obs_names(vec!["a".into(), "b".into()]).unwrap();
        b.set_var_names(Target::X, vec![]).unwrap();
        assert_eq!(b.finish().unwrap().x.indptr, [0, 0, 0]);
    }

    #[test]
    fn checksum_sees_a_moved_value() {
        let a = expected().checksum();
        let mut moved = expected();
        moved.indices.swap(0, 1); // same values, different columns
        let b = moved.checksum();
        assert_eq!((a.nnz, a.sum), (b.nnz, b.sum));
        assert_ne!(a.weighted, b.weighted);
    }
}

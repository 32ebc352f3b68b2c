//! Building an [`AnnData`] from parts that arrive one at a time: the matrix a chunk at a time
//! (CSR, CSC or dense), then names and obs columns. Readers of chunked formats (AnnData-Zarr, read
//! in JS by zarrita) push each decoded chunk as it comes, so the whole matrix is never held twice:
//! sparse arrays go straight into buffers reserved once at their final size, and dense blocks are
//! converted to CSR as they arrive.
//!
//! A reader may ask for only some genes ([`AnnDataBuilder::keep_genes`], as the `.h5ad` reader's
//! `read_h5ad_source_genes`): then only those columns are stored, while every value still goes into
//! each cell's whole-row statistics (`AnnData::x_stats`), so normalising the kept genes gives what
//! normalising the whole matrix and then subsetting gives. Sparse `indices` and `data` must then
//! arrive in step (a chunk of one, then of the other): values wait only until their partner arrives.
//!
//! Every value is checked as it is pushed — offsets non-negative, starting at 0, never
//! decreasing and at most nnz; indices within the matrix; values finite; lengths matching the
//! declared shape — and [`AnnDataBuilder::finish`] checks that nothing is missing. Errors name the
//! file, the element (`X/indices`, `raw/X/indptr`, `obs/cell_type/codes` …) and the problem, with
//! the same [`SclabelError`] variants the `.h5ad` reader uses: `UnsupportedLayout` for malformed or
//! missing elements, `InvalidValues` for non-finite matrix values. Nothing here panics on input.
use crate::data::anndata::{categorical_from_strings, AnnData, Column, ObsTable, Raw};
use crate::data::matrix::{csc_to_csr, CsrMatrix};
use crate::data::normalize::ValueStats;
use crate::error::{Result, SclabelError};
use crate::io::h5ad::{kept_columns, ColumnMap};

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
    /// Set by `keep_genes`: `indices` / `data` (and a dense band's rows) then hold kept entries only.
    keep: Option<Keep>,
}

/// A matrix received keeping only some columns (see the module documentation).
struct Keep {
    map: ColumnMap,
    /// Source columns kept, in order (kept column k is source column `columns[k]`).
    columns: Vec<usize>,
    /// Whole-row statistics over every value received.
    stats: ValueStats,
    /// Sparse: entries received of each stream, entries paired so far, and the waiting ones.
    indices_in: usize,
    data_in: usize,
    paired: usize,
    waiting_indices: Vec<u32>,
    waiting_data: Vec<f32>,
    /// Sparse: the row (CSR) or column (CSC) of the next entry to pair.
    major: usize,
    /// Sparse: kept entries per row (CSR) or per kept column (CSC), made offsets by `finish`.
    counts: Vec<u64>,
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

    /// Keeps only the columns of X or `.raw` named in `genes` (by the var names given with
    /// [`AnnDataBuilder::set_var_names`], which must come first), in the matrix's order; every
    /// value still counts in each cell's whole-row statistics. Call before any index, value or
    /// dense block of that matrix. X must keep at least one gene; `.raw` may keep none (a model
    /// then reports that it shares no genes with it). Returns the number of genes kept.
    pub fn keep_genes(&mut self, target: Target, genes: &[String]) -> Result<usize> {
        let names = match target {
            Target::X => self.var_names.as_ref(),
            Target::Raw => self.raw.as_ref().and_then(|r| r.1.as_ref()),
        };
        let element = if target == Target::X { "var" } else { "raw/var" };
        let names = names.ok_or_else(|| self.unsupported(element, "gene names must be given before keep_genes".into()))?;
        let kept = kept_columns(names, genes);
        if kept.is_empty() && target == Target::X {
            return Err(SclabelError::genes(format!(
                "{}: none of the {} genes asked for (e.g. '{}') is in the data set ({} genes, e.g. '{}')",
                self.file,
                genes.len(),
                genes.first().map(String::as_str).unwrap_or(""),
                names.len(),
                names.first().map(String::as_str).unwrap_or("")
            )));
        }
        let file = self.file.clone();
        let m = self.matrix(target)?;
        if m.keep.is_some() || !m.indices.is_empty() || !m.data.is_empty() || m.rows_done > 0 || m.band.is_some() {
            return Err(m.unsupported(&file, "", "keep_genes must come before the matrix's values".into()));
        }
        m.start_keeping(kept)
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
        let v = values.iter().enumerate().map(|(i, x)| if missing.is_some_and(|m| m[i]) { f64::NAN } else { x.to_f64() }).collect();
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
        let (x, var_names, x_stats) = self.x.finish(&self.file, var_names)?;
        let raw = match self.raw {
            Some((m, names)) => {
                let var_names = names.ok_or_else(|| unsupported(&self.file, "raw/var", "no gene names for .raw were given".into()))?;
                let (x, var_names, x_stats) = m.finish(&self.file, var_names)?;
                Some(Raw { x, var_names, x_stats })
            }
            None => None,
        };
        let ad = AnnData { x, obs: ObsTable { columns: self.obs }, obs_names, var_names, var_ids: Vec::new(), x_stats, raw };
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
    v.try_reserve_exact(n).map_err(|_| SclabelError::InvalidFile { file: file.to_string(), reason: format!("no memory for the {n} values of '{element}'") })
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
            keep: None,
        };
        let major = m.major();
        let element = m.element("indptr");
        reserve(&mut m.indptr, major.saturating_add(1), file, &element)?;
        if layout == Layout::Dense {
            m.indptr.push(0);
        }
        Ok(m)
    }

    /// Sparse arrays kept whole arrive at their declared size: room for all of them is reserved
    /// at the first one, so the buffers never reallocate (a reallocation briefly holds the old and
    /// the new buffer). Not before: `keep_genes` may still come, and wasm memory never shrinks.
    fn reserve_all(&mut self, file: &str) -> Result<()> {
        if self.keep.is_none() && self.indices.capacity() < self.nnz {
            let (indices, data) = (self.element("indices"), self.element("data"));
            reserve(&mut self.indices, self.nnz, file, &indices)?;
            reserve(&mut self.data, self.nnz, file, &data)?;
        }
        Ok(())
    }

    /// Switches to keeping source columns `kept` only (kept entries grow as they come).
    fn start_keeping(&mut self, kept: Vec<usize>) -> Result<usize> {
        let map = ColumnMap::keeping(self.n_cols, &kept)?;
        let mut stats = ValueStats::default();
        stats.start_rows(self.n_rows);
        let counts = vec![0u64; if self.layout == Layout::Csc { kept.len() } else { self.n_rows }];
        let n = kept.len();
        let keep =
            Keep { map, columns: kept, stats, indices_in: 0, data_in: 0, paired: 0, waiting_indices: Vec::new(), waiting_data: Vec::new(), major: 0, counts };
        self.keep = Some(keep);
        Ok(n)
    }

    /// Keeping genes: pairs the waiting indices with the waiting values, in order; each pair goes
    /// into the statistics, and is stored if its column is kept.
    fn pair_waiting(&mut self, file: &str) -> Result<()> {
        let Some(keep) = self.keep.as_mut() else { return Ok(()) };
        let n = keep.waiting_indices.len().min(keep.waiting_data.len());
        if n == 0 {
            return Ok(());
        }
        // Entries are placed by indptr, so it must be whole (and end at nnz) first.
        let major = if self.layout == Layout::Csc { self.n_cols } else { self.n_rows };
        if self.indptr.len() != major + 1 || self.indptr.last().copied() != Some(self.nnz as u64) {
            return Err(unsupported(
                file,
                &format!("{}/indptr", self.path),
                "must arrive whole, ending at nnz, before indices and data when only some genes are kept".into(),
            ));
        }
        if keep.paired + n > self.nnz {
            return Err(unsupported(file, &self.path, format!("more than nnz = {} entries arrived", self.nnz)));
        }
        let csc = self.layout == Layout::Csc;
        for (idx, v) in keep.waiting_indices.drain(..n).zip(keep.waiting_data.drain(..n)) {
            let p = keep.paired as u64;
            while self.indptr[keep.major + 1] <= p {
                keep.major += 1;
            }
            let (row, col) = if csc { (idx as usize, keep.major) } else { (keep.major, idx as usize) };
            keep.stats.add_value(row, col as u32, v);
            if let Some(k) = keep.map.kept(col) {
                if csc {
                    keep.counts[k as usize] += 1;
                    self.indices.push(row as u32);
                } else {
                    keep.counts[row] += 1;
                    self.indices.push(k);
                }
                self.data.push(v);
            }
            keep.paired += 1;
        }
        Ok(())
    }

    /// A dense matrix's non-zero value at (`row`, `col`): the column it is stored in, if any (all
    /// are, unless genes are kept; every value counts in the statistics then).
    fn keep_value(&mut self, row: usize, col: usize, x: f32) -> Option<u32> {
        match self.keep.as_mut() {
            None => Some(col as u32),
            Some(keep) => {
                keep.stats.add_value(row, col as u32, x);
                keep.map.kept(col)
            }
        }
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
        let have = self.keep.as_ref().map_or(self.indices.len(), |k| k.indices_in);
        self.check_room(file, "indices", have, values.len(), self.nnz, &what)?;
        self.reserve_all(file)?;
        let (bound, unit) = if self.layout == Layout::Csc { (self.n_rows, "rows") } else { (self.n_cols, "columns") };
        if let Some(keep) = self.keep.as_mut() {
            // A bad entry refuses the whole chunk, so the counts stay those of what was taken.
            let before = keep.waiting_indices.len();
            for (k, &v) in values.iter().enumerate() {
                match v.to_index() {
                    Some(x) if x < bound as u64 => keep.waiting_indices.push(x as u32),
                    Some(x) => {
                        let pos = keep.indices_in + k;
                        keep.waiting_indices.truncate(before);
                        return Err(unsupported(file, &format!("{}/indices", self.path), format!("entry {pos} is {x}, out of range for {bound} {unit}")));
                    }
                    None => {
                        let pos = keep.indices_in + k;
                        keep.waiting_indices.truncate(before);
                        return Err(unsupported(file, &format!("{}/indices", self.path), format!("entry {pos} is {v}, not a non-negative integer")));
                    }
                }
            }
            keep.indices_in += values.len();
            return self.pair_waiting(file);
        }
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
        let have = self.keep.as_ref().map_or(self.data.len(), |k| k.data_in);
        self.check_room(file, "data", have, values.len(), self.nnz, &what)?;
        self.reserve_all(file)?;
        if self.keep.is_some() {
            // Kept genes: a bad value refuses the whole chunk (nothing of it waits for pairing).
            if let Some((k, v)) = values.iter().enumerate().find(|(_, v)| !v.to_f32().is_finite()) {
                return Err(self.non_finite(file, "data", have + k, *v));
            }
        }
        for (k, &v) in values.iter().enumerate() {
            let x = v.to_f32();
            if !x.is_finite() {
                return Err(self.non_finite(file, "data", have + k, v));
            }
            match self.keep.as_mut() {
                Some(keep) => keep.waiting_data.push(x),
                None => self.data.push(x),
            }
        }
        if let Some(keep) = self.keep.as_mut() {
            keep.data_in += values.len();
            return self.pair_waiting(file);
        }
        Ok(())
    }

    fn non_finite(&self, file: &str, part: &str, pos: impl std::fmt::Display, v: impl std::fmt::Display) -> SclabelError {
        SclabelError::values(format!("{file}: '{}' has a non-finite value at {pos} ({v}, as float32); the matrix must hold finite numbers", self.element(part)))
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
                        let row = b.start_row + r;
                        if let Some(k) = self.keep_value(row, c, x) {
                            self.indices.push(k);
                            self.data.push(x);
                        }
                    }
                }
                self.indptr.push(self.data.len() as u64);
            }
            self.rows_done += b.n_rows;
            return Ok(());
        }
        let mut band =
            self.band.take().unwrap_or_else(|| Band { start: b.start_row, n_rows: b.n_rows, cols_done: 0, rows: vec![(Vec::new(), Vec::new()); b.n_rows] });
        for r in 0..b.n_rows {
            for c in 0..b.n_cols {
                let v = b.values[r * b.row_stride + c * b.col_stride];
                let x = v.to_f32();
                if !x.is_finite() {
                    return Err(self.non_finite(file, "", format!("row {}, column {}", b.start_row + r, b.start_col + c), v));
                }
                if x != 0.0 {
                    if let Some(k) = self.keep_value(b.start_row + r, b.start_col + c, x) {
                        band.rows[r].0.push(k);
                        band.rows[r].1.push(x);
                    }
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

    /// The matrix, its gene names (`var_names` of the kept genes) and, when genes were kept, the
    /// whole rows' statistics.
    fn finish(mut self, file: &str, var_names: Vec<String>) -> Result<(CsrMatrix, Vec<String>, Option<ValueStats>)> {
        if self.layout == Layout::Dense {
            if let Some(band) = &self.band {
                return Err(self.unsupported(
                    file,
                    "",
                    format!("rows {}..{} stop at column {} of {}", band.start, band.start + band.n_rows, band.cols_done, self.n_cols),
                ));
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
            let (indices_in, data_in) = self.keep.as_ref().map_or((self.indices.len(), self.data.len()), |k| (k.indices_in, k.data_in));
            for (part, got, want) in [("indptr", self.indptr.len(), expected), ("indices", indices_in, self.nnz), ("data", data_in, self.nnz)] {
                if got != want {
                    return Err(self.unsupported(file, part, format!("{got} entries arrived, expected {want}")));
                }
            }
            if self.indptr.last().copied() != Some(self.nnz as u64) {
                return Err(self.unsupported(file, "indptr", format!("ends at {}, not at nnz = {}", self.indptr.last().copied().unwrap_or(0), self.nnz)));
            }
        }
        let (path, n_rows) = (self.path.clone(), self.n_rows);
        let (n_cols, var_names, stats) = match self.keep.take() {
            None => (self.n_cols, var_names, None),
            Some(keep) => {
                if self.layout != Layout::Dense {
                    // Sparse offsets of the kept entries: they were stored in row (CSR) or column
                    // (CSC) order, so counting them is enough.
                    let mut ptr = Vec::with_capacity(keep.counts.len() + 1);
                    ptr.push(0u64);
                    for c in &keep.counts {
                        ptr.push(ptr.last().copied().unwrap_or(0) + c);
                    }
                    self.indptr = ptr;
                    self.indices.shrink_to_fit();
                    self.data.shrink_to_fit();
                }
                let names = keep.columns.iter().map(|&j| var_names.get(j).cloned().unwrap_or_default()).collect();
                (keep.columns.len(), names, Some(keep.stats))
            }
        };
        let m = match self.layout {
            Layout::Csr | Layout::Dense => CsrMatrix::new(n_rows, n_cols, self.indptr, self.indices, self.data),
            // The CSC arrays are dropped as soon as the CSR copy exists.
            Layout::Csc => csc_to_csr(n_rows, n_cols, &self.indptr, &self.indices, &self.data),
        };
        Ok((m.map_err(|e| unsupported(file, &path, e.to_string()))?, var_names, stats))
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
        let mut b = AnnDataBuilder::new("d.zarr", 3, 4, Layout::Dense, 0).unwrap();
        b.begin_raw(1, Layout::Csr, usize::MAX).unwrap();
        assert!(msg(b.push_indices(Target::Raw, &[0u32])).contains("no memory"));
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

    /// Keeping g1 and g3 of the 3 × 4 matrix: its columns 1 and 3, with the whole rows' statistics.
    fn check_kept(ad: &AnnData) {
        assert_eq!(ad.x, expected().select_cols(&[1, 3]));
        assert_eq!(ad.var_names, ["g1", "g3"]);
        let (got, want) = (ad.x_stats.as_ref().expect("whole-row statistics"), ValueStats::of(&expected()));
        assert_eq!((got.min, got.max, got.all_integer, &got.sums), (want.min, want.max, want.all_integer, &want.sums));
        assert_eq!((&got.ln_totals, &got.log2_totals), (&want.ln_totals, &want.log2_totals));
    }

    fn keeping(layout: Layout, nnz: usize) -> AnnDataBuilder {
        let mut b = named(AnnDataBuilder::new("k.zarr", 3, 4, layout, nnz).unwrap());
        assert_eq!(b.keep_genes(Target::X, &["g3".into(), "g1".into(), "absent".into()]).unwrap(), 2);
        b
    }

    #[test]
    fn kept_genes_from_csr_csc_and_dense_with_whole_row_statistics() {
        // CSR, indices and data in step in uneven chunks, and all indices before any data.
        for split in [&[1usize, 3, 5][..], &[5]] {
            let mut b = keeping(Layout::Csr, 5);
            b.push_indptr(Target::X, &CSR.0).unwrap();
            let mut from = 0;
            for &to in split {
                b.push_indices(Target::X, &CSR.1[from..to]).unwrap();
                b.push_data(Target::X, &CSR.2[from..to]).unwrap();
                from = to;
            }
            check_kept(&b.finish().unwrap());
        }
        let mut b = keeping(Layout::Csr, 5);
        b.push_indptr(Target::X, &CSR.0).unwrap();
        b.push_data(Target::X, &CSR.2[..2]).unwrap();
        b.push_indices(Target::X, &CSR.1).unwrap();
        b.push_data(Target::X, &CSR.2[2..]).unwrap();
        check_kept(&b.finish().unwrap());

        let mut b = keeping(Layout::Csc, 5);
        b.push_indptr(Target::X, &CSC.0).unwrap();
        b.push_indices(Target::X, &CSC.1[..3]).unwrap();
        b.push_data(Target::X, &CSC.2[..4]).unwrap();
        b.push_indices(Target::X, &CSC.1[3..]).unwrap();
        b.push_data(Target::X, &CSC.2[4..]).unwrap();
        check_kept(&b.finish().unwrap());

        // Dense: whole rows, and 2 × 3 blocks (a band's left block holds g1, its right one g3).
        let mut b = keeping(Layout::Dense, 0);
        b.push_dense_rows(Target::X, &DENSE).unwrap();
        check_kept(&b.finish().unwrap());
        let mut b = keeping(Layout::Dense, 0);
        for r0 in [0, 2] {
            let rows = 2.min(3 - r0);
            for c0 in [0, 3] {
                let block = DenseBlock {
                    start_row: r0,
                    start_col: c0,
                    n_rows: rows,
                    n_cols: 3.min(4 - c0),
                    values: &DENSE[r0 * 4 + c0..],
                    row_stride: 4,
                    col_stride: 1,
                };
                b.push_dense_block(Target::X, block).unwrap();
            }
        }
        check_kept(&b.finish().unwrap());
    }

    #[test]
    fn kept_genes_of_raw_may_be_none_but_not_of_x() {
        let mut b = named(AnnDataBuilder::new("k.zarr", 3, 4, Layout::Dense, 0).unwrap());
        let e = msg(b.keep_genes(Target::X, &["nope".into()]));
        assert!(e.contains("k.zarr") && e.contains("none of the 1 genes asked for (e.g. 'nope')") && e.contains("e.g. 'g0'"), "{e}");
        b.begin_raw(2, Layout::Dense, 0).unwrap();
        assert!(msg(b.keep_genes(Target::Raw, &["r1".into()])).contains("gene names must be given before keep_genes"));
        b.set_var_names(Target::Raw, vec!["r0".into(), "r1".into()]).unwrap();
        assert_eq!(b.keep_genes(Target::Raw, &["g1".into()]).unwrap(), 0);
        b.push_dense_rows(Target::X, &DENSE).unwrap();
        b.push_dense_rows(Target::Raw, &[0f32, 1., 2., 0., 0., 0.]).unwrap();
        let ad = b.finish().unwrap();
        let raw = ad.raw.as_ref().unwrap();
        assert_eq!((raw.x.n_cols, raw.x.nnz(), raw.var_names.len()), (0, 0, 0));
        assert_eq!(raw.x_stats.as_ref().unwrap().sums, [1.0, 2.0, 0.0]);
        assert!(ad.x_stats.is_none(), "X was kept whole");
    }

    #[test]
    fn kept_genes_need_their_order_of_parts() {
        // After values, or twice.
        let mut b = named(AnnDataBuilder::new("k.zarr", 3, 4, Layout::Dense, 0).unwrap());
        b.push_dense_rows(Target::X, &DENSE[..4]).unwrap();
        assert!(msg(b.keep_genes(Target::X, &["g1".into()])).contains("keep_genes must come before the matrix's values"));
        let mut b = keeping(Layout::Csr, 5);
        assert!(msg(b.keep_genes(Target::X, &["g1".into()])).contains("before the matrix's values"));
        // Entries before the whole indptr.
        b.push_indptr(Target::X, &CSR.0[..2]).unwrap();
        b.push_indices(Target::X, &CSR.1[..1]).unwrap();
        let e = msg(b.push_data(Target::X, &CSR.2[..1]));
        assert!(e.contains("'X/indptr'") && e.contains("must arrive whole"), "{e}");
        // Bad entries are still named, and missing ones found at finish.
        let mut b = keeping(Layout::Csr, 5);
        b.push_indptr(Target::X, &CSR.0).unwrap();
        assert!(msg(b.push_indices(Target::X, &[0u32, 4])).contains("entry 1 is 4, out of range for 4 columns"));
        assert!(msg(b.push_data(Target::X, &[1f32, f32::NAN])).contains("non-finite value at 1"));
        let mut b = keeping(Layout::Csr, 5);
        b.push_indptr(Target::X, &CSR.0).unwrap();
        b.push_indices(Target::X, &CSR.1).unwrap();
        b.push_data(Target::X, &CSR.2[..4]).unwrap();
        assert!(msg(b.finish()).contains("'X/data': 4 entries arrived, expected 5"));
    }

    #[test]
    fn kept_genes_survive_calls_after_errors() {
        // Refused chunks leave nothing behind: more entries than nnz can never pair (the fuzz
        // harness keeps calling after errors, as a caller of the wasm DatasetBuilder may).
        let mut b = AnnDataBuilder::new("k.zarr", 1, 2, Layout::Csr, 2).unwrap();
        b.set_obs_names(vec!["c0".into()]).unwrap();
        b.set_var_names(Target::X, vec!["g0".into(), "g1".into()]).unwrap();
        b.keep_genes(Target::X, &["g0".into()]).unwrap();
        b.push_indptr(Target::X, &[0u32, 2]).unwrap();
        assert!(b.push_indices(Target::X, &[0u32, 9]).is_err());
        assert!(b.push_data(Target::X, &[1f32, f32::NAN]).is_err());
        b.push_indices(Target::X, &[1u32, 1]).unwrap();
        b.push_data(Target::X, &[2f32, 3.]).unwrap();
        assert!(b.push_indices(Target::X, &[0u32]).is_err());
        let ad = b.finish().unwrap();
        assert_eq!((ad.x.n_cols, ad.x.nnz()), (1, 0));
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

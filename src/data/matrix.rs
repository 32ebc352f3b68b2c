//! Compressed sparse row expression matrix (cells × genes). The whole data set stays sparse; rows
//! are densified only a minibatch at a time (see `sampler`).
use crate::error::{Result, SclabelError};

#[derive(Debug, Clone, PartialEq)]
pub struct CsrMatrix {
    pub n_rows: usize,
    pub n_cols: usize,
    /// Row start offsets into `indices`/`data`, length `n_rows + 1`.
    pub indptr: Vec<u64>,
    /// Column index of each stored value.
    pub indices: Vec<u32>,
    pub data: Vec<f32>,
}

impl CsrMatrix {
    /// Builds a matrix after checking every invariant, so later code can index without checks.
    pub fn new(n_rows: usize, n_cols: usize, indptr: Vec<u64>, indices: Vec<u32>, data: Vec<f32>) -> Result<Self> {
        if indptr.len() != n_rows + 1 {
            return Err(SclabelError::ShapeMismatch(format!(
                "CSR indptr has {} entries, expected n_rows + 1 = {}",
                indptr.len(),
                n_rows + 1
            )));
        }
        if indices.len() != data.len() {
            return Err(SclabelError::ShapeMismatch(format!(
                "CSR has {} indices but {} values",
                indices.len(),
                data.len()
            )));
        }
        if indptr[0] != 0 || *indptr.last().unwrap() as usize != data.len() {
            return Err(SclabelError::ShapeMismatch(format!(
                "CSR indptr must start at 0 and end at nnz = {} (got {} .. {})",
                data.len(),
                indptr[0],
                indptr.last().unwrap()
            )));
        }
        if let Some(r) = indptr.windows(2).position(|w| w[1] < w[0]) {
            return Err(SclabelError::ShapeMismatch(format!("CSR indptr decreases at row {r}")));
        }
        if let Some(&c) = indices.iter().find(|&&c| c as usize >= n_cols) {
            return Err(SclabelError::ShapeMismatch(format!(
                "CSR column index {c} out of range for {n_cols} columns"
            )));
        }
        Ok(Self { n_rows, n_cols, indptr, indices, data })
    }

    /// Converts a row-major dense matrix, keeping only non-zeros.
    pub fn from_dense(n_rows: usize, n_cols: usize, values: &[f32]) -> Result<Self> {
        if values.len() != n_rows * n_cols {
            return Err(SclabelError::ShapeMismatch(format!(
                "dense matrix has {} values, expected {n_rows} × {n_cols}",
                values.len()
            )));
        }
        let mut indptr = Vec::with_capacity(n_rows + 1);
        let (mut indices, mut data) = (Vec::new(), Vec::new());
        indptr.push(0);
        for row in values.chunks_exact(n_cols.max(1)).take(n_rows) {
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    indices.push(j as u32);
                    data.push(v);
                }
            }
            indptr.push(data.len() as u64);
        }
        if n_cols == 0 {
            indptr.resize(n_rows + 1, 0);
        }
        Ok(Self { n_rows, n_cols, indptr, indices, data })
    }

    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    /// Stored (column, value) pairs of one row.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        (&self.indices[a..b], &self.data[a..b])
    }

    /// Writes the given rows densely into `out` (row-major, `rows.len() × n_cols`).
    pub fn densify_rows_into(&self, rows: &[usize], out: &mut Vec<f32>) {
        out.clear();
        out.resize(rows.len() * self.n_cols, 0.0);
        for (k, &i) in rows.iter().enumerate() {
            let (idx, val) = self.row(i);
            let base = k * self.n_cols;
            for (&j, &v) in idx.iter().zip(val) {
                out[base + j as usize] = v;
            }
        }
    }

    /// A new matrix with a subset of rows, in the given order.
    pub fn select_rows(&self, rows: &[usize]) -> Self {
        let mut indptr = Vec::with_capacity(rows.len() + 1);
        indptr.push(0u64);
        let nnz: usize = rows.iter().map(|&i| (self.indptr[i + 1] - self.indptr[i]) as usize).sum();
        let (mut indices, mut data) = (Vec::with_capacity(nnz), Vec::with_capacity(nnz));
        for &i in rows {
            let (idx, val) = self.row(i);
            indices.extend_from_slice(idx);
            data.extend_from_slice(val);
            indptr.push(data.len() as u64);
        }
        Self { n_rows: rows.len(), n_cols: self.n_cols, indptr, indices, data }
    }

    /// Sum of stored values per row.
    pub fn row_sums(&self) -> Vec<f64> {
        (0..self.n_rows).map(|i| self.row(i).1.iter().map(|&v| v as f64).sum()).collect()
    }
}

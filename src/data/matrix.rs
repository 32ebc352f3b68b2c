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
            return Err(SclabelError::shape(format!("CSR indptr has {} entries, expected n_rows + 1 = {}", indptr.len(), n_rows + 1)));
        }
        if indices.len() != data.len() {
            return Err(SclabelError::shape(format!("CSR has {} indices but {} values", indices.len(), data.len())));
        }
        if indptr[0] != 0 || *indptr.last().unwrap() as usize != data.len() {
            return Err(SclabelError::shape(format!(
                "CSR indptr must start at 0 and end at nnz = {} (got {} .. {})",
                data.len(),
                indptr[0],
                indptr.last().unwrap()
            )));
        }
        if let Some(r) = indptr.windows(2).position(|w| w[1] < w[0]) {
            return Err(SclabelError::shape(format!("CSR indptr decreases at row {r}")));
        }
        if let Some(&c) = indices.iter().find(|&&c| c as usize >= n_cols) {
            return Err(SclabelError::shape(format!("CSR column index {c} out of range for {n_cols} columns")));
        }
        let mut m = Self { n_rows, n_cols, indptr, indices, data };
        m.sum_duplicates();
        Ok(m)
    }

    /// Rows that list a column twice get one entry with the sum, as scipy and anndata read them
    /// (`toarray`, indexing and arithmetic all sum duplicates); such rows come out with their
    /// columns in increasing order. Rows without a repeat are left as they are. One pass: a row
    /// in increasing order needs no more than a look; another is sorted once, to find repeats
    /// and, when there are, to sum them. Nothing moves before the first row with a repeat.
    fn sum_duplicates(&mut self) {
        let mut pairs: Vec<(u32, f32)> = Vec::new();
        let (mut write, mut moving) = (0usize, false);
        for r in 0..self.n_rows {
            let (a, b) = (self.indptr[r] as usize, self.indptr[r + 1] as usize);
            let repeat = !self.indices[a..b].windows(2).all(|w| w[0] < w[1]) && {
                pairs.clear();
                pairs.extend(self.indices[a..b].iter().copied().zip(self.data[a..b].iter().copied()));
                // Stable, so a repeated column's values are summed in file order.
                pairs.sort_by_key(|p| p.0);
                pairs.windows(2).any(|w| w[0].0 == w[1].0)
            };
            if !moving {
                if !repeat {
                    continue;
                }
                (write, moving) = (a, true);
            }
            self.indptr[r] = write as u64;
            if !repeat {
                self.indices.copy_within(a..b, write);
                self.data.copy_within(a..b, write);
                write += b - a;
                continue;
            }
            for (k, &(c, v)) in pairs.iter().enumerate() {
                if k > 0 && pairs[k - 1].0 == c {
                    self.data[write - 1] += v;
                } else {
                    self.indices[write] = c;
                    self.data[write] = v;
                    write += 1;
                }
            }
        }
        if moving {
            self.indptr[self.n_rows] = write as u64;
            self.indices.truncate(write);
            self.data.truncate(write);
        }
    }

    /// Converts a row-major dense matrix, keeping only non-zeros.
    pub fn from_dense(n_rows: usize, n_cols: usize, values: &[f32]) -> Result<Self> {
        if values.len() != n_rows * n_cols {
            return Err(SclabelError::shape(format!("dense matrix has {} values, expected {n_rows} × {n_cols}", values.len())));
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

    /// The rows of `parts` one after another (all with the same columns).
    pub fn vstack(parts: &[&CsrMatrix]) -> Result<Self> {
        let n_cols = parts.first().map_or(0, |p| p.n_cols);
        if let Some(p) = parts.iter().find(|p| p.n_cols != n_cols) {
            return Err(SclabelError::shape(format!("stacking matrices with {} and {n_cols} columns", p.n_cols)));
        }
        let mut indptr = vec![0u64];
        let (mut indices, mut data) = (Vec::new(), Vec::new());
        for p in parts {
            let off = *indptr.last().expect("non-empty");
            indptr.extend(p.indptr[1..].iter().map(|&q| q + off));
            indices.extend_from_slice(&p.indices);
            data.extend_from_slice(&p.data);
        }
        CsrMatrix::new(parts.iter().map(|p| p.n_rows).sum(), n_cols, indptr, indices, data)
    }

    /// The same matrix with each row's columns in increasing order (CSR from scipy may have them in
    /// any order, e.g. descending).
    pub fn with_sorted_rows(&self) -> Self {
        let mut out = self.clone();
        let mut pairs: Vec<(u32, f32)> = Vec::new();
        for r in 0..self.n_rows {
            let (a, b) = (self.indptr[r] as usize, self.indptr[r + 1] as usize);
            if self.indices[a..b].windows(2).all(|w| w[0] < w[1]) {
                continue;
            }
            pairs.clear();
            pairs.extend(self.indices[a..b].iter().copied().zip(self.data[a..b].iter().copied()));
            pairs.sort_by_key(|p| p.0);
            for (k, (c, v)) in pairs.iter().enumerate() {
                out.indices[a + k] = *c;
                out.data[a + k] = *v;
            }
        }
        out
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

    /// A new matrix with the given columns, in the given order (column `cols[k]` becomes `k`).
    pub fn select_cols(&self, cols: &[usize]) -> Self {
        let mut map = vec![u32::MAX; self.n_cols];
        for (k, &c) in cols.iter().enumerate() {
            map[c] = k as u32;
        }
        let sorted = cols.windows(2).all(|w| w[0] < w[1]);
        let mut indptr = Vec::with_capacity(self.n_rows + 1);
        indptr.push(0u64);
        let (mut indices, mut data) = (Vec::new(), Vec::new());
        let mut row: Vec<(u32, f32)> = Vec::new();
        for i in 0..self.n_rows {
            let (idx, val) = self.row(i);
            row.clear();
            row.extend(idx.iter().zip(val).filter(|(&j, _)| map[j as usize] != u32::MAX).map(|(&j, &v)| (map[j as usize], v)));
            if !sorted {
                row.sort_unstable_by_key(|p| p.0);
            }
            indices.extend(row.iter().map(|p| p.0));
            data.extend(row.iter().map(|p| p.1));
            indptr.push(data.len() as u64);
        }
        Self { n_rows: self.n_rows, n_cols: cols.len(), indptr, indices, data }
    }
}

/// CSC (column pointers, row indices) to CSR, validating as it goes. Used by the readers for
/// `csc_matrix` X; the CSR copy is built before the CSC one is dropped, so the peak is both.
pub fn csc_to_csr(n_rows: usize, n_cols: usize, colptr: &[u64], rows: &[u32], data: &[f32]) -> Result<CsrMatrix> {
    let bad = |m: String| SclabelError::shape(m);
    if colptr.len() != n_cols.saturating_add(1) || rows.len() != data.len() {
        return Err(bad(format!("CSC has {} column pointers for {n_cols} columns", colptr.len())));
    }
    if colptr.first() != Some(&0) || colptr.last().copied() != Some(data.len() as u64) {
        return Err(bad("CSC column pointers must run from 0 to nnz".into()));
    }
    if colptr.windows(2).any(|w| w[1] < w[0]) {
        return Err(bad("CSC column pointers decrease".into()));
    }
    let mut counts = vec![0u64; n_rows.saturating_add(1)];
    for &r in rows {
        let r = r as usize;
        if r >= n_rows {
            return Err(bad(format!("CSC row index {r} out of range for {n_rows} rows")));
        }
        counts[r + 1] += 1;
    }
    for i in 0..n_rows {
        counts[i + 1] += counts[i];
    }
    let indptr = counts.clone();
    let mut next = counts;
    let mut indices = vec![0u32; data.len()];
    let mut values = vec![0f32; data.len()];
    for j in 0..n_cols {
        let (a, b) = (colptr[j] as usize, colptr[j + 1] as usize);
        for k in a..b {
            let r = rows[k] as usize;
            let dst = next[r] as usize;
            indices[dst] = j as u32;
            values[dst] = data[k];
            next[r] += 1;
        }
    }
    CsrMatrix::new(n_rows, n_cols, indptr, indices, values)
}

/// Order-sensitive fingerprint of a matrix, to check that two readers produced the same one.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MatrixChecksum {
    pub n_rows: usize,
    pub n_cols: usize,
    pub nnz: usize,
    /// Sum of the stored values (f64).
    pub sum: f64,
    /// Sum of value × (column + 1) × (row + 1) (f64): moves if a value changes place.
    pub weighted: f64,
}

impl CsrMatrix {
    pub fn checksum(&self) -> MatrixChecksum {
        let (mut sum, mut weighted) = (0f64, 0f64);
        for i in 0..self.n_rows {
            let (idx, val) = self.row(i);
            for (&j, &v) in idx.iter().zip(val) {
                sum += f64::from(v);
                weighted += f64::from(v) * (f64::from(j) + 1.0) * (i as f64 + 1.0);
            }
        }
        MatrixChecksum { n_rows: self.n_rows, n_cols: self.n_cols, nnz: self.nnz(), sum, weighted }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_columns_are_summed_as_scipy_does() {
        // Row 0 lists column 2 twice (and out of order); row 1 is unsorted without a repeat; row 2
        // is plain.
        let m = CsrMatrix::new(3, 4, vec![0, 4, 6, 7], vec![2, 0, 2, 3, 3, 1, 0], vec![1.0, 5.0, 2.5, 4.0, 7.0, 8.0, 9.0]).unwrap();
        assert_eq!(m.indptr, [0, 3, 5, 6]);
        assert_eq!(m.row(0), (&[0u32, 2, 3][..], &[5.0f32, 3.5, 4.0][..]));
        assert_eq!(m.row(1), (&[3u32, 1][..], &[7.0f32, 8.0][..]), "rows without a repeat keep their order");
        assert_eq!(m.row(2), (&[0u32][..], &[9.0f32][..]));
        // CSC with a row twice in one column becomes one summed entry too.
        let c = csc_to_csr(2, 2, &[0, 3, 3], &[1, 0, 1], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((c.row(0), c.row(1)), ((&[0u32][..], &[2.0f32][..]), (&[0u32][..], &[4.0f32][..])));
    }
}

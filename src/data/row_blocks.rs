//! Cells × genes matrices that training reads rows from.
//!
//! Training only ever takes rows: a minibatch, the model-selection cells. [`RowSource`] is that
//! access; a loaded [`CsrMatrix`] is one, and [`RowBlocks`] is the other: a matrix read from a
//! file a block of cells at a time and held as those blocks, each at its exact size with u16 gene
//! indices where there are at most 65,536 genes (6 bytes per stored value against a CSR's 8, and
//! no reallocation of what is already held, which a growing `Vec` would copy at up to twice its
//! size). A 1M-cell reference over 2,000 genes trains from one.
use crate::data::matrix::CsrMatrix;
use crate::error::{Result, SclabelError};

/// A matrix whose rows can be taken.
pub trait RowSource {
    fn n_rows(&self) -> usize;
    fn n_cols(&self) -> usize;
    /// Rows `rows` (any order, repeats allowed) as a matrix of their own.
    fn take_rows(&self, rows: &[usize]) -> CsrMatrix;
}

impl RowSource for CsrMatrix {
    fn n_rows(&self) -> usize {
        self.n_rows
    }
    fn n_cols(&self) -> usize {
        self.n_cols
    }
    fn take_rows(&self, rows: &[usize]) -> CsrMatrix {
        self.select_rows(rows)
    }
}

/// Gene indices of a block: u16 when every index fits.
enum Indices {
    U16(Vec<u16>),
    U32(Vec<u32>),
}

struct Block {
    /// Offsets of the block's rows into `indices` / `data`.
    indptr: Vec<u32>,
    indices: Indices,
    data: Vec<f32>,
}

/// A matrix held as consecutive blocks of rows, compactly (see the module docs).
pub struct RowBlocks {
    n_cols: usize,
    n_rows: usize,
    /// The first row of each block.
    starts: Vec<usize>,
    blocks: Vec<Block>,
}

impl RowBlocks {
    /// An empty matrix of `n_cols` columns, to push blocks of rows onto.
    pub fn new(n_cols: usize) -> Self {
        RowBlocks { n_cols, n_rows: 0, starts: Vec::new(), blocks: Vec::new() }
    }

    /// Whether gene indices of a matrix of `n_cols` columns fit in 16 bits.
    fn narrow(n_cols: usize) -> bool {
        n_cols <= 1 << 16
    }

    /// Bytes held per stored value for a matrix of `n_cols` columns (for memory estimates).
    pub fn bytes_per_value(n_cols: usize) -> u64 {
        if Self::narrow(n_cols) {
            6
        } else {
            8
        }
    }

    /// Appends `part`'s rows as the matrix's next rows.
    pub fn push(&mut self, part: &CsrMatrix) -> Result<()> {
        if part.n_cols != self.n_cols {
            return Err(SclabelError::shape(format!("a block of {} columns for a matrix of {}", part.n_cols, self.n_cols)));
        }
        let base = part.indptr[0];
        let indptr: Vec<u32> = part
            .indptr
            .iter()
            .map(|&p| u32::try_from(p - base))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| SclabelError::shape(format!("a block of {} stored values (at most {} per block)", part.nnz(), u32::MAX)))?;
        let (from, to) = (base as usize, *part.indptr.last().expect("indptr is never empty") as usize);
        let indices = if Self::narrow(self.n_cols) {
            Indices::U16(part.indices[from..to].iter().map(|&j| j as u16).collect())
        } else {
            Indices::U32(part.indices[from..to].to_vec())
        };
        self.starts.push(self.n_rows);
        self.blocks.push(Block { indptr, indices, data: part.data[from..to].to_vec() });
        self.n_rows += part.n_rows;
        Ok(())
    }

    /// Stored values.
    pub fn nnz(&self) -> usize {
        self.blocks.iter().map(|b| b.data.len()).sum()
    }

    /// Bytes held by the matrix's values, indices and row offsets.
    pub fn bytes(&self) -> u64 {
        let per_value = Self::bytes_per_value(self.n_cols);
        self.blocks.iter().map(|b| b.data.len() as u64 * per_value + b.indptr.len() as u64 * 4).sum()
    }
}

impl RowSource for RowBlocks {
    fn n_rows(&self) -> usize {
        self.n_rows
    }
    fn n_cols(&self) -> usize {
        self.n_cols
    }
    fn take_rows(&self, rows: &[usize]) -> CsrMatrix {
        let mut indptr = Vec::with_capacity(rows.len() + 1);
        indptr.push(0u64);
        let (mut indices, mut data) = (Vec::new(), Vec::new());
        for &r in rows {
            assert!(r < self.n_rows, "row {r} of {}", self.n_rows);
            let k = self.starts.partition_point(|&s| s <= r) - 1;
            let b = &self.blocks[k];
            let local = r - self.starts[k];
            let (s, e) = (b.indptr[local] as usize, b.indptr[local + 1] as usize);
            match &b.indices {
                Indices::U16(i) => indices.extend(i[s..e].iter().map(|&j| u32::from(j))),
                Indices::U32(i) => indices.extend_from_slice(&i[s..e]),
            }
            data.extend_from_slice(&b.data[s..e]);
            indptr.push(data.len() as u64);
        }
        CsrMatrix::new(rows.len(), self.n_cols, indptr, indices, data).expect("rows of a valid matrix")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(n_rows: usize, n_cols: usize, seed: u64) -> CsrMatrix {
        let mut dense = vec![0f32; n_rows * n_cols];
        let mut z = seed;
        for v in dense.iter_mut() {
            z = z.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            if (z >> 60) < 3 {
                *v = (z >> 40) as f32 / 1e6;
            }
        }
        CsrMatrix::from_dense(n_rows, n_cols, &dense).unwrap()
    }

    /// Rows taken from blocks equal the same rows of the whole matrix, for u16 and u32 indices.
    #[test]
    fn blocks_give_the_rows_of_the_whole_matrix() {
        for n_cols in [40, 70_000] {
            let whole = matrix(23, n_cols.min(300), 7);
            let whole = CsrMatrix::new(
                whole.n_rows,
                n_cols,
                whole.indptr.clone(),
                whole.indices.iter().map(|&j| j * (n_cols as u32 / 300).max(1)).collect(),
                whole.data.clone(),
            )
            .unwrap();
            let mut blocks = RowBlocks::new(n_cols);
            for (a, b) in [(0, 5), (5, 6), (6, 6), (6, 23)] {
                blocks.push(&whole.select_rows(&(a..b).collect::<Vec<_>>())).unwrap();
            }
            assert_eq!((blocks.n_rows(), blocks.nnz()), (23, whole.nnz()));
            let rows = [22, 0, 5, 5, 13, 6];
            let (a, b) = (blocks.take_rows(&rows), whole.take_rows(&rows));
            assert_eq!((a.indptr, a.indices, a.data), (b.indptr, b.indices, b.data), "{n_cols} columns");
            assert_eq!(blocks.bytes(), whole.nnz() as u64 * RowBlocks::bytes_per_value(n_cols) + 4 * (23 + 4));
        }
        assert!(RowBlocks::new(3).push(&matrix(2, 4, 1)).is_err());
    }
}

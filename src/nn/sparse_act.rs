//! Dense layers whose input is a training-mode activation, on the host: after dropout(0.5) and a
//! ReLU about three quarters of it are zeros, and each of the layer's three products only needs
//! the non-zeros — the forward `A·W`, the weight gradient `Aᵀ·G`, and the input gradient `G·Wᵀ`,
//! of which the backward pass keeps only the entries where A is non-zero (the ReLU and the dropout
//! mask zero the rest). Dense gemm does four times the work at its peak; these loops do the useful
//! quarter, a layer in 0.60–0.66 of gemm's time (`examples/bench_sparse_act`).
use crate::nn::simd::tile_major_into;
pub use crate::nn::simd::TILE;

/// The non-zeros of a row-major `[n_rows, width]` matrix, by row and by column.
pub struct SparseAct {
    pub n_rows: usize,
    pub width: usize,
    row_start: Vec<u32>,
    row_col: Vec<u32>,
    row_val: Vec<f32>,
    col_start: Vec<u32>,
    col_row: Vec<u32>,
    col_val: Vec<f32>,
}

impl SparseAct {
    pub fn from_dense(a: &[f32], n_rows: usize, width: usize) -> Self {
        assert_eq!(a.len(), n_rows * width, "activation shape");
        assert!(a.len() < u32::MAX as usize, "activation size");
        // Counted first (per row, and per column as lane-wise adds), so the buffers are the size
        // of the non-zeros (a quarter of the matrix), then filled row by row from a bit mask of
        // its non-zeros (a branch per entry on ~25% non-zeros mispredicts often). Wrapping adds:
        // counts stay below u32::MAX (asserted), and overflow checks kept these loops scalar.
        let mut row_start = vec![0u32; n_rows + 1];
        let mut col_start = vec![0u32; width + 1];
        for (i, row) in a.chunks_exact(width).enumerate() {
            let mut c = 0u32;
            for (&v, n) in row.iter().zip(&mut col_start[1..]) {
                let nz = (v != 0.0) as u32;
                c = c.wrapping_add(nz);
                *n = n.wrapping_add(nz);
            }
            row_start[i + 1] = row_start[i].wrapping_add(c);
        }
        for j in 0..width {
            col_start[j + 1] = col_start[j + 1].wrapping_add(col_start[j]);
        }
        let nnz = row_start[n_rows] as usize;
        let (mut row_col, mut row_val) = (vec![0u32; nnz], vec![0f32; nnz]);
        let (mut col_row, mut col_val) = (vec![0u32; nnz], vec![0f32; nnz]);
        let mut col_next = col_start.clone();
        for (i, row) in a.chunks_exact(width).enumerate() {
            let (start, end) = (row_start[i] as usize, row_start[i + 1] as usize);
            let (cols, vals) = (&mut row_col[start..end], &mut row_val[start..end]);
            // the row's non-zeros as bits, 64 at a time (a vector compare and a move-mask), then
            // one store per set bit
            let mut p = 0usize;
            for (c, chunk) in row.chunks(64).enumerate() {
                let mut bits = 0u64;
                for (b, &v) in chunk.iter().enumerate() {
                    bits |= ((v != 0.0) as u64) << b;
                }
                while bits != 0 {
                    let b = bits.trailing_zeros() as usize;
                    cols[p] = (c * 64 + b) as u32;
                    vals[p] = chunk[b];
                    p = p.wrapping_add(1);
                    bits &= bits - 1;
                }
            }
            for (&j, &v) in cols.iter().zip(vals.iter()) {
                let slot = &mut col_next[j as usize];
                col_row[*slot as usize] = i as u32;
                col_val[*slot as usize] = v;
                *slot = slot.wrapping_add(1);
            }
        }
        Self { n_rows, width, row_start, row_col, row_val, col_start, col_row, col_val }
    }

    pub fn nnz(&self) -> usize {
        self.row_val.len()
    }

    fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let r = self.row_start[i] as usize..self.row_start[i + 1] as usize;
        (&self.row_col[r.clone()], &self.row_val[r])
    }

    fn col(&self, j: usize) -> (&[u32], &[f32]) {
        let r = self.col_start[j] as usize..self.col_start[j + 1] as usize;
        (&self.col_row[r.clone()], &self.col_val[r])
    }

    /// `out = A · W + b`, row-major `[n_rows, n_out]`, with W given by its column tiles
    /// (`simd::tile_major` of the row-major `[width, n_out]` weights).
    pub fn forward(&self, w_tiles: &[f32], bias: &[f32], out: &mut Vec<f32>) {
        let n_out = bias.len();
        assert_eq!(w_tiles.len(), self.width * n_out.div_ceil(TILE) * TILE, "weight shape");
        out.clear();
        out.resize(self.n_rows * n_out, 0.0);
        for_row_blocks(out, n_out, |first, block| kernels::forward(block, first, self, w_tiles, bias));
    }

    /// `grad_w += Aᵀ · g` (`g` row-major `[n_rows, n_out]`, `grad_w` `[width, n_out]`);
    /// `scratch` holds g's column tiles (kept by the caller to spare an allocation per call).
    pub fn add_weight_grad(&self, g: &[f32], grad_w: &mut [f32], scratch: &mut Vec<f32>) {
        let n_out = g.len() / self.n_rows.max(1);
        assert_eq!(g.len(), self.n_rows * n_out, "gradient shape");
        assert_eq!(grad_w.len(), self.width * n_out, "weight gradient shape");
        tile_major_into::<TILE>(g, self.n_rows, n_out, scratch);
        let g = &scratch[..];
        for_row_blocks(grad_w, n_out, |first, block| kernels::weight_grad(block, first, self, g, n_out));
    }

    /// `g · Wᵀ` at A's non-zeros, 0 elsewhere, row-major `[n_rows, width]`: the gradient with
    /// respect to A of whatever comes next, as the ReLU and dropout that made A will mask it.
    pub fn masked_input_grad(&self, g: &[f32], w: &[f32], out: &mut Vec<f32>) {
        let n_out = w.len() / self.width.max(1);
        assert_eq!(w.len(), self.width * n_out, "weight shape");
        assert_eq!(g.len(), self.n_rows * n_out, "gradient shape");
        out.clear();
        out.resize(self.n_rows * self.width, 0.0);
        let width = self.width;
        for_row_blocks(out, width, |first, block| kernels::masked_input_grad(block, first, self, g, w));
    }
}

/// Runs `f(first_row, rows)` over blocks of a row-major buffer's rows: in parallel natively when
/// rayon has more than one thread and the buffer is large, else as one block.
fn for_row_blocks<F: Fn(usize, &mut [f32]) + Sync + Send>(buf: &mut [f32], width: usize, f: F) {
    #[cfg(target_family = "wasm")]
    let _ = width; // one block: the row width only sizes native parallel blocks
    #[cfg(not(target_family = "wasm"))]
    {
        let rows = buf.len() / width.max(1);
        let threads = rayon::current_num_threads();
        if threads > 1 && rows >= 64 {
            use rayon::prelude::*;
            let per = rows.div_ceil(threads * 4).max(16);
            buf.par_chunks_mut(per * width).enumerate().for_each(|(b, block)| f(b * per, block));
            return;
        }
    }
    f(0, buf)
}

/// The kernels, generic over the inner loops (`simd::Lanes`).
mod kernels {
    use super::SparseAct;
    use crate::nn::simd::{lanes_dispatch, Lanes, TILE};

    lanes_dispatch! {
        pub fn forward(out: &mut [f32], first: usize, a: &SparseAct, w: &[f32], bias: &[f32]) => forward_generic;
        pub fn weight_grad(out: &mut [f32], first: usize, a: &SparseAct, g: &[f32], n_out: usize) => weight_grad_generic;
        pub fn masked_input_grad(out: &mut [f32], first: usize, a: &SparseAct, g: &[f32], w: &[f32]) => masked_input_grad_generic;
    }

    /// For every output row r of `out` (`[rows, n]`) and column tile t: `op(out[r, tile t],
    /// Σ vₚ · m[t][idxₚ])` with `(idx, v) = pairs(r)`, `m` tile-major (`[tiles][m_rows][TILE]`).
    /// Tile by tile, so one tile of m stays in cache over the rows; rows two at a time.
    #[inline(always)]
    fn combine<'a, L: Lanes>(out: &mut [f32], n: usize, m: &[f32], pairs: impl Fn(usize) -> (&'a [u32], &'a [f32]), op: impl Fn(&mut [f32], &[f32], usize)) {
        let tiles = n.div_ceil(TILE);
        let tile_len = m.len() / tiles;
        let empty: (&[u32], &[f32]) = (&[], &[]);
        for (t, tile) in m.chunks_exact(tile_len).enumerate() {
            let tile = tile.as_chunks::<TILE>().0;
            let (c0, c1) = (t * TILE, (t * TILE + TILE).min(n));
            for (r2, o) in out.chunks_mut(2 * n).enumerate() {
                let (r, two) = (2 * r2, o.len() == 2 * n);
                let [acc_a, acc_b] = L::tile_sum2(pairs(r), if two { pairs(r + 1) } else { empty }, tile);
                let (oa, ob) = o.split_at_mut(n);
                op(&mut oa[c0..c1], &acc_a[..c1 - c0], c0);
                if two {
                    op(&mut ob[c0..c1], &acc_b[..c1 - c0], c0);
                }
            }
        }
    }

    #[inline(always)]
    pub(super) fn forward_generic<L: Lanes>(out: &mut [f32], first: usize, a: &SparseAct, w: &[f32], bias: &[f32]) {
        combine::<L>(out, bias.len(), w, |r| a.row(first + r), |o, acc, c0| o.iter_mut().zip(acc).zip(&bias[c0..]).for_each(|((o, &s), &b)| *o = b + s));
    }

    #[inline(always)]
    pub(super) fn weight_grad_generic<L: Lanes>(out: &mut [f32], first: usize, a: &SparseAct, g: &[f32], n_out: usize) {
        combine::<L>(out, n_out, g, |r| a.col(first + r), |o, acc, _| o.iter_mut().zip(acc).for_each(|(o, &s)| *o += s));
    }

    /// Dot products of g's row with the rows of W at the row's non-zeros, four at a time.
    #[inline(always)]
    pub(super) fn masked_input_grad_generic<L: Lanes>(out: &mut [f32], first: usize, a: &SparseAct, g: &[f32], w: &[f32]) {
        let width = a.width;
        let n_out = w.len() / width;
        for (r, o) in out.chunks_exact_mut(width).enumerate() {
            let i = first + r;
            let gi = &g[i * n_out..(i + 1) * n_out];
            let wrow = |k: u32| &w[k as usize * n_out..(k as usize + 1) * n_out];
            let (quads, rest) = a.row(i).0.as_chunks::<4>();
            for q in quads {
                let d = L::dot4(gi, q.map(wrow));
                q.iter().zip(d).for_each(|(&k, d)| o[k as usize] = d);
            }
            for &k in rest {
                o[k as usize] = L::dot4(gi, [wrow(k); 4])[0];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::simd::tile_major;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    /// A ReLU/dropout-like matrix (~25% non-zeros) and naive dense products to compare with.
    fn act(n: usize, w: usize, rng: &mut StdRng) -> Vec<f32> {
        (0..n * w).map(|_| if rng.random::<f32>() < 0.25 { rng.random::<f32>() * 2.0 } else { 0.0 }).collect()
    }

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, at: bool, bt: bool) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| (if at { a[p * m + i] } else { a[i * k + p] }) * (if bt { b[j * k + p] } else { b[p * n + j] })).sum();
            }
        }
        out
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn products_match_dense_ones() {
        let mut rng = StdRng::seed_from_u64(1);
        // 150 outputs: two whole tiles and a partial one; 37 inputs: dot products with a tail
        for (n, width, n_out) in [(33, 37, 150), (8, 256, 256), (5, 20, 3)] {
            let a = act(n, width, &mut rng);
            let w: Vec<f32> = (0..width * n_out).map(|_| rng.random::<f32>() - 0.5).collect();
            let bias: Vec<f32> = (0..n_out).map(|_| rng.random::<f32>()).collect();
            let g: Vec<f32> = (0..n * n_out).map(|_| rng.random::<f32>() - 0.5).collect();
            let s = SparseAct::from_dense(&a, n, width);
            assert_eq!(s.nnz(), a.iter().filter(|&&v| v != 0.0).count());

            let mut out = Vec::new();
            s.forward(&tile_major::<TILE>(&w, width, n_out), &bias, &mut out);
            let mut want = naive(&a, &w, n, width, n_out, false, false);
            want.chunks_exact_mut(n_out).for_each(|r| r.iter_mut().zip(&bias).for_each(|(v, b)| *v += b));
            assert!(max_diff(&out, &want) < 1e-4, "forward {}", max_diff(&out, &want));

            let mut grad_w = vec![1f32; width * n_out];
            s.add_weight_grad(&g, &mut grad_w, &mut Vec::new());
            let want: Vec<f32> = naive(&a, &g, width, n, n_out, true, false).iter().map(|v| v + 1.0).collect();
            assert!(max_diff(&grad_w, &want) < 1e-4, "weight grad {}", max_diff(&grad_w, &want));

            s.masked_input_grad(&g, &w, &mut out);
            let dense = naive(&g, &w, n, n_out, width, false, true);
            let want: Vec<f32> = dense.iter().zip(&a).map(|(&d, &x)| if x != 0.0 { d } else { 0.0 }).collect();
            assert!(max_diff(&out, &want) < 1e-4, "input grad {}", max_diff(&out, &want));

            // The portable loops (wasm, NEON) directly: the calls above took the AVX2 ones here.
            use crate::nn::simd::Portable;
            let mut fwd = vec![0f32; n * n_out];
            kernels::forward_generic::<Portable>(&mut fwd, 0, &s, &tile_major::<TILE>(&w, width, n_out), &bias);
            let mut o = Vec::new();
            s.forward(&tile_major::<TILE>(&w, width, n_out), &bias, &mut o);
            assert!(max_diff(&fwd, &o) < 1e-4, "portable forward");
            let mut gw = vec![1f32; width * n_out];
            kernels::weight_grad_generic::<Portable>(&mut gw, 0, &s, &tile_major::<TILE>(&g, n, n_out), n_out);
            assert!(max_diff(&gw, &grad_w) < 1e-4, "portable weight grad");
            let mut gi = vec![0f32; n * width];
            kernels::masked_input_grad_generic::<Portable>(&mut gi, 0, &s, &g, &w);
            assert!(max_diff(&gi, &out) < 1e-4, "portable input grad");
        }
    }
}

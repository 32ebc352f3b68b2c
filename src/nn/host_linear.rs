//! The first Linear layer of an MLP applied to CSR rows directly, on the host, with a fused SGD
//! (momentum) update or its gradient for another optimiser — for CPU backends only. Expression
//! matrices are ~90% zeros, and the first layer (G → G/2) holds most of the network's weights: a
//! dense matmul spends most of its time multiplying zeros, while here each stored value costs one
//! row of multiply-adds, forward and backward (no gradient is needed for the input). On a GPU the
//! dense layer stays on the device.
//!
//! Weights are stored in column tiles ([tile][gene][TILE]) so that one tile of W (and of its
//! gradient) stays in L2 cache while every cell of a batch passes over it; tiles run in parallel.
use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::{Device, Tensor, TensorData};

use crate::data::matrix::CsrMatrix;
use crate::error::{Result, SclabelError};
use crate::nn::gemm::{matmul, Operand};
use crate::nn::host_ops::{add_column_sums, sgd_momentum};
use crate::nn::simd::{tile_major, TILE};

pub struct HostLinear {
    n_in: usize,
    n_out: usize,
    /// [n_tiles][n_in][TILE], the last tile zero-padded.
    weight: Vec<f32>,
    bias: Vec<f32>,
    velocity: Vec<f32>,
    bias_velocity: Vec<f32>,
    /// Momentum buffers start at the first gradient (PyTorch: buf = g on the first step).
    stepped: bool,
}

impl HostLinear {
    pub fn n_out(&self) -> usize {
        self.n_out
    }

    fn n_tiles(&self) -> usize {
        self.n_out.div_ceil(TILE)
    }

    /// Copies a burn Linear (weight [n_in, n_out]) to the host.
    pub async fn from_linear(linear: &Linear) -> Result<Self> {
        let HostParams { n_in, n_out, weight: dense, bias } = HostParams::read(linear).await?;
        let n_tiles = n_out.div_ceil(TILE);
        let mut weight = vec![0f32; n_tiles * n_in * TILE];
        for g in 0..n_in {
            for j in 0..n_out {
                weight[(j / TILE) * n_in * TILE + g * TILE + j % TILE] = dense[g * n_out + j];
            }
        }
        // The momentum buffers are allocated by the first SGD step (other optimisers never need them).
        Ok(Self { n_in, n_out, weight, bias, velocity: Vec::new(), bias_velocity: Vec::new(), stepped: false })
    }

    /// Back to a burn Linear on `device`.
    pub fn to_linear(&self, device: &Device) -> Linear {
        let mut dense = vec![0f32; self.n_in * self.n_out];
        for g in 0..self.n_in {
            for j in 0..self.n_out {
                dense[g * self.n_out + j] = self.weight[(j / TILE) * self.n_in * TILE + g * TILE + j % TILE];
            }
        }
        HostParams { n_in: self.n_in, n_out: self.n_out, weight: dense, bias: self.bias.clone() }.to_linear(device)
    }

    /// `x[rows] · W + b`, row-major `[rows.len(), n_out]` into `out`.
    pub fn forward(&self, x: &CsrMatrix, rows: &[usize], out: &mut Vec<f32>) {
        let (n_in, n_out, b) = (self.n_in, self.n_out, rows.len());
        assert!(x.n_cols <= n_in, "{} genes for a layer of {n_in} inputs", x.n_cols);
        // Each tile writes its own columns of every row: compute per tile into a scratch block,
        // then scatter, so tiles can run in parallel without sharing output memory.
        let tiles: Vec<Vec<f32>> = map_tiles(self.n_tiles(), |t| {
            let w = &self.weight[t * n_in * TILE..(t + 1) * n_in * TILE];
            let mut block = vec![0f32; b * TILE];
            kernels::forward_tile(&mut block, w, x, rows);
            block
        });
        out.clear();
        out.resize(b * n_out, 0.0);
        for (t, block) in tiles.iter().enumerate() {
            let width = TILE.min(n_out - t * TILE);
            for k in 0..b {
                let dst = &mut out[k * n_out + t * TILE..k * n_out + t * TILE + width];
                dst.iter_mut().zip(&block[k * TILE..]).zip(&self.bias[t * TILE..]).for_each(|((o, v), bias)| *o = v + bias);
            }
        }
    }

    /// One SGD step (PyTorch's form: v ← μ·v + g, W ← W − lr·v) with the gradient of the loss
    /// with respect to this layer's output, `grad_out` row-major `[rows.len(), n_out]`:
    /// dW = x[rows]ᵀ · grad_out, db = column sums of grad_out.
    pub fn sgd_step(&mut self, x: &CsrMatrix, rows: &[usize], grad_out: &[f32], learning_rate: f32, momentum: f32) {
        let (n_in, n_out, b) = (self.n_in, self.n_out, rows.len());
        let first = !self.stepped;
        if first {
            self.velocity = vec![0.0; self.weight.len()];
            self.bias_velocity = vec![0.0; n_out];
        }
        let dh = tile_major::<TILE>(grad_out, b, n_out);
        // The batch by gene (CSC), so each gene's gradient row is summed in registers and written
        // once, fused with its update.
        let by_gene = Csc::of_rows(x, rows, n_in);
        let tile_len = n_in * TILE;
        let parts =
            self.weight.chunks_mut(tile_len).zip(self.velocity.chunks_mut(tile_len)).zip(dh.chunks(b * TILE)).map(|((w, v), d)| (w, v, d)).collect::<Vec<_>>();
        for_each_tile(parts, |(w, v, d)| kernels::update_tile(w, v, d, &by_gene, learning_rate, momentum, first));
        let mut db = vec![0f32; n_out];
        add_column_sums(grad_out, &mut db);
        sgd_momentum(&mut self.bias, &mut self.bias_velocity, &db, learning_rate, momentum, first);
        self.stepped = true;
    }

    /// Adds this batch's weight and bias gradients (dW = x[rows]ᵀ · grad_out, db = column sums)
    /// to `grad`, for optimisers other than the fused SGD step.
    pub fn add_grad(&self, x: &CsrMatrix, rows: &[usize], grad_out: &[f32], grad: &mut LinearGrad) {
        let (n_in, n_out, b) = (self.n_in, self.n_out, rows.len());
        let dh = tile_major::<TILE>(grad_out, b, n_out);
        let by_gene = Csc::of_rows(x, rows, n_in);
        let tile_len = n_in * TILE;
        let parts = grad.weight.chunks_mut(tile_len).zip(dh.chunks(b * TILE)).collect::<Vec<_>>();
        for_each_tile(parts, |(g, d)| kernels::grad_tile(g, d, &by_gene));
        add_column_sums(grad_out, &mut grad.bias);
    }

    /// A zero gradient in this layer's layout.
    pub fn zero_grad(&self) -> LinearGrad {
        LinearGrad { weight: vec![0.0; self.weight.len()], bias: vec![0.0; self.n_out] }
    }

    /// Weights (in the layer's tile layout, the same as `LinearGrad::weight`'s; padding stays 0
    /// under any element-wise update of a zero gradient) and bias.
    pub fn params_mut(&mut self) -> (&mut [f32], &mut [f32]) {
        (&mut self.weight, &mut self.bias)
    }
}

/// Gradients of a `HostLinear`'s parameters, in its layout.
pub struct LinearGrad {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A burn Linear's parameters read to the host: weight `[n_in, n_out]` row-major, bias (zeros
/// when the layer has none).
pub struct HostParams {
    pub n_in: usize,
    pub n_out: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A tensor's values read to the host (row-major), asynchronously (WebGPU cannot block).
pub async fn read_to_host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    let device = t.device();
    t.into_data_async().await.map_err(|e| SclabelError::backend(&device, e))?.try_into_vec_as::<f32>().map_err(|e| SclabelError::backend(&device, e))
}

impl HostParams {
    pub async fn read(linear: &Linear) -> Result<Self> {
        let [n_in, n_out] = linear.weight.dims();
        let weight = read_to_host(linear.weight.val()).await?;
        let bias = match &linear.bias {
            Some(b) => read_to_host(b.val()).await?,
            None => vec![0.0; n_out],
        };
        Ok(Self { n_in, n_out, weight, bias })
    }

    /// `out = input · W + b` for `rows` rows (row-major).
    pub fn forward(&self, input: &[f32], rows: usize, out: &mut Vec<f32>) {
        out.clear();
        for _ in 0..rows {
            out.extend_from_slice(&self.bias);
        }
        matmul(out, rows, self.n_out, self.n_in, Operand::RowMajor(input), Operand::RowMajor(&self.weight), 1.0, true);
    }

    /// Back to a burn Linear on `device`.
    pub fn to_linear(&self, device: &Device) -> Linear {
        Linear {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(self.weight.clone(), [self.n_in, self.n_out]), device)),
            bias: Some(Param::from_tensor(Tensor::from_data(TensorData::new(self.bias.clone(), [self.n_out]), device))),
        }
    }
}

/// A minibatch's non-zeros grouped by gene: for gene g, (position in the batch, value) pairs at
/// `start[g]..start[g + 1]`.
struct Csc {
    start: Vec<usize>,
    cell: Vec<u32>,
    value: Vec<f32>,
}

impl Csc {
    fn of_rows(x: &CsrMatrix, rows: &[usize], n_genes: usize) -> Self {
        let mut start = vec![0usize; n_genes + 1];
        for &r in rows {
            x.row(r).0.iter().for_each(|&g| start[g as usize + 1] += 1);
        }
        for g in 0..n_genes {
            start[g + 1] += start[g];
        }
        let nnz = start[n_genes];
        let (mut cell, mut value) = (vec![0u32; nnz], vec![0f32; nnz]);
        let mut next = start.clone();
        for (k, &r) in rows.iter().enumerate() {
            let (idx, val) = x.row(r);
            for (&g, &v) in idx.iter().zip(val) {
                let p = &mut next[g as usize];
                cell[*p] = k as u32;
                value[*p] = v;
                *p += 1;
            }
        }
        Self { start, cell, value }
    }
}

/// Runs `f` for every tile: in parallel natively (rayon, which also runs burn's CPU kernels),
/// in order in wasm (no threads).
fn for_each_tile<T: Send, F: Fn(T) + Sync + Send>(items: Vec<T>, f: F) {
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        items.into_par_iter().for_each(f);
    }
    #[cfg(target_family = "wasm")]
    items.into_iter().for_each(f);
}

fn map_tiles<R: Send, F: Fn(usize) -> R + Sync + Send>(n: usize, f: F) -> Vec<R> {
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(f).collect()
    }
    #[cfg(target_family = "wasm")]
    (0..n).map(f).collect()
}

/// The tile loops, on `simd::Lanes`.
mod kernels {
    use super::*;
    use crate::nn::simd::{lanes_dispatch, Lanes};

    lanes_dispatch! {
        pub fn forward_tile(block: &mut [f32], w: &[f32], x: &CsrMatrix, rows: &[usize]) => forward_tile_generic;
        pub fn update_tile(w: &mut [f32], vel: &mut [f32], dh: &[f32], by_gene: &Csc, lr: f32, momentum: f32, first: bool) => update_tile_generic;
        pub fn grad_tile(grad: &mut [f32], dh: &[f32], by_gene: &Csc) => grad_tile_generic;
    }

    const NONE: (&[u32], &[f32]) = (&[], &[]);

    /// Two genes' gradient rows of a tile at a time: Σ over the batch's cells with the gene of
    /// v · dH[cell] (zero for genes absent from the batch), then `apply(gene's rows, sums)`.
    #[inline(always)]
    fn gene_grads<L: Lanes, T>(rows: &mut [T], dh: &[f32], by_gene: &Csc, apply: impl Fn(&mut T, &[f32; TILE])) {
        let dh = dh.as_chunks::<TILE>().0;
        let list = |g: usize| {
            let r = by_gene.start[g]..by_gene.start[g + 1];
            (&by_gene.cell[r.clone()], &by_gene.value[r])
        };
        for (pair, rows) in rows.chunks_mut(2).enumerate() {
            let g = 2 * pair;
            let [a, b] = L::tile_sum2(list(g), if rows.len() == 2 { list(g + 1) } else { NONE }, dh);
            for (row, sums) in rows.iter_mut().zip([a, b]) {
                apply(row, &sums);
            }
        }
    }

    /// For every gene of one tile: grad += its gradient row.
    #[inline(always)]
    fn grad_tile_generic<L: Lanes>(grad: &mut [f32], dh: &[f32], by_gene: &Csc) {
        gene_grads::<L, _>(grad.as_chunks_mut::<TILE>().0, dh, by_gene, |g, s| g.iter_mut().zip(s).for_each(|(g, s)| *g += s));
    }

    /// For every gene of one tile: its gradient row g, then v ← μ·v + g (v = g on the first
    /// step), w ← w − lr·v.
    #[inline(always)]
    fn update_tile_generic<L: Lanes>(w: &mut [f32], vel: &mut [f32], dh: &[f32], by_gene: &Csc, lr: f32, momentum: f32, first: bool) {
        let mut rows: Vec<(&mut [f32; TILE], &mut [f32; TILE])> =
            w.as_chunks_mut::<TILE>().0.iter_mut().zip(vel.as_chunks_mut::<TILE>().0.iter_mut()).collect();
        gene_grads::<L, _>(&mut rows, dh, by_gene, |(w, vel), g| {
            for j in 0..TILE {
                vel[j] = if first { g[j] } else { momentum * vel[j] + g[j] };
                w[j] -= lr * vel[j];
            }
        });
    }

    /// block[k] = Σ val · w[gene] over row k's non-zeros, for one tile (`w`: [n_in][TILE]), two
    /// rows at a time.
    #[inline(always)]
    pub(super) fn forward_tile_generic<L: Lanes>(block: &mut [f32], w: &[f32], x: &CsrMatrix, rows: &[usize]) {
        let w_rows = w.as_chunks::<TILE>().0;
        for (out, rows) in block.chunks_mut(2 * TILE).zip(rows.chunks(2)) {
            let sums = L::tile_sum2(x.row(rows[0]), rows.get(1).map_or(NONE, |&r| x.row(r)), w_rows);
            for (o, s) in out.chunks_exact_mut(TILE).zip(sums) {
                o.copy_from_slice(&s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{cpu, BackendRequest};
    use crate::block_on;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn sparse(n: usize, g: usize, seed: u64) -> CsrMatrix {
        let mut rng = StdRng::seed_from_u64(seed);
        let dense: Vec<f32> = (0..n * g).map(|_| if rng.random::<f32>() < 0.1 { rng.random::<f32>() * 3.0 } else { 0.0 }).collect();
        CsrMatrix::from_dense(n, g, &dense).unwrap()
    }

    #[test]
    fn forward_and_sgd_match_dense_burn() {
        let device = cpu(BackendRequest::Cpu, "test").unwrap().device;
        let (n, g, h) = (40, 70, 300); // 300 outputs: nine full tiles and a partial one
        let x = sparse(n, g, 1);
        let mut rng = StdRng::seed_from_u64(5);
        let mut random = |len: usize| (0..len).map(|_| rng.random::<f32>() - 0.5).collect::<Vec<f32>>();
        let linear = Linear {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(random(g * h), [g, h]), &device)),
            bias: Some(Param::from_tensor(Tensor::from_data(TensorData::new(random(h), [h]), &device))),
        };
        let mut host = block_on(HostLinear::from_linear(&linear)).unwrap();
        let rows: Vec<usize> = (0..n).rev().step_by(2).collect();
        let mut out = Vec::new();
        host.forward(&x, &rows, &mut out);
        let mut dense = Vec::new();
        x.densify_rows_into(&rows, &mut dense);
        let xt = Tensor::<2>::from_data(TensorData::new(dense.clone(), [rows.len(), g]), &device);
        let want: Vec<f32> = linear.forward(xt).into_data().try_into_vec_as::<f32>().unwrap();
        let max = out.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max < 1e-5, "forward differs by {max}");
        // the portable loops (wasm, NEON) on the first tile: the call above took the AVX2 ones here
        let mut block = vec![0f32; rows.len() * TILE];
        kernels::forward_tile_generic::<crate::nn::simd::Portable>(&mut block, &host.weight[..g * TILE], &x, &rows);
        for (k, b) in block.chunks(TILE).enumerate() {
            let max = b.iter().zip(&out[k * h..]).zip(&host.bias).map(|((v, o), bias)| (v + bias - o).abs()).fold(0f32, f32::max);
            assert!(max < 1e-5, "portable forward differs by {max}");
        }

        // Two SGD steps against the rule written densely.
        let grad: Vec<f32> = (0..rows.len() * h).map(|i| ((i * 7919) % 101) as f32 / 101.0 - 0.5).collect();
        let w0: Vec<f32> = linear.weight.val().into_data().try_into_vec_as::<f32>().unwrap();
        let mut dw = vec![0f32; g * h];
        for (k, _) in rows.iter().enumerate() {
            for gi in 0..g {
                let xv = dense[k * g + gi];
                for j in 0..h {
                    dw[gi * h + j] += xv * grad[k * h + j];
                }
            }
        }
        host.sgd_step(&x, &rows, &grad, 0.1, 0.9);
        host.sgd_step(&x, &rows, &grad, 0.1, 0.9);
        // v1 = g, w1 = w0 − 0.1 g; v2 = 0.9 g + g, w2 = w1 − 0.1 · 1.9 g = w0 − 0.29 g.
        let w2: Vec<f32> = host.to_linear(&device).weight.val().into_data().try_into_vec_as::<f32>().unwrap();
        let max = w2.iter().zip(&w0).zip(&dw).map(|((a, w), d)| (a - (w - 0.29 * d)).abs()).fold(0f32, f32::max);
        assert!(max < 1e-5, "weights differ by {max}");
    }
}

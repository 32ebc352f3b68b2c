//! Trainability-aware kNN graph (Annotatability's `make_conf_graph`, spec §5) without n × n
//! matrices.
//!
//! D'_ij = α·D_ij/m_D + (1−α)·|r_i − r_j|/m_R blends the Euclidean distance in the embedding with
//! the distance between confidence ranks. The original builds D and D' densely (O(n²) memory);
//! here the device computes them a block of query rows at a time and keeps only each row's k + 1
//! nearest candidates:
//! - pass 1 sums the distances of every block (m_D needs all n² of them);
//! - pass 2 recomputes the block's D' and selects the nearest candidates on the device.
//!
//! m_R and m' have closed forms (ranks are a permutation of 0…n−1), so they need no pass.
//! The selected pairs' D' are recomputed exactly in f64 on the host, so the weights do not carry
//! the f32 cancellation of ‖a‖² + ‖b‖² − 2a·b.
use burn::prelude::{Device, Int, Tensor, TensorData};
use burn::tensor::Transaction;
use serde::{Deserialize, Serialize};

use crate::data::matrix::CsrMatrix;
use crate::error::{Result, SclabelError};
use crate::train::progress::{Observer, Phase, Progress};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfGraphOptions {
    /// Weight of the embedding distance; 1 − α goes to the confidence-rank distance. α = 1 is a
    /// plain expression kNN graph.
    pub alpha: f64,
    /// Neighbours per cell (the cell itself excluded).
    pub k: usize,
    /// Query rows per device block. `None`: as many as keep one block's distances within
    /// 64 MiB (167 rows for 100k cells). On the CPU backends larger blocks were barely faster
    /// (the matmul dominates; 335 vs 83 rows: ~5 %) but raise peak memory (360 vs 161 MB at 100k
    /// cells); 64 MiB also stays below WebGPU's default `maxStorageBufferBindingSize` (128 MiB).
    pub block_size: Option<usize>,
}

impl Default for ConfGraphOptions {
    fn default() -> Self {
        Self { alpha: 0.9, k: 15, block_size: None }
    }
}

/// Not serde: `CsrMatrix` isn't; bindings convert the parts they pass on.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfGraph {
    /// Symmetric union of the kNN edges, W_ij = W_ji = exp(−D'_ij/m'), column indices sorted per
    /// row (the spec's `adj_matrix`, for `obsp["connectivities"]`).
    pub connectivities: CsrMatrix,
    /// D'_ij on the same edges (the dense `distance_m` of the original restricted to the graph).
    pub distances: CsrMatrix,
    /// r_i: position of each cell's confidence in ascending order, ties by cell index
    /// (`obs["conf_position"]`).
    pub conf_position: Vec<u32>,
    /// m_D: mean of all n² embedding distances, zero diagonal included.
    pub mean_distance: f64,
    /// m_R = (n + 1)/3: mean |r_i − r_j| over distinct pairs.
    pub mean_rank_distance: f64,
    /// m': mean of all n² entries of D'.
    pub mean_blended_distance: f64,
}

/// Mean |r_i − r_j| over the n(n−1)/2 distinct pairs of ranks 0…n−1:
/// Σ_{i<n} i(n−i) / (n(n−1)/2) = (n + 1)/3 (Annotatability's `mean_absolute_distance`).
pub fn mean_absolute_rank_distance(n: usize) -> f64 {
    (n as f64 + 1.0) / 3.0
}

/// Rows per block so that one block's [rows × n] distances fit in 2^24 floats (64 MiB).
fn auto_block_size(n: usize) -> usize {
    ((1usize << 24) / n.max(1)).clamp(1, n.max(1))
}

/// Builds the trainability-aware graph from an embedding (row-major [n × n_dims], e.g. X_pca)
/// and each cell's confidence. Progress: phase `Predict`, epoch 0 = the distance-sum pass,
/// epoch 1 = the neighbour pass, one step per block.
pub async fn make_conf_graph<O: Observer>(
    embedding: &[f32],
    n_dims: usize,
    confidence: &[f32],
    options: &ConfGraphOptions,
    device: &Device,
    observer: &mut O,
) -> Result<ConfGraph> {
    let n = confidence.len();
    let d = n_dims;
    if d == 0 || embedding.len() != n * d {
        return Err(SclabelError::shape(format!("embedding has {} values, expected {n} cells (the confidence length) × {d} dimensions", embedding.len())));
    }
    let k = options.k;
    if k == 0 || k >= n {
        return Err(SclabelError::InvalidOption {
            option: "k".into(),
            reason: format!("must be between 1 and n_cells − 1 = {} (got {k})", n.saturating_sub(1)),
        });
    }
    let alpha = options.alpha;
    if !(0.0..=1.0).contains(&alpha) {
        return Err(SclabelError::InvalidOption { option: "alpha".into(), reason: format!("must be between 0 and 1 (got {alpha})") });
    }
    if options.block_size == Some(0) {
        return Err(SclabelError::InvalidOption { option: "block_size".into(), reason: "must be at least 1".into() });
    }
    if let Some(p) = embedding.iter().position(|v| !v.is_finite()) {
        return Err(SclabelError::values(format!("the embedding of cell {} has a non-finite value ({})", p / d, embedding[p])));
    }
    if let Some(i) = confidence.iter().position(|v| !v.is_finite()) {
        return Err(SclabelError::values(format!("cell {i} has a non-finite confidence ({})", confidence[i])));
    }
    if n > i32::MAX as usize {
        return Err(SclabelError::shape(format!("{n} cells is more than the graph supports")));
    }

    // Ranks: stable sort, so ties go by cell index.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| confidence[a].total_cmp(&confidence[b]));
    let mut rank = vec![0u32; n];
    for (p, &i) in order.iter().enumerate() {
        rank[i] = p as u32;
    }
    let m_r = mean_absolute_rank_distance(n);

    // Centre the embedding (distances don't change; the norms in ‖a‖² + ‖b‖² − 2a·b shrink, and
    // with them the f32 cancellation).
    let mut centre = vec![0.0f64; d];
    for row in embedding.chunks_exact(d) {
        for (c, &v) in centre.iter_mut().zip(row) {
            *c += v as f64;
        }
    }
    centre.iter_mut().for_each(|c| *c /= n as f64);
    let y: Vec<f64> = embedding.chunks_exact(d).flat_map(|row| row.iter().zip(&centre).map(|(&v, &c)| v as f64 - c)).collect();
    let sq_norm: Vec<f64> = y.chunks_exact(d).map(|r| r.iter().map(|v| v * v).sum()).collect();

    let block = options.block_size.unwrap_or_else(|| auto_block_size(n)).min(n);
    let n_blocks = n.div_ceil(block);
    let read_err = |e: &dyn std::fmt::Debug| SclabelError::backend(device, format!("{e:?}"));

    // Pass 1: m_D = mean of all n² distances. Row sums are read per block and summed in f64.
    let mut total = 0.0f64;
    {
        let yt = Tensor::<2>::from_data(TensorData::new(augmented_points(&y, &sq_norm, d, n, 1.0), [d + 2, n]), device);
        for (b, start) in (0..n).step_by(block).enumerate() {
            let rows = block.min(n - start);
            let q = Tensor::<2>::from_data(TensorData::new(augmented_queries(&y, &sq_norm, d, start, rows, 1.0), [rows, d + 2]), device);
            let dist = q.matmul(yt.clone()).clamp_min(0.0).sqrt();
            let sums = dist.sum_dim(1).into_data_async().await.map_err(|e| read_err(&e))?;
            let sums = sums.try_into_vec_as::<f32>().map_err(|e| read_err(&e))?;
            total += sums.iter().map(|&s| s as f64).sum::<f64>();
            observer.on_progress(&progress(0, b, n_blocks, start + rows, n)).await?;
        }
    }
    let m_d = total / (n as f64 * n as f64);
    if !m_d.is_finite() || m_d <= 0.0 {
        return Err(SclabelError::values("all cells have the same embedding (mean distance 0), so distances can't be normalised"));
    }
    // m' = α·mean(D)/m_D + (1−α)·mean(|r_i − r_j|)/m_R over n² entries = α + (1−α)(n−1)/n.
    let m_blend = alpha + (1.0 - alpha) * (n as f64 - 1.0) / n as f64;

    // Pass 2: nearest candidates in D'. The embedding is scaled by α/m_D, so the block's
    // Euclidean distances are already the first term of D'; the rank term is |s_i − s_j| with
    // s = r·(1−α)/m_R. Columns are padded to g·c (c = chunk width) with points at distance ~1e15.
    let scale = alpha / m_d;
    let rank_scale = (1.0 - alpha) / m_r;
    let k1 = k + 1;
    let chunk = chunk_width(n, k1);
    let n_pad = n.div_ceil(chunk) * chunk;
    let groups = n_pad / chunk;
    let mut neighbours: Vec<(u32, u32)> = Vec::with_capacity(n * k);
    {
        let yt = Tensor::<2>::from_data(TensorData::new(augmented_points(&y, &sq_norm, d, n_pad, scale), [d + 2, n_pad]), device);
        let s_all: Vec<f32> = (0..n_pad).map(|j| if j < n { (rank[j] as f64 * rank_scale) as f32 } else { 0.0 }).collect();
        let s_all = Tensor::<2>::from_data(TensorData::new(s_all, [1, n_pad]), device);
        let mut cand = Vec::with_capacity(k1);
        for (b, start) in (0..n).step_by(block).enumerate() {
            let rows = block.min(n - start);
            let q = Tensor::<2>::from_data(TensorData::new(augmented_queries(&y, &sq_norm, d, start, rows, scale), [rows, d + 2]), device);
            let mut dprime = q.matmul(yt.clone()).clamp_min(0.0).sqrt();
            if rank_scale > 0.0 {
                let s_q: Vec<f32> = (start..start + rows).map(|i| (rank[i] as f64 * rank_scale) as f32).collect();
                let s_q = Tensor::<2>::from_data(TensorData::new(s_q, [rows, 1]), device);
                dprime = dprime + (s_all.clone() - s_q).abs();
            }
            let (chunk_idx, pos) = select_smallest(dprime, rows, groups, chunk, k1);
            let out = Transaction::default().register(chunk_idx).register(pos).execute_async().await.map_err(|e| read_err(&e))?;
            let [chunk_idx, pos]: [TensorData; 2] = out.try_into().map_err(|_| SclabelError::backend(device, "read returned the wrong number of tensors"))?;
            let chunk_idx = chunk_idx.try_into_vec_as::<i64>().map_err(|e| read_err(&e))?;
            let pos = pos.try_into_vec_as::<i64>().map_err(|e| read_err(&e))?;
            if chunk_idx.len() != rows * k1 || pos.len() != rows * k1 {
                return Err(SclabelError::backend(device, "top-k read back with the wrong size"));
            }
            for r in 0..rows {
                let i = start + r;
                cand.clear();
                for t in 0..k1 {
                    // Position p in the gathered row = slot·c + offset; the slot names the chunk.
                    let Ok(p) = usize::try_from(pos[r * k1 + t]) else { continue };
                    let (slot, offset) = (p / chunk, p % chunk);
                    let Some(Ok(c)) = (slot < k1).then(|| usize::try_from(chunk_idx[r * k1 + slot])) else { continue };
                    let j = c * chunk + offset;
                    // The cell itself is dropped explicitly (it need not sort first: ties, f32).
                    if j < n && j != i && !cand.iter().any(|&(jj, _)| jj == j) {
                        cand.push((j, blended(&y, &rank, d, i, j, alpha / m_d, rank_scale)));
                    }
                }
                cand.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                neighbours.extend(cand.iter().take(k).map(|&(j, _)| (i as u32, j as u32)));
            }
            observer.on_progress(&progress(1, b, n_blocks, start + rows, n)).await?;
        }
    }

    // Symmetric union: each kNN edge in both directions, duplicates merged (D' is symmetric, and
    // the host recomputation is exactly symmetric too).
    let mut edges: Vec<(u32, u32)> = Vec::with_capacity(2 * neighbours.len());
    for &(i, j) in &neighbours {
        edges.push((i, j));
        edges.push((j, i));
    }
    drop(neighbours);
    edges.sort_unstable();
    edges.dedup();
    let mut indptr = vec![0u64; n + 1];
    for &(i, _) in &edges {
        indptr[i as usize + 1] += 1;
    }
    for i in 0..n {
        indptr[i + 1] += indptr[i];
    }
    let indices: Vec<u32> = edges.iter().map(|&(_, j)| j).collect();
    let dist: Vec<f64> = edges.iter().map(|&(i, j)| blended(&y, &rank, d, i as usize, j as usize, alpha / m_d, rank_scale)).collect();
    let weights: Vec<f32> = dist.iter().map(|&v| (-v / m_blend).exp() as f32).collect();
    let dist: Vec<f32> = dist.iter().map(|&v| v as f32).collect();
    let connectivities = CsrMatrix::new(n, n, indptr.clone(), indices.clone(), weights)?;
    let distances = CsrMatrix::new(n, n, indptr, indices, dist)?;
    Ok(ConfGraph { connectivities, distances, conf_position: rank, mean_distance: m_d, mean_rank_distance: m_r, mean_blended_distance: m_blend })
}

fn progress(pass: usize, block: usize, n_blocks: usize, cells_done: usize, n: usize) -> Progress {
    Progress {
        phase: Phase::Predict,
        epoch: pass,
        n_epochs: 2,
        step: block + 1,
        steps_per_epoch: n_blocks,
        cells_done,
        cells_total: n,
        loss: None,
        accuracy: None,
    }
}

/// Exact D'_ij in f64 (the same expression for (i, j) and (j, i), so the graph is symmetric).
fn blended(y: &[f64], rank: &[u32], d: usize, i: usize, j: usize, dist_scale: f64, rank_scale: f64) -> f64 {
    let (a, b) = (&y[i * d..(i + 1) * d], &y[j * d..(j + 1) * d]);
    let dist = a.iter().zip(b).map(|(x, z)| (x - z) * (x - z)).sum::<f64>().sqrt();
    dist_scale * dist + rank_scale * (rank[i] as f64 - rank[j] as f64).abs()
}

/// The points (embedding scaled by `scale`) as [d + 2 × cols] columns (b; 1; ‖b‖²), so that one
/// matmul with `augmented_queries` rows (−2a; ‖a‖²; 1) gives ‖a‖² + ‖b‖² − 2a·b with no separate
/// broadcast adds over the [rows × cols] block. Padding columns (cols > n) get ‖b‖² = 1e30, i.e.
/// a distance of ~1e15 that never wins a neighbour slot.
fn augmented_points(y: &[f64], sq_norm: &[f64], d: usize, cols: usize, scale: f64) -> Vec<f32> {
    let n = sq_norm.len();
    let mut t = vec![0.0f32; (d + 2) * cols];
    for i in 0..cols {
        if i < n {
            for c in 0..d {
                t[c * cols + i] = (y[i * d + c] * scale) as f32;
            }
        }
        t[d * cols + i] = 1.0;
        t[(d + 1) * cols + i] = if i < n { (sq_norm[i] * scale * scale) as f32 } else { 1e30 };
    }
    t
}

/// Rows `start..start+rows` as (−2·scale·a; scale²‖a‖²; 1), row-major [rows × d + 2].
fn augmented_queries(y: &[f64], sq_norm: &[f64], d: usize, start: usize, rows: usize, scale: f64) -> Vec<f32> {
    let mut q = Vec::with_capacity(rows * (d + 2));
    for i in start..start + rows {
        q.extend(y[i * d..(i + 1) * d].iter().map(|&v| (-2.0 * scale * v) as f32));
        q.push((sq_norm[i] * scale * scale) as f32);
        q.push(1.0);
    }
    q
}

/// Chunk width c for the two-stage selection: about √(n/(k+1)) minimises the sorted elements per
/// row (n/c chunk minima + (k+1)·c candidates), with at least k+1 chunks.
fn chunk_width(n: usize, k1: usize) -> usize {
    let c = ((n as f64 / k1 as f64).sqrt().round() as usize).max(1);
    c.min((n / k1).max(1))
}

/// The k1 smallest entries of each row of `dprime` [rows × groups·chunk], as (chunk index, position
/// within the gathered chunks) pairs, both [rows × k1]. Exact, and much cheaper than a full
/// sort of each row (which is what top-k is on the CPU backends): the k1 smallest values of a
/// row lie within the k1 chunks with the smallest minima (any element outside them has k1
/// chunk minima, from other chunks, at or below it).
fn select_smallest(dprime: Tensor<2>, rows: usize, groups: usize, chunk: usize, k1: usize) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let chunks: Tensor<3> = dprime.reshape([rows, groups, chunk]);
    let minima: Tensor<2> = chunks.clone().min_dim(2).reshape([rows, groups]);
    let (_, chunk_idx) = minima.neg().topk_with_indices(k1, 1);
    let gather_idx: Tensor<3, Int> = chunk_idx.clone().unsqueeze_dim::<3>(2).expand([rows, k1, chunk]);
    let candidates: Tensor<2> = chunks.gather(1, gather_idx).reshape([rows, k1 * chunk]);
    let (_, pos) = candidates.neg().topk_with_indices(k1, 1);
    (chunk_idx, pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{cpu, BackendRequest};
    use crate::block_on;
    use crate::train::progress::Silent;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn device() -> Device {
        cpu(BackendRequest::Cpu, "test").unwrap().device
    }

    fn points(n: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = StdRng::seed_from_u64(seed);
        // Three blobs, so neighbourhoods are uneven.
        let centres: Vec<f32> = (0..3 * d).map(|_| rng.random_range(-4.0f32..4.0)).collect();
        let emb = (0..n).flat_map(|i| (0..d).map(move |c| (i, c))).map(|(i, c)| centres[(i % 3) * d + c] + rng.random_range(-1.0f32..1.0)).collect();
        let conf = (0..n).map(|_| rng.random::<f32>()).collect();
        (emb, conf)
    }

    /// The spec taken literally: dense n × n D and D', sort each row, means over all n² entries.
    fn naive(emb: &[f32], d: usize, conf: &[f32], alpha: f64, k: usize) -> Vec<Vec<(usize, f64)>> {
        let n = conf.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| conf[a].total_cmp(&conf[b]));
        let mut r = vec![0f64; n];
        for (p, &i) in order.iter().enumerate() {
            r[i] = p as f64;
        }
        let dist = |i: usize, j: usize| (0..d).map(|c| (emb[i * d + c] as f64 - emb[j * d + c] as f64).powi(2)).sum::<f64>().sqrt();
        let dm: Vec<f64> = (0..n * n).map(|p| dist(p / n, p % n)).collect();
        let m_d = dm.iter().sum::<f64>() / (n * n) as f64;
        let m_r = mean_absolute_rank_distance(n);
        let dp: Vec<f64> = (0..n * n).map(|p| alpha * dm[p] / m_d + (1.0 - alpha) * (r[p / n] - r[p % n]).abs() / m_r).collect();
        let m_p = dp.iter().sum::<f64>() / (n * n) as f64;
        let mut w = vec![Vec::new(); n];
        for i in 0..n {
            let mut js: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            js.sort_by(|&a, &b| dp[i * n + a].total_cmp(&dp[i * n + b]));
            for &j in &js[..k] {
                let v = (-dp[i * n + j] / m_p).exp();
                w[i].push((j, v));
                w[j].push((i, v));
            }
        }
        for row in &mut w {
            row.sort_by_key(|e| e.0);
            row.dedup_by_key(|e| e.0);
        }
        w
    }

    fn compare(g: &ConfGraph, expected: &[Vec<(usize, f64)>]) {
        let a = &g.connectivities;
        for (i, exp) in expected.iter().enumerate() {
            let (idx, val) = a.row(i);
            let got: Vec<usize> = idx.iter().map(|&j| j as usize).collect();
            let want: Vec<usize> = exp.iter().map(|e| e.0).collect();
            assert_eq!(got, want, "row {i}");
            for (&v, e) in val.iter().zip(exp) {
                assert!((v as f64 - e.1).abs() < 1e-5, "row {i} col {}: {v} vs {}", e.0, e.1);
            }
        }
    }

    fn build(emb: &[f32], d: usize, conf: &[f32], options: &ConfGraphOptions) -> Result<ConfGraph> {
        block_on(make_conf_graph(emb, d, conf, options, &device(), &mut Silent))
    }

    #[test]
    fn alpha_one_is_a_plain_euclidean_knn_graph() {
        let (n, d, k) = (200, 8, 10);
        let (emb, conf) = points(n, d, 1);
        // Brute force, no rank term at all: sort by Euclidean distance, weights exp(−D/m_D / 1).
        let dist = |i: usize, j: usize| (0..d).map(|c| (emb[i * d + c] as f64 - emb[j * d + c] as f64).powi(2)).sum::<f64>().sqrt();
        let m_d = (0..n * n).map(|p| dist(p / n, p % n)).sum::<f64>() / (n * n) as f64;
        let mut want = vec![Vec::new(); n];
        for i in 0..n {
            let mut js: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            js.sort_by(|&a, &b| dist(i, a).total_cmp(&dist(i, b)));
            for &j in &js[..k] {
                let w = (-dist(i, j) / m_d).exp();
                want[i].push((j, w));
                want[j].push((i, w));
            }
        }
        for row in &mut want {
            row.sort_by_key(|e| e.0);
            row.dedup_by_key(|e| e.0);
        }
        // Several block sizes, including ones that don't divide n.
        for block_size in [None, Some(7), Some(64), Some(200)] {
            let g = build(&emb, d, &conf, &ConfGraphOptions { alpha: 1.0, k, block_size }).unwrap();
            compare(&g, &want);
            assert!((g.mean_distance - m_d).abs() < 1e-5 * m_d);
            assert_eq!(g.mean_blended_distance, 1.0);
        }
    }

    #[test]
    fn blended_graph_matches_the_dense_spec() {
        let (n, d) = (150, 5);
        let (emb, conf) = points(n, d, 2);
        // α = 0 ranks by |r_i − r_j| alone, full of ties: k = 2 keeps only the untied r ± 1.
        for (alpha, k) in [(0.9, 15), (0.5, 5), (0.0, 2)] {
            let g = build(&emb, d, &conf, &ConfGraphOptions { alpha, k, block_size: Some(32) }).unwrap();
            compare(&g, &naive(&emb, d, &conf, alpha, k));
            // Every cell keeps at least its own k neighbours; nobody is its own neighbour.
            for i in 0..n {
                let (idx, _) = g.connectivities.row(i);
                assert!(idx.len() >= k && !idx.contains(&(i as u32)));
                assert!(idx.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }

    /// Each compiled-in CPU backend (their top-k and gather kernels differ).
    #[test]
    fn every_cpu_backend_agrees_with_the_spec() {
        use crate::backend::{cpu_of, Backend};
        let (emb, conf) = points(90, 6, 6);
        let want = naive(&emb, 6, &conf, 0.8, 7);
        let options = ConfGraphOptions { alpha: 0.8, k: 7, block_size: Some(40) };
        for backend in [Backend::Flex, Backend::Ndarray] {
            let Ok(dev) = cpu_of(backend, BackendRequest::Cpu, "test") else { continue };
            let g = block_on(make_conf_graph(&emb, 6, &conf, &options, &dev.device, &mut Silent)).unwrap();
            compare(&g, &want);
        }
    }

    #[test]
    fn graph_is_symmetric() {
        let (emb, conf) = points(120, 4, 3);
        let g = build(&emb, 4, &conf, &ConfGraphOptions { k: 6, ..Default::default() }).unwrap();
        let a = &g.connectivities;
        for i in 0..a.n_rows {
            let (idx, val) = a.row(i);
            for (&j, &v) in idx.iter().zip(val) {
                let (bi, bv) = a.row(j as usize);
                let p = bi.iter().position(|&x| x as usize == i).expect("reverse edge");
                assert_eq!(bv[p], v);
                assert!(v > 0.0 && v <= 1.0);
            }
        }
    }

    #[test]
    fn ranks_are_stable_and_means_are_closed_form() {
        // Tied confidences rank by cell index; duplicated points still exclude the cell itself.
        let emb = vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 5.0, 5.0, 1.0, 1.0];
        let conf = vec![0.5, 0.5, 0.1, 0.5, 0.9];
        let g = build(&emb, 2, &conf, &ConfGraphOptions { alpha: 0.9, k: 2, block_size: Some(2) }).unwrap();
        assert_eq!(g.conf_position, vec![1, 2, 0, 3, 4]);
        assert!((g.mean_blended_distance - (0.9 + 0.1 * 4.0 / 5.0)).abs() < 1e-12);
        for i in 0..5 {
            assert!(!g.connectivities.row(i).0.contains(&(i as u32)));
        }
        compare(&g, &naive(&emb, 2, &conf, 0.9, 2));
    }

    #[test]
    fn mean_absolute_rank_distance_is_the_pair_average() {
        for n in 2..40usize {
            let mut sum = 0.0;
            for i in 0..n {
                for j in i + 1..n {
                    sum += (j - i) as f64;
                }
            }
            let explicit = sum / (n * (n - 1) / 2) as f64;
            // Annotatability's form: Σ i(n−i) / (n(n−1)/2).
            let original = (0..n).map(|i| (i * (n - i)) as f64).sum::<f64>() / (n * (n - 1) / 2) as f64;
            assert!((mean_absolute_rank_distance(n) - explicit).abs() < 1e-12, "n = {n}");
            assert!((original - explicit).abs() < 1e-12);
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let (mut emb, conf) = points(20, 3, 4);
        let o = ConfGraphOptions { k: 3, ..Default::default() };
        assert!(matches!(build(&emb[..59], 3, &conf, &o), Err(SclabelError::ShapeMismatch { .. })));
        assert!(matches!(build(&emb, 3, &conf[..19], &o), Err(SclabelError::ShapeMismatch { .. })));
        assert!(matches!(build(&emb, 0, &conf, &o), Err(SclabelError::ShapeMismatch { .. })));
        for k in [0, 20, 25] {
            assert!(matches!(build(&emb, 3, &conf, &ConfGraphOptions { k, ..o.clone() }), Err(SclabelError::InvalidOption { .. })));
        }
        for alpha in [-0.1, 1.5, f64::NAN] {
            assert!(matches!(build(&emb, 3, &conf, &ConfGraphOptions { alpha, ..o.clone() }), Err(SclabelError::InvalidOption { .. })));
        }
        assert!(build(&emb, 3, &conf, &ConfGraphOptions { block_size: Some(0), ..o.clone() }).is_err());
        let mut bad_conf = conf.clone();
        bad_conf[7] = f32::NAN;
        assert!(matches!(build(&emb, 3, &bad_conf, &o), Err(SclabelError::InvalidValues { reason: ref m, .. }) if m.contains("cell 7")));
        emb[3 * 5 + 1] = f32::INFINITY;
        assert!(matches!(build(&emb, 3, &conf, &o), Err(SclabelError::InvalidValues { reason: ref m, .. }) if m.contains("cell 5")));
        // Identical points: no distance scale.
        assert!(matches!(build(&[1.0; 10], 2, &[0.1, 0.2, 0.3, 0.4, 0.5], &ConfGraphOptions { k: 2, ..o.clone() }), Err(SclabelError::InvalidValues { .. })));
        assert!(build(&[], 2, &[], &o).is_err());
    }

    #[test]
    fn progress_covers_both_passes_and_cancels() {
        use crate::train::progress::FnObserver;
        let (emb, conf) = points(50, 3, 5);
        let o = ConfGraphOptions { k: 4, block_size: Some(16), ..Default::default() };
        let mut seen = Vec::new();
        block_on(make_conf_graph(
            &emb,
            3,
            &conf,
            &o,
            &device(),
            &mut FnObserver(|p: &Progress| {
                seen.push((p.epoch, p.step, p.cells_done));
                Ok(())
            }),
        ))
        .unwrap();
        assert_eq!(seen.len(), 8);
        assert_eq!(seen[3], (0, 4, 50));
        assert_eq!(seen[7], (1, 4, 50));
        let r = block_on(make_conf_graph(&emb, 3, &conf, &o, &device(), &mut FnObserver(|_: &Progress| Err(SclabelError::Cancelled))));
        assert!(matches!(r, Err(SclabelError::Cancelled)));
    }
}

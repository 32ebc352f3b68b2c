//! Building blocks of scNym's training step: ramps, sharpening, keep-dominant MixUp, the log1p_drop
//! augmentation, class weights, soft-label cross-entropy and gradient reversal. The random parts
//! run on the host from our seeded RNG, so the CPU, WebGPU and native backends see the same draws.
use burn::prelude::Tensor;
use burn::tensor::activation::log_softmax;
use rand::rngs::{StdRng, Xoshiro256PlusPlus};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_distr::{Beta, Distribution};

use crate::data::matrix::CsrMatrix;
use crate::data::row_blocks::RowSource;

/// scNym's `ICLWeight` ramp, indexed by epoch (from 0).
pub fn ramp(epoch: usize, ramp_epochs: usize, burn_in: usize, max_weight: f64, sigmoid: bool) -> f64 {
    if epoch < burn_in {
        return 0.0;
    }
    if epoch >= burn_in + ramp_epochs {
        return max_weight;
    }
    let e = (epoch - burn_in) as f64;
    let r = ramp_epochs as f64;
    if sigmoid {
        max_weight * (-5.0 * (e / r - 1.0).powi(2)).exp()
    } else {
        max_weight / r * e
    }
}

/// Sharpens each row of `q` (`[rows, n_classes]`) in place: q^(1/T) / Σ q^(1/T); T = 0 → one-hot.
pub fn sharpen(q: &mut [f32], n_classes: usize, t: f64) {
    for row in q.chunks_mut(n_classes) {
        if t == 0.0 {
            let arg = argmax(row);
            row.iter_mut().enumerate().for_each(|(k, v)| *v = if k == arg { 1.0 } else { 0.0 });
            continue;
        }
        // Work in logs so small T can't underflow every entry to 0.
        let inv = 1.0 / t;
        let logs: Vec<f64> = row.iter().map(|&v| (v.max(0.0) as f64).ln() * inv).collect();
        let m = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = logs.iter().map(|l| (l - m).exp()).sum();
        for (v, l) in row.iter_mut().zip(&logs) {
            *v = ((l - m).exp() / total) as f32;
        }
    }
}

pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (k, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = k;
        }
    }
    best
}

/// The given rows of `x` as the step's sparse batch: each row's columns increasing and no stored
/// zeros, the form `log1p_drop` and MixUp's row merge work on.
pub fn gather_rows(x: &dyn RowSource, rows: &[usize]) -> CsrMatrix {
    let mut out = x.take_rows(rows);
    let clean = (0..out.n_rows).all(|r| {
        let (idx, val) = out.row(r);
        idx.windows(2).all(|w| w[0] < w[1]) && val.iter().all(|&v| v != 0.0)
    });
    if !clean {
        out = out.with_sorted_rows();
        retain_nonzero(&mut out);
    }
    out
}

/// Drops stored zeros, keeping the rows' order.
fn retain_nonzero(x: &mut CsrMatrix) {
    let mut w = 0usize;
    let mut start = 0usize;
    for r in 0..x.n_rows {
        let end = x.indptr[r + 1] as usize;
        for k in start..end {
            if x.data[k] != 0.0 {
                x.indices[w] = x.indices[k];
                x.data[w] = x.data[k];
                w += 1;
            }
        }
        start = end;
        x.indptr[r + 1] = w as u64;
    }
    x.indices.truncate(w);
    x.data.truncate(w);
}

/// Keep-dominant MixUp's draws for a pool of `n` rows: a random permutation π and
/// λ'_i = max(λ_i, 1 − λ_i), λ_i ~ Beta(α, α), so that row_i ← λ'_i row_i + (1 − λ'_i) row_π(i)
/// stays dominated by its own row. `None` (and no draws) when α = 0: the pool is left unmixed.
pub struct MixPlan {
    pub perm: Vec<usize>,
    pub lambdas: Vec<f32>,
}

impl MixPlan {
    pub fn draw(n: usize, alpha: f64, rng: &mut StdRng) -> Option<Self> {
        if alpha <= 0.0 || n == 0 {
            return None;
        }
        let mut perm: Vec<usize> = (0..n).collect();
        perm.shuffle(rng);
        let beta = Beta::new(alpha, alpha).expect("alpha > 0");
        let lambdas = (0..n).map(|_| beta.sample(rng)).map(|l: f64| l.max(1.0 - l) as f32).collect();
        Some(Self { perm, lambdas })
    }
}

/// out_i = λ_i a_i + (1 − λ_i) a_π(i) for dense rows of `width`, reading from a copy so the
/// permutation sees original rows.
pub fn mix_rows(a: &mut [f32], width: usize, perm: &[usize], lambdas: &[f32]) {
    let orig = a.to_vec();
    for (i, row) in a.chunks_mut(width).enumerate() {
        let other = &orig[perm[i] * width..(perm[i] + 1) * width];
        let l = lambdas[i];
        for (v, &o) in row.iter_mut().zip(other) {
            *v = l * *v + (1.0 - l) * o;
        }
    }
}

/// scNym's `log1p_drop` on a batch of ln(CPM+1) rows (from `gather_rows`), in place: expm1, drop
/// each nonzero with probability `p`, rescale each cell to 1e6, log1p. (scNym scales survivors by
/// 1/(1−p) first; the rescale to 1e6 cancels it.) Dropped values leave the batch. fix: a cell whose
/// every nonzero was dropped keeps its original values (scNym divides by a zero library size and
/// gets NaN). The keep/drop draws are 32-bit words from a Xoshiro256++ stream seeded by one draw
/// of `rng` (`drop_draws`), and expm1/log1p run in f32 (the values are f32): StdRng's ChaCha12
/// for a float per value and f64 libm calls were 8% of a training step.
pub fn log1p_drop(x: &mut CsrMatrix, p: f64, rng: &mut StdRng) {
    let (draws, threshold) = drop_draws(x.nnz(), p, rng);
    let mut counts: Vec<(u32, f32)> = Vec::new();
    let (mut indices, mut data) = (Vec::with_capacity(x.nnz()), Vec::with_capacity(x.nnz()));
    let mut indptr = Vec::with_capacity(x.n_rows + 1);
    indptr.push(0u64);
    for r in 0..x.n_rows {
        let (idx, val) = x.row(r);
        let row_draws = &draws[x.indptr[r] as usize..x.indptr[r + 1] as usize];
        counts.clear();
        let mut total = 0f64;
        for ((&j, &v), &d) in idx.iter().zip(val).zip(row_draws) {
            if d as u64 >= threshold {
                let c = v.exp_m1();
                counts.push((j, c));
                total += c as f64;
            }
        }
        if total <= 0.0 {
            indices.extend_from_slice(idx);
            data.extend_from_slice(val);
        } else {
            let scale = (1e6 / total) as f32;
            for &(j, c) in &counts {
                indices.push(j);
                data.push((c * scale).ln_1p());
            }
        }
        indptr.push(data.len() as u64);
    }
    (x.indices, x.data, x.indptr) = (indices, data, indptr);
}

/// Class weights w_k = (1/p_k) / min_j (1/p_j) from training-split class counts (absent classes
/// get weight 0: they have no cells to weight).
pub fn class_weights(counts: &[usize]) -> Vec<f32> {
    let total: usize = counts.iter().sum();
    let inv: Vec<f64> = counts.iter().map(|&n| if n == 0 { 0.0 } else { total as f64 / n as f64 }).collect();
    let min = inv.iter().cloned().filter(|&v| v > 0.0).fold(f64::INFINITY, f64::min);
    inv.iter().map(|&v| (v / min) as f32).collect()
}

/// Per-sample soft-label cross-entropy −Σ_k y_k log softmax(z)_k, `[n]`.
pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    (log_softmax(logits, 1) * targets).sum_dim(1).squeeze_dim::<1>(1).neg()
}

/// Identity forward; multiplies the gradient by −w on the way back.
pub fn gradient_reversal(x: Tensor<2>, w: f64) -> Tensor<2> {
    let d = x.clone().detach();
    d.clone() + (x - d) * (-w)
}

/// `n` drop-or-keep draws at drop probability `p`: 32-bit words (entry dropped when word <
/// threshold, the threshold returned; cheaper than a float per entry, same distribution) from a
/// Xoshiro256++ stream seeded by one draw of `rng`, the same on every platform, wasm32 included
/// (StdRng's ChaCha12 for every word was 7% of a training step).
fn drop_draws(n: usize, p: f64, rng: &mut StdRng) -> (Vec<u32>, u64) {
    let mut draws = vec![0u32; n];
    Xoshiro256PlusPlus::seed_from_u64(rng.random::<u64>()).fill(&mut draws[..]);
    (draws, (p * (u32::MAX as f64 + 1.0)) as u64)
}

/// Dropout mask `[rows, width]` with survivors scaled by 1/(1−p), drawn on the host.
pub fn dropout_mask(rows: usize, width: usize, p: f64, rng: &mut StdRng) -> Vec<f32> {
    let keep = (1.0 / (1.0 - p)) as f32;
    let (draws, threshold) = drop_draws(rows * width, p, rng);
    if threshold > u32::MAX as u64 {
        return vec![0.0; rows * width];
    }
    // A plain select over two slices: LLVM vectorises it (an in-place collect from the draws did
    // not, and a branch on random draws mispredicts half the time).
    let t = threshold as u32;
    let mut mask = vec![0f32; rows * width];
    for (m, &d) in mask.iter_mut().zip(&draws) {
        *m = if d >= t { keep } else { 0.0 };
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn ramps_match_scnym_values() {
        // unsup: linear, R = 100, B = 0, M = 1 → e/100
        assert_eq!(ramp(0, 100, 0, 1.0, false), 0.0);
        assert!((ramp(37, 100, 0, 1.0, false) - 0.37).abs() < 1e-12);
        assert_eq!(ramp(100, 100, 0, 1.0, false), 1.0);
        // burn-in
        assert_eq!(ramp(4, 10, 5, 1.0, false), 0.0);
        assert!((ramp(7, 10, 5, 1.0, false) - 0.2).abs() < 1e-12);
        // DAN: sigmoid, R = 20, M = 0.1: w(0) = 0.1·e^-5 ≈ 6.74e-4, w(10) = 0.1·e^-1.25 ≈ 0.0287
        assert!((ramp(0, 20, 0, 0.1, true) - 0.1 * (-5f64).exp()).abs() < 1e-12);
        assert!((ramp(10, 20, 0, 0.1, true) - 0.028650479686019).abs() < 1e-12);
        assert_eq!(ramp(20, 20, 0, 0.1, true), 0.1);
    }

    #[test]
    fn sharpening_by_hand() {
        let mut q = vec![0.6, 0.3, 0.1, 0.5, 0.5, 0.0];
        sharpen(&mut q, 3, 0.5);
        // squares 0.36, 0.09, 0.01 over 0.46
        for (a, b) in q[..3].iter().zip([0.36 / 0.46, 0.09 / 0.46, 0.01 / 0.46]) {
            assert!((a - b).abs() < 1e-6, "{q:?}");
        }
        assert_eq!(&q[3..], &[0.5, 0.5, 0.0]);
        let mut q = vec![0.2, 0.7, 0.1];
        sharpen(&mut q, 3, 0.0);
        assert_eq!(q, vec![0.0, 1.0, 0.0]);
        let mut q = vec![0.2, 0.7, 0.1];
        sharpen(&mut q, 3, 1.0);
        for (a, b) in q.iter().zip([0.2, 0.7, 0.1]) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    fn dense(x: &CsrMatrix) -> Vec<f32> {
        let mut out = Vec::new();
        x.densify_rows_into(&(0..x.n_rows).collect::<Vec<_>>(), &mut out);
        out
    }

    #[test]
    fn keep_dominant_mixup_by_hand() {
        // two rows swapped by the permutation, λ = 0.8 / 0.3 → λ' = 0.8 / 0.7
        let mut y = vec![1.0, 0.0, 0.0, 1.0];
        mix_rows(&mut y, 2, &[1, 0], &[0.8, 0.7]);
        for (a, b) in y.iter().zip([0.8, 0.2, 0.3, 0.7]) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
        // random draws: a permutation, and every row stays dominated by its original (λ' ≥ 0.5)
        let mut rng = StdRng::seed_from_u64(1);
        let n = 50;
        let plan = MixPlan::draw(n, 0.3, &mut rng).unwrap();
        let mut seen = plan.perm.clone();
        seen.sort();
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
        assert!(plan.lambdas.iter().all(|&l| (0.5..=1.0).contains(&l)));
        assert!(plan.lambdas.iter().any(|&l| l < 0.99), "Beta(0.3, 0.3) mixes some rows");
        let mut y: Vec<f32> = (0..n).flat_map(|i| (0..n).map(move |j| if i == j { 1.0 } else { 0.0 })).collect();
        mix_rows(&mut y, n, &plan.perm, &plan.lambdas);
        for i in 0..n {
            assert!(y[i * n + i] >= 0.5, "row {i} lost dominance");
            let s: f32 = y[i * n..(i + 1) * n].iter().sum();
            assert!((s - 1.0).abs() < 1e-5);
        }
        assert!(MixPlan::draw(1, 0.0, &mut rng).is_none());
    }

    #[test]
    fn gather_rows_sorts_columns_and_drops_stored_zeros() {
        let x = CsrMatrix::new(2, 4, vec![0, 3, 5], vec![3, 0, 1, 2, 1], vec![1.0, 2.0, 0.0, 3.0, 4.0]).unwrap();
        let b = gather_rows(&x, &[1, 0, 1]);
        assert_eq!(b.indptr, vec![0, 2, 4, 6]);
        assert_eq!(b.indices, vec![1, 2, 0, 3, 1, 2]);
        assert_eq!(b.data, vec![4.0, 3.0, 2.0, 1.0, 4.0, 3.0]);
    }

    #[test]
    fn log1p_drop_keeps_cpm_scale_and_zeros() {
        let mut rng = StdRng::seed_from_u64(3);
        let g = 200;
        let orig: Vec<f32> = (0..2 * g).map(|i| if i % 3 == 0 { 0.0 } else { ((i % 17) as f32 * 500.0).ln_1p() }).collect();
        let mut x = gather_rows(&CsrMatrix::from_dense(2, g, &orig).unwrap(), &[0, 1]);
        log1p_drop(&mut x, 0.1, &mut rng);
        assert!(x.data.iter().all(|&v| v != 0.0), "dropped values leave the batch");
        let x = dense(&x);
        for (row, orow) in x.chunks(g).zip(orig.chunks(g)) {
            let total: f64 = row.iter().map(|&v| (v as f64).exp_m1()).sum();
            assert!((total - 1e6).abs() < 1.0, "{total}");
            assert!(row.iter().zip(orow).all(|(&a, &b)| b != 0.0 || a == 0.0));
            let dropped = row.iter().zip(orow).filter(|(&a, &b)| b != 0.0 && a == 0.0).count();
            assert!(dropped > 0 && dropped < g / 3);
        }
        // a cell that loses everything keeps its values instead of becoming NaN
        let mut one = CsrMatrix::from_dense(1, 2, &[1.0f32, 0.0]).unwrap();
        log1p_drop(&mut one, 0.999_999, &mut rng);
        assert_eq!(dense(&one), vec![1.0, 0.0]);
    }

    #[test]
    fn class_weights_by_hand() {
        // proportions 0.5, 0.25, 0.25 → 1/p = 2, 4, 4 → / 2
        assert_eq!(class_weights(&[50, 25, 25]), vec![1.0, 2.0, 2.0]);
        assert_eq!(class_weights(&[10, 0, 40]), vec![4.0, 0.0, 1.0]);
    }

    #[test]
    fn dropout_mask_rate_and_scale() {
        let mut rng = StdRng::seed_from_u64(0);
        let m = dropout_mask(100, 100, 0.5, &mut rng);
        let zeros = m.iter().filter(|&&v| v == 0.0).count();
        assert!((4500..5500).contains(&zeros), "{zeros}");
        assert!(m.iter().all(|&v| v == 0.0 || v == 2.0));
        // the words are a Xoshiro256++ stream seeded by one u64 of the caller's RNG, which moves
        // on by exactly that draw
        let mut a = StdRng::seed_from_u64(5);
        let mut b = StdRng::seed_from_u64(5);
        let m = dropout_mask(7, 31, 0.3, &mut a);
        let mut words = vec![0u32; 7 * 31];
        Xoshiro256PlusPlus::seed_from_u64(b.random::<u64>()).fill(&mut words[..]);
        let threshold = (0.3 * (u32::MAX as f64 + 1.0)) as u64;
        let want: Vec<f32> = words.iter().map(|&w| if (w as u64) < threshold { 0.0 } else { (1.0 / 0.7f64) as f32 }).collect();
        assert_eq!(m, want);
        assert_eq!(a.random::<u64>(), b.random::<u64>());
    }

    #[test]
    fn gradient_reversal_sign_and_scale() {
        use burn::prelude::TensorData;
        let device = crate::backend::cpu(crate::backend::BackendRequest::Cpu, "test").unwrap().device.autodiff();
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]), &device).require_grad();
        let y = gradient_reversal(x.clone(), 0.25);
        let fwd: Vec<f32> = y.clone().inner().into_data().try_into_vec_as::<f32>().unwrap();
        assert_eq!(fwd, vec![1.0, 2.0, 3.0, 4.0]);
        let loss = (y * Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0, 0.5, 3.0], [2, 2]), &device)).sum();
        let grads = loss.backward();
        let g: Vec<f32> = x.grad(&grads).unwrap().into_data().try_into_vec_as::<f32>().unwrap();
        assert_eq!(g, vec![-0.25, 0.5, -0.125, -0.75]);
    }
}

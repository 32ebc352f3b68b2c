//! Building blocks of scNym's training step: ramps, sharpening, keep-dominant MixUp, the log1p_drop
//! augmentation, class weights, soft-label cross-entropy and gradient reversal. The random parts
//! run on the host from our seeded RNG, so the CPU, WebGPU and native backends see the same draws.
use burn::prelude::Tensor;
use burn::tensor::activation::log_softmax;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::RngExt;
use rand_distr::{Beta, Distribution};

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

/// Keep-dominant MixUp over a pool of rows, in place: for a random permutation π and
/// λ'_i = max(λ_i, 1 − λ_i), λ_i ~ Beta(α, α), row_i ← λ'_i row_i + (1 − λ'_i) row_π(i), for the
/// inputs `x` (`[n, g]`) and targets `y` (`[n, c]`) alike. α = 0 leaves the pool unchanged.
pub fn mixup_keep_dominant(x: &mut [f32], g: usize, y: &mut [f32], c: usize, alpha: f64, rng: &mut StdRng) {
    let n = y.len() / c;
    if alpha <= 0.0 || n == 0 {
        return;
    }
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(rng);
    let beta = Beta::new(alpha, alpha).expect("alpha > 0");
    let lambdas: Vec<f32> = (0..n).map(|_| beta.sample(rng)).map(|l: f64| l.max(1.0 - l) as f32).collect();
    mix_rows(x, g, &perm, &lambdas);
    mix_rows(y, c, &perm, &lambdas);
}

/// out_i = λ_i a_i + (1 − λ_i) a_π(i), reading from a copy so the permutation sees original rows.
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

/// scNym's `log1p_drop` on dense ln(CPM+1) rows (`[rows, g]`), in place: expm1, drop each nonzero
/// with probability `p` (survivors ×1/(1−p)), rescale each cell to 1e6, log1p. Zeros stay zero, so
/// only nonzeros draw random numbers. fix: a cell whose every nonzero was dropped keeps its
/// original values (scNym divides by a zero library size and gets NaN).
pub fn log1p_drop(x: &mut [f32], g: usize, p: f64, rng: &mut StdRng) {
    let keep_scale = 1.0 / (1.0 - p);
    let mut counts = vec![0f64; g];
    for row in x.chunks_mut(g) {
        let mut total = 0f64;
        for (c, &v) in counts.iter_mut().zip(row.iter()) {
            *c = 0.0;
            if v != 0.0 {
                if rng.random::<f64>() >= p {
                    *c = (v as f64).exp_m1() * keep_scale;
                    total += *c;
                }
            }
        }
        if total <= 0.0 {
            continue;
        }
        let scale = 1e6 / total;
        for (v, &c) in row.iter_mut().zip(&counts) {
            // zeros (most of the row) stay zero: ln(1 + 0) = 0
            *v = if c == 0.0 { 0.0 } else { (c * scale).ln_1p() as f32 };
        }
    }
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

/// Dropout mask `[rows, width]` with survivors scaled by 1/(1−p), drawn on the host.
pub fn dropout_mask(rows: usize, width: usize, p: f64, rng: &mut StdRng) -> Vec<f32> {
    let keep = (1.0 / (1.0 - p)) as f32;
    // Compare 32-bit draws with a threshold: cheaper than a float per entry, same distribution.
    let threshold = (p * (u32::MAX as f64 + 1.0)) as u64;
    (0..rows * width).map(|_| if (rng.random::<u32>() as u64) < threshold { 0.0 } else { keep }).collect()
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

    #[test]
    fn keep_dominant_mixup_by_hand() {
        // two rows swapped by the permutation, λ = 0.8 / 0.3 → λ' = 0.8 / 0.7
        let mut x = vec![1.0, 0.0, 0.0, 1.0];
        mix_rows(&mut x, 2, &[1, 0], &[0.8, 0.7]);
        for (a, b) in x.iter().zip([0.8, 0.2, 0.3, 0.7]) {
            assert!((a - b).abs() < 1e-6, "{x:?}");
        }
        // random draws: every row stays dominated by its original (λ' ≥ 0.5)
        let mut rng = StdRng::seed_from_u64(1);
        let n = 50;
        let mut x: Vec<f32> = (0..n).flat_map(|i| (0..n).map(move |j| if i == j { 1.0 } else { 0.0 })).collect();
        let mut y = x.clone();
        mixup_keep_dominant(&mut x, n, &mut y, n, 0.3, &mut rng);
        for i in 0..n {
            assert!(x[i * n + i] >= 0.5, "row {i} lost dominance");
            let s: f32 = y[i * n..(i + 1) * n].iter().sum();
            assert!((s - 1.0).abs() < 1e-5);
        }
        assert_eq!(x, y);
        let mut z = vec![1.0, 2.0];
        let mut t = vec![1.0];
        mixup_keep_dominant(&mut z, 2, &mut t, 1, 0.0, &mut rng);
        assert_eq!(z, vec![1.0, 2.0]);
    }

    #[test]
    fn log1p_drop_keeps_cpm_scale_and_zeros() {
        let mut rng = StdRng::seed_from_u64(3);
        let g = 200;
        let mut x: Vec<f32> = (0..2 * g).map(|i| if i % 3 == 0 { 0.0 } else { ((i % 17) as f32 * 500.0).ln_1p() }).collect();
        let orig = x.clone();
        log1p_drop(&mut x, g, 0.1, &mut rng);
        for (row, orow) in x.chunks(g).zip(orig.chunks(g)) {
            let total: f64 = row.iter().map(|&v| (v as f64).exp_m1()).sum();
            assert!((total - 1e6).abs() < 1.0, "{total}");
            assert!(row.iter().zip(orow).all(|(&a, &b)| b != 0.0 || a == 0.0));
            let dropped = row.iter().zip(orow).filter(|(&a, &b)| b != 0.0 && a == 0.0).count();
            assert!(dropped > 0 && dropped < g / 3);
        }
        // a cell that loses everything keeps its values instead of becoming NaN
        let mut one = vec![1.0f32, 0.0];
        log1p_drop(&mut one, 2, 0.999_999, &mut rng);
        assert_eq!(one, vec![1.0, 0.0]);
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
    }
}

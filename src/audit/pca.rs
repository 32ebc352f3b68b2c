//! PCA of a CSR matrix (cells × genes), for data sets that come without `X_pca`.
//!
//! Randomised SVD (Halko, Martinsson & Tropp 2011, Alg. 4.4 with QR re-orthonormalisation after
//! every product) of the *implicitly centred* matrix C = X − 1μᵀ: every product with C is a sparse
//! product plus a rank-1 correction, so the matrix is never densified. The work is a handful of
//! sparse × thin-dense products and factorisations of thin or l×l matrices (l = components +
//! oversampling), so it runs on the host in f64; no device and no linear-algebra crate is needed
//! (Householder QR and one-sided Jacobi SVD are hand-written below, which keeps the wasm build
//! free of extra dependencies).
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::data::matrix::CsrMatrix;
use crate::error::{Result, SclabelError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PcaOptions {
    /// Number of principal components (scanpy's `n_comps`, default 50).
    pub n_components: usize,
    /// Extra random directions beyond `n_components` (Halko's p): they absorb the error of the
    /// random range, so the kept components come out accurate.
    pub oversampling: usize,
    /// Power iterations (one product with C and one with Cᵀ each): they sharpen the decay of the
    /// spectrum, which scRNA-seq data (slow decay) needs for accurate components.
    pub power_iterations: usize,
    pub seed: u64,
}

impl Default for PcaOptions {
    fn default() -> Self {
        Self { n_components: 50, oversampling: 10, power_iterations: 4, seed: 0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pca {
    pub n_cells: usize,
    pub n_genes: usize,
    pub n_components: usize,
    /// Row-major [n_cells × n_components]: U·S of the centred data (scanpy's `X_pca`).
    pub scores: Vec<f32>,
    /// Row-major [n_components × n_genes]: the loadings (scanpy's `varm["PCs"]` transposed). Each
    /// component's largest-|loading| gene has a positive loading, so results are deterministic.
    pub components: Vec<f32>,
    /// Variance of each score column (ddof = 1), like scanpy's `uns["pca"]["variance"]`.
    pub explained_variance: Vec<f64>,
    /// `explained_variance` over the total variance of the data (sum of per-gene variances).
    pub explained_variance_ratio: Vec<f64>,
    /// Per-gene mean that was subtracted.
    pub mean: Vec<f32>,
}

/// PCA of `x` (cells × genes) by randomised SVD of the centred matrix.
pub fn pca(x: &CsrMatrix, options: &PcaOptions) -> Result<Pca> {
    validate(x)?;
    let (n, g) = (x.n_rows, x.n_cols);
    let k = options.n_components;
    if k == 0 || k > n.min(g) {
        return Err(SclabelError::InvalidOption {
            option: "n_components".into(),
            reason: format!("must be between 1 and min(n_cells, n_genes) = {} (got {k})", n.min(g)),
        });
    }
    let l = (k + options.oversampling).min(n.min(g));

    // Column means and total variance (two-pass over the stored values, so no cancellation).
    let mut mean = vec![0.0f64; g];
    let mut stored = vec![0usize; g];
    for (&j, &v) in x.indices.iter().zip(&x.data) {
        mean[j as usize] += v as f64;
        stored[j as usize] += 1;
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut ss = vec![0.0f64; g];
    for (&j, &v) in x.indices.iter().zip(&x.data) {
        let d = v as f64 - mean[j as usize];
        ss[j as usize] += d * d;
    }
    let ddof = (n.max(2) - 1) as f64;
    let total_var: f64 = (0..g).map(|j| ss[j] + (n - stored[j].min(n)) as f64 * mean[j] * mean[j]).sum::<f64>() / ddof;

    // Range finder with power iterations; each product is followed by a QR.
    let mut rng = StdRng::seed_from_u64(options.seed);
    let omega: Vec<f64> = (0..g * l).map(|_| StandardNormal.sample(&mut rng)).collect();
    let mut q = mul_c(x, &mean, &omega, l);
    orthonormalize(&mut q, n, l);
    for _ in 0..options.power_iterations {
        let mut z = mul_ct(x, &mean, &q, l);
        orthonormalize(&mut z, g, l);
        q = mul_c(x, &mean, &z, l);
        orthonormalize(&mut q, n, l);
    }
    // Bᵀ = Cᵀ Q (genes × l); its SVD gives the right singular vectors of C directly.
    let bt = mul_ct(x, &mean, &q, l);
    let svd = jacobi_svd_columns(&bt, g, l);

    // Keep the k largest; flip signs so each component's largest-|loading| gene is positive.
    let mut order: Vec<usize> = (0..l).collect();
    order.sort_by(|&a, &b| svd.sigma[b].total_cmp(&svd.sigma[a]).then(a.cmp(&b)));
    order.truncate(k);
    let mut components = vec![0.0f32; k * g];
    let mut scores = vec![0.0f32; n * k];
    let mut explained_variance = Vec::with_capacity(k);
    // Coefficients of each score column in the basis Q: J[:, c] · σ_c (with the sign flip).
    let mut coef = vec![0.0f64; l * k];
    for (c, &src) in order.iter().enumerate() {
        let v = &svd.v[src * g..(src + 1) * g];
        let big = v.iter().enumerate().fold((0usize, 0.0f64), |best, (i, &x)| if x.abs() > best.1 { (i, x.abs()) } else { best }).0;
        let sign = if v.get(big).copied().unwrap_or(0.0) < 0.0 { -1.0 } else { 1.0 };
        for (dst, &x) in components[c * g..(c + 1) * g].iter_mut().zip(v) {
            *dst = (sign * x) as f32;
        }
        let s = svd.sigma[src];
        for r in 0..l {
            coef[r * k + c] = sign * svd.j[r * l + src] * s;
        }
        explained_variance.push(s * s / ddof);
    }
    for i in 0..n {
        let qi = &q[i * l..(i + 1) * l];
        let out = &mut scores[i * k..(i + 1) * k];
        for (r, &qv) in qi.iter().enumerate() {
            let cr = &coef[r * k..(r + 1) * k];
            for (o, &cv) in out.iter_mut().zip(cr) {
                *o += (qv * cv) as f32;
            }
        }
    }
    let explained_variance_ratio = explained_variance.iter().map(|&v| if total_var > 0.0 { v / total_var } else { 0.0 }).collect();
    Ok(Pca {
        n_cells: n,
        n_genes: g,
        n_components: k,
        scores,
        components,
        explained_variance,
        explained_variance_ratio,
        mean: mean.iter().map(|&m| m as f32).collect(),
    })
}

/// Checks the CSR invariants (the fields are public, so a matrix may not have come through
/// `CsrMatrix::new`) and that every value is finite, so the products below can index freely.
fn validate(x: &CsrMatrix) -> Result<()> {
    if x.indptr.len() != x.n_rows + 1 || x.indices.len() != x.data.len() {
        return Err(SclabelError::shape(format!(
            "CSR with {} rows has {} indptr entries, {} indices and {} values",
            x.n_rows,
            x.indptr.len(),
            x.indices.len(),
            x.data.len()
        )));
    }
    if x.indptr[0] != 0 || x.indptr[x.n_rows] as usize != x.data.len() || x.indptr.windows(2).any(|w| w[1] < w[0]) {
        return Err(SclabelError::shape("CSR indptr must rise from 0 to the number of stored values"));
    }
    if let Some(&c) = x.indices.iter().find(|&&c| c as usize >= x.n_cols) {
        return Err(SclabelError::shape(format!("CSR column index {c} out of range for {} genes", x.n_cols)));
    }
    if let Some(pos) = x.data.iter().position(|v| !v.is_finite()) {
        let cell = x.indptr.partition_point(|&p| p as usize <= pos).saturating_sub(1);
        return Err(SclabelError::values(format!("PCA needs finite values, but cell {cell} has {} (gene column {})", x.data[pos], x.indices[pos])));
    }
    Ok(())
}

/// C·B for B row-major [genes × l]: sparse product, then subtract 1·(μᵀB). Row-major [cells × l].
fn mul_c(x: &CsrMatrix, mean: &[f64], b: &[f64], l: usize) -> Vec<f64> {
    let mut mu_b = vec![0.0f64; l];
    for (j, &m) in mean.iter().enumerate() {
        if m != 0.0 {
            for (acc, &bv) in mu_b.iter_mut().zip(&b[j * l..(j + 1) * l]) {
                *acc += m * bv;
            }
        }
    }
    let mut out = vec![0.0f64; x.n_rows * l];
    for (i, row) in out.chunks_exact_mut(l).enumerate() {
        let (idx, val) = x.row(i);
        for (&j, &v) in idx.iter().zip(val) {
            let (v, bj) = (v as f64, &b[j as usize * l..(j as usize + 1) * l]);
            for (o, &bv) in row.iter_mut().zip(bj) {
                *o += v * bv;
            }
        }
        for (o, &m) in row.iter_mut().zip(&mu_b) {
            *o -= m;
        }
    }
    out
}

/// Cᵀ·Q for Q row-major [cells × l]: sparse transposed product, then subtract μ·(1ᵀQ).
/// Row-major [genes × l].
fn mul_ct(x: &CsrMatrix, mean: &[f64], q: &[f64], l: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; x.n_cols * l];
    let mut col_sums = vec![0.0f64; l];
    for (i, qi) in q.chunks_exact(l).enumerate() {
        for (s, &v) in col_sums.iter_mut().zip(qi) {
            *s += v;
        }
        let (idx, val) = x.row(i);
        for (&j, &v) in idx.iter().zip(val) {
            let (v, oj) = (v as f64, &mut out[j as usize * l..(j as usize + 1) * l]);
            for (o, &qv) in oj.iter_mut().zip(qi) {
                *o += v * qv;
            }
        }
    }
    for (oj, &m) in out.chunks_exact_mut(l).zip(mean) {
        for (o, &s) in oj.iter_mut().zip(&col_sums) {
            *o -= m * s;
        }
    }
    out
}

/// Replaces the row-major [m × l] matrix `a` (m ≥ l) by the Q of its thin QR (Householder, which
/// stays orthonormal even when power iterations make `a` badly conditioned). Zero columns give
/// an identity reflector, so Q is orthonormal for rank-deficient input too.
fn orthonormalize(a: &mut Vec<f64>, m: usize, l: usize) {
    let mut tau = vec![0.0f64; l];
    let mut w = vec![0.0f64; l];
    for j in 0..l {
        let norm = (j..m).map(|i| a[i * l + j] * a[i * l + j]).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        let alpha = a[j * l + j];
        let beta = if alpha > 0.0 { -norm } else { norm };
        let v0 = alpha - beta;
        tau[j] = (beta - alpha) / beta;
        a[j * l + j] = beta;
        for i in j + 1..m {
            a[i * l + j] /= v0;
        }
        // Apply H_j = I − τ v vᵀ to the remaining columns (row passes keep memory access linear).
        let w = &mut w[..l - j - 1];
        w.fill(0.0);
        for i in j..m {
            let vi = if i == j { 1.0 } else { a[i * l + j] };
            for (acc, &x) in w.iter_mut().zip(&a[i * l + j + 1..(i + 1) * l]) {
                *acc += vi * x;
            }
        }
        for i in j..m {
            let vi = tau[j] * if i == j { 1.0 } else { a[i * l + j] };
            for (x, &acc) in a[i * l + j + 1..(i + 1) * l].iter_mut().zip(w.iter()) {
                *x -= vi * acc;
            }
        }
    }
    // Q = H_0 ⋯ H_{l−1} [I; 0], applied right to left (H_j only touches columns ≥ j).
    let mut q = vec![0.0f64; m * l];
    for j in 0..l {
        q[j * l + j] = 1.0;
    }
    for j in (0..l).rev() {
        if tau[j] == 0.0 {
            continue;
        }
        let w = &mut w[..l - j];
        w.fill(0.0);
        for i in j..m {
            let vi = if i == j { 1.0 } else { a[i * l + j] };
            for (acc, &x) in w.iter_mut().zip(&q[i * l + j..(i + 1) * l]) {
                *acc += vi * x;
            }
        }
        for i in j..m {
            let vi = tau[j] * if i == j { 1.0 } else { a[i * l + j] };
            for (x, &acc) in q[i * l + j..(i + 1) * l].iter_mut().zip(w.iter()) {
                *x -= vi * acc;
            }
        }
    }
    *a = q;
}

struct ColumnSvd {
    /// Singular values (unsorted), length l.
    sigma: Vec<f64>,
    /// Left singular vectors of the input's columns, i.e. unit columns of M·J: l vectors of
    /// length m, stored one after another.
    v: Vec<f64>,
    /// The accumulated rotation, row-major [l × l]: M·J has orthogonal columns.
    j: Vec<f64>,
}

/// One-sided Jacobi (Hestenes) SVD of the row-major [m × l] matrix M: rotates column pairs until
/// all columns are orthogonal. Accurate for small singular values (no MᵀM is formed), and l is
/// small (≤ a few hundred), so its O(m·l²) sweeps are cheap.
fn jacobi_svd_columns(mat: &[f64], m: usize, l: usize) -> ColumnSvd {
    // Column-major copy so each rotation works on contiguous columns.
    let mut cols = vec![0.0f64; m * l];
    for i in 0..m {
        for c in 0..l {
            cols[c * m + i] = mat[i * l + c];
        }
    }
    let mut j = vec![0.0f64; l * l];
    for c in 0..l {
        j[c * l + c] = 1.0;
    }
    const TOL: f64 = 1e-14;
    for _sweep in 0..60 {
        let mut rotated = false;
        for p in 0..l {
            for r in p + 1..l {
                let (head, tail) = cols.split_at_mut(r * m);
                let (cp, cr) = (&mut head[p * m..(p + 1) * m], &mut tail[..m]);
                let (mut a, mut b, mut g) = (0.0f64, 0.0f64, 0.0f64);
                for (&x, &y) in cp.iter().zip(cr.iter()) {
                    a += x * x;
                    b += y * y;
                    g += x * y;
                }
                if g == 0.0 || g.abs() <= TOL * (a * b).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (b - a) / (2.0 * g);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for (x, y) in cp.iter_mut().zip(cr.iter_mut()) {
                    let (xv, yv) = (*x, *y);
                    *x = c * xv - s * yv;
                    *y = s * xv + c * yv;
                }
                for row in j.chunks_exact_mut(l) {
                    let (xv, yv) = (row[p], row[r]);
                    row[p] = c * xv - s * yv;
                    row[r] = s * xv + c * yv;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let mut sigma = Vec::with_capacity(l);
    for col in cols.chunks_exact_mut(m) {
        let s = col.iter().map(|x| x * x).sum::<f64>().sqrt();
        if s > 0.0 {
            col.iter_mut().for_each(|x| *x /= s);
        }
        sigma.push(s);
    }
    ColumnSvd { sigma, v: cols, j }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    /// Low-rank signal plus noise, non-negative and about half sparse (like log-expression).
    fn low_rank_matrix(n: usize, g: usize, rank: usize, seed: u64) -> (CsrMatrix, Vec<f64>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut normal = || -> f64 { StandardNormal.sample(&mut rng) };
        let u: Vec<f64> = (0..n * rank).map(|_| normal()).collect();
        let v: Vec<f64> = (0..rank * g).map(|_| normal()).collect();
        let scale: Vec<f64> = (0..rank).map(|r| 4.0 / (1.0 + r as f64)).collect();
        let mut dense = vec![0.0f64; n * g];
        for i in 0..n {
            for j in 0..g {
                let s: f64 = (0..rank).map(|r| u[i * rank + r] * scale[r] * v[r * g + j]).sum();
                dense[i * g + j] = (s + 0.3 * normal()).max(0.0);
            }
        }
        let f: Vec<f32> = dense.iter().map(|&x| x as f32).collect();
        let x = CsrMatrix::from_dense(n, g, &f).unwrap();
        (x, f.iter().map(|&x| x as f64).collect())
    }

    /// Exact PCA: eigen-decomposition of the dense covariance matrix by cyclic Jacobi rotations.
    /// Returns (eigenvalues descending, eigenvectors as rows [g × g]).
    fn exact_pca(dense: &[f64], n: usize, g: usize) -> (Vec<f64>, Vec<f64>) {
        let mean: Vec<f64> = (0..g).map(|j| (0..n).map(|i| dense[i * g + j]).sum::<f64>() / n as f64).collect();
        let mut a = vec![0.0f64; g * g];
        for i in 0..n {
            for p in 0..g {
                let xp = dense[i * g + p] - mean[p];
                for q in 0..g {
                    a[p * g + q] += xp * (dense[i * g + q] - mean[q]) / (n - 1) as f64;
                }
            }
        }
        let mut vecs = vec![0.0f64; g * g];
        for p in 0..g {
            vecs[p * g + p] = 1.0;
        }
        for _ in 0..100 {
            let off: f64 = (0..g).flat_map(|p| (0..g).filter(move |&q| q != p).map(move |q| (p, q))).map(|(p, q)| a[p * g + q].powi(2)).sum();
            if off < 1e-22 {
                break;
            }
            for p in 0..g {
                for q in p + 1..g {
                    let apq = a[p * g + q];
                    if apq.abs() < 1e-300 {
                        continue;
                    }
                    let theta = (a[q * g + q] - a[p * g + p]) / (2.0 * apq);
                    let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                    let t = if theta == 0.0 { 1.0 } else { t };
                    let c = 1.0 / (t * t + 1.0).sqrt();
                    let s = t * c;
                    for k in 0..g {
                        let (akp, akq) = (a[k * g + p], a[k * g + q]);
                        a[k * g + p] = c * akp - s * akq;
                        a[k * g + q] = s * akp + c * akq;
                    }
                    for k in 0..g {
                        let (apk, aqk) = (a[p * g + k], a[q * g + k]);
                        a[p * g + k] = c * apk - s * aqk;
                        a[q * g + k] = s * apk + c * aqk;
                    }
                    for k in 0..g {
                        let (vkp, vkq) = (vecs[k * g + p], vecs[k * g + q]);
                        vecs[k * g + p] = c * vkp - s * vkq;
                        vecs[k * g + q] = s * vkp + c * vkq;
                    }
                }
            }
        }
        let mut order: Vec<usize> = (0..g).collect();
        order.sort_by(|&x, &y| a[y * g + y].total_cmp(&a[x * g + x]));
        let vals = order.iter().map(|&c| a[c * g + c]).collect();
        let rows = order.iter().flat_map(|&c| (0..g).map(move |k| (k, c))).map(|(k, c)| vecs[k * g + c]).collect();
        (vals, rows)
    }

    #[test]
    fn matches_exact_pca_on_low_rank_data() {
        let (n, g, rank, k) = (300, 60, 6, 10);
        let (x, dense) = low_rank_matrix(n, g, rank, 7);
        let p = pca(&x, &PcaOptions { n_components: k, ..Default::default() }).unwrap();
        assert_eq!((p.scores.len(), p.components.len(), p.explained_variance.len()), (n * k, k * g, k));
        let (vals, vecs) = exact_pca(&dense, n, g);
        let mean: Vec<f64> = (0..g).map(|j| (0..n).map(|i| dense[i * g + j]).sum::<f64>() / n as f64).collect();
        let total: f64 = vals.iter().sum();
        for c in 0..k {
            let rel = (p.explained_variance[c] - vals[c]).abs() / vals[c];
            assert!(rel < 1e-3, "component {c}: variance {} vs exact {} (rel {rel})", p.explained_variance[c], vals[c]);
            assert!((p.explained_variance_ratio[c] - vals[c] / total).abs() < 1e-3 * vals[c] / total);
            // Exact scores: centred data projected on the exact eigenvector.
            let exact: Vec<f64> = (0..n).map(|i| (0..g).map(|j| (dense[i * g + j] - mean[j]) * vecs[c * g + j]).sum()).collect();
            let ours: Vec<f64> = (0..n).map(|i| p.scores[i * k + c] as f64).collect();
            let dot: f64 = exact.iter().zip(&ours).map(|(a, b)| a * b).sum();
            let na = exact.iter().map(|a| a * a).sum::<f64>().sqrt();
            let nb = ours.iter().map(|b| b * b).sum::<f64>().sqrt();
            let cos = dot / (na * nb);
            assert!(cos.abs() > 0.999, "component {c}: |cos| = {}", cos.abs());
            // Scores have the variance they claim (U·S, not U).
            let var = ours.iter().map(|s| s * s).sum::<f64>() / (n - 1) as f64;
            assert!((var - p.explained_variance[c]).abs() < 1e-4 * var);
        }
    }

    #[test]
    fn components_are_orthonormal_and_sign_fixed() {
        let (x, _) = low_rank_matrix(120, 40, 4, 3);
        let p = pca(&x, &PcaOptions { n_components: 5, seed: 11, ..Default::default() }).unwrap();
        let g = p.n_genes;
        for a in 0..5 {
            let va = &p.components[a * g..(a + 1) * g];
            let big = va.iter().copied().fold(0.0f32, |m, x| if x.abs() > m.abs() { x } else { m });
            assert!(big > 0.0);
            for b in 0..5 {
                let dot: f32 = va.iter().zip(&p.components[b * g..(b + 1) * g]).map(|(x, y)| x * y).sum();
                assert!((dot - if a == b { 1.0 } else { 0.0 }).abs() < 1e-5, "{a},{b}: {dot}");
            }
        }
        // Same seed, same result; another seed gives the same leading components.
        let again = pca(&x, &PcaOptions { n_components: 5, seed: 11, ..Default::default() }).unwrap();
        assert_eq!(p, again);
        let other = pca(&x, &PcaOptions { n_components: 5, seed: 12, ..Default::default() }).unwrap();
        for (a, b) in p.components[..2 * g].iter().zip(&other.components[..2 * g]) {
            assert!((a - b).abs() < 1e-4);
        }
    }

    #[test]
    fn full_rank_request_and_tiny_matrices() {
        let mut rng = StdRng::seed_from_u64(5);
        let vals: Vec<f32> = (0..8 * 5).map(|_| if rng.random::<f64>() < 0.5 { 0.0 } else { rng.random::<f32>() }).collect();
        let x = CsrMatrix::from_dense(8, 5, &vals).unwrap();
        let p = pca(&x, &PcaOptions { n_components: 5, ..Default::default() }).unwrap();
        // All variance is explained when every component is kept.
        let sum: f64 = p.explained_variance_ratio.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6, "{sum}");
        // A constant matrix has no variance: zeros, not NaN.
        let c = CsrMatrix::from_dense(4, 3, &[1.0; 12]).unwrap();
        let p = pca(&c, &PcaOptions { n_components: 2, ..Default::default() }).unwrap();
        assert!(p.scores.iter().all(|s| *s == 0.0) && p.explained_variance_ratio.iter().all(|r| *r == 0.0));
    }

    #[test]
    fn bad_input_is_an_error() {
        let x = CsrMatrix::from_dense(3, 3, &[1.0, 0.0, 2.0, 0.0, f32::NAN, 1.0, 3.0, 0.0, 0.0]).unwrap();
        let err = pca(&x, &PcaOptions { n_components: 2, ..Default::default() }).unwrap_err();
        assert!(matches!(err, SclabelError::InvalidValues { reason: ref m, .. } if m.contains("cell 1")), "{err}");
        let ok = CsrMatrix::from_dense(3, 3, &[1.0, 0.0, 2.0, 0.0, 1.0, 1.0, 3.0, 0.0, 0.0]).unwrap();
        for k in [0, 4] {
            assert!(matches!(pca(&ok, &PcaOptions { n_components: k, ..Default::default() }), Err(SclabelError::InvalidOption { .. })));
        }
        let broken = CsrMatrix { n_rows: 2, n_cols: 3, indptr: vec![0, 1, 2], indices: vec![0, 7], data: vec![1.0, 1.0] };
        assert!(matches!(pca(&broken, &PcaOptions { n_components: 1, ..Default::default() }), Err(SclabelError::ShapeMismatch { .. })));
        let short = CsrMatrix { n_rows: 2, n_cols: 3, indptr: vec![0, 1], indices: vec![0], data: vec![1.0] };
        assert!(pca(&short, &PcaOptions { n_components: 1, ..Default::default() }).is_err());
    }
}

//! Highly variable genes, as scanpy's `highly_variable_genes` selects them with `n_top_genes`:
//! - `seurat` on log-normalised data (ln(x+1)): per gene, the mean and variance of expm1(X), the
//!   log dispersion ln(var / mean) against ln(1 + mean), normalised to a z-score within 20
//!   equal-width bins of the mean; the genes with the highest normalised dispersion.
//! - `seurat_v3` on raw counts (Seurat's `vst`): a loess fit (span 0.3, degree 2) of log10 variance
//!   on log10 mean gives each gene an expected standard deviation; the variance of the counts
//!   standardised by it (clipped at √N) ranks the genes.
//! - Per batch (scanpy's `batch_key`): `seurat` selects within each batch (genes detected there),
//!   then ranks genes by the number of batches that selected them, ties by mean normalised
//!   dispersion; `seurat_v3` ranks by the median within-batch rank (of the ranks < n_top_genes),
//!   ties by the number of batches.
//!
//! Everything is computed from per-gene sums over stored values ([`GeneMoments`]), so the same code
//! serves a matrix held whole and one streamed a block of cells at a time. No burn.
//!
//! Where this departs from scanpy (each changes only ties and float-level boundary cases):
//! moments are summed in f64 over the f32 values; rank ties break by gene order (numpy's argsort
//! is not stable); loess is fitted directly at every point (skmisc interpolates a kd-tree surface
//! by default, which moves fitted values by a small fraction of their spread).
use serde::{Deserialize, Serialize};

use crate::data::matrix::CsrMatrix;
use crate::error::{Result, SclabelError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum HvgFlavor {
    /// Dispersion-based, on ln(x+1) data (scanpy's default; what Annotatability's notebooks use).
    Seurat,
    /// Variance of regularised z-scores, on raw counts.
    SeuratV3,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct HvgOptions {
    pub flavor: HvgFlavor,
    /// How many genes to keep (all of them when the data have no more).
    pub n_top_genes: usize,
    /// obs column whose values are the batches (optional).
    pub batch_key: Option<String>,
    /// Mean-expression bins for `seurat`.
    pub n_bins: usize,
    /// Loess span for `seurat_v3`.
    pub span: f64,
}

impl Default for HvgOptions {
    fn default() -> Self {
        Self { flavor: HvgFlavor::Seurat, n_top_genes: 2000, batch_key: None, n_bins: 20, span: 0.3 }
    }
}

/// The selection and the per-gene statistics behind it (all in the matrix's gene order; with
/// batches, statistics are averaged over batches as scanpy reports them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hvg {
    pub flavor: HvgFlavor,
    /// Selected genes' column indices, in the matrix's order.
    pub selected: Vec<usize>,
    pub highly_variable: Vec<bool>,
    /// `seurat`: ln(1 + mean of expm1(X)); `seurat_v3`: mean count.
    pub means: Vec<f64>,
    /// `seurat`: normalised dispersion; `seurat_v3`: normalised variance (NaN: not ranked).
    pub score: Vec<f64>,
    /// With batches: in how many batches each gene was selected.
    pub n_batches: Option<Vec<u32>>,
}

/// Per-gene sums over the cells of one batch: Σ f(x), Σ f(x)², cells where x ≠ 0.
#[derive(Debug, Clone)]
pub struct GeneMoments {
    pub n_cells: usize,
    pub sum: Vec<f64>,
    pub sum_sq: Vec<f64>,
    pub detected: Vec<u32>,
}

impl GeneMoments {
    pub fn new(n_genes: usize) -> Self {
        Self { n_cells: 0, sum: vec![0.0; n_genes], sum_sq: vec![0.0; n_genes], detected: vec![0; n_genes] }
    }

    /// Adds one cell's stored values, transformed by `f` (with f(0) = 0).
    pub fn add_row(&mut self, indices: &[u32], values: &[f32], f: impl Fn(f64) -> f64) {
        self.n_cells += 1;
        for (&j, &v) in indices.iter().zip(values) {
            let (j, y) = (j as usize, f(v as f64));
            self.sum[j] += y;
            self.sum_sq[j] += y * y;
            self.detected[j] += u32::from(v != 0.0);
        }
    }

    pub fn mean(&self, j: usize) -> f64 {
        if self.n_cells == 0 {
            0.0
        } else {
            self.sum[j] / self.n_cells as f64
        }
    }

    /// Unbiased variance (ddof 1), 0 for fewer than two cells, never negative.
    pub fn variance(&self, j: usize) -> f64 {
        let n = self.n_cells as f64;
        if self.n_cells < 2 {
            return 0.0;
        }
        let m = self.sum[j] / n;
        ((self.sum_sq[j] - n * m * m) / (n - 1.0)).max(0.0)
    }
}

/// The cells genes are selected from, visited in passes (one for `seurat`, two for `seurat_v3`): a
/// matrix in memory, or a file read block by block (`audit::api`), so selection never needs the
/// whole matrix at once.
pub trait RowPasses {
    fn n_rows(&self) -> usize;
    fn n_cols(&self) -> usize;
    /// Calls `visit(row, indices, values)` for each of `rows` (ascending), in that order.
    fn pass(&mut self, rows: &[usize], visit: &mut dyn FnMut(usize, &[u32], &[f32])) -> Result<()>;
}

impl RowPasses for &CsrMatrix {
    fn n_rows(&self) -> usize {
        self.n_rows
    }
    fn n_cols(&self) -> usize {
        self.n_cols
    }
    fn pass(&mut self, rows: &[usize], visit: &mut dyn FnMut(usize, &[u32], &[f32])) -> Result<()> {
        for &r in rows {
            let (idx, val) = self.row(r);
            visit(r, idx, val);
        }
        Ok(())
    }
}

/// Selects highly variable genes of `x` over `rows` (cells), with an optional batch code per row
/// of `x` (`batches[r]` for each r in `rows`). `x` must hold ln(x+1) data for `seurat` and raw
/// counts for `seurat_v3`; the caller knows which (see `normalize::detect`).
pub fn highly_variable_genes(x: &CsrMatrix, rows: &[usize], batches: Option<&[u32]>, options: &HvgOptions) -> Result<Hvg> {
    highly_variable_genes_of(&mut &*x, rows, batches, options)
}

/// [`highly_variable_genes`] of cells visited in passes; `rows` ascending.
pub fn highly_variable_genes_of(x: &mut impl RowPasses, rows: &[usize], batches: Option<&[u32]>, options: &HvgOptions) -> Result<Hvg> {
    let (n_rows, n_cols) = (x.n_rows(), x.n_cols());
    let bad = |reason: String| SclabelError::InvalidOption { option: "hvg".into(), reason };
    if options.n_top_genes == 0 {
        return Err(bad("n_top_genes must be at least 1".into()));
    }
    if options.flavor == HvgFlavor::Seurat && options.n_bins == 0 {
        return Err(bad("n_bins must be at least 1".into()));
    }
    if options.flavor == HvgFlavor::SeuratV3 && !(options.span > 0.0 && options.span.is_finite()) {
        return Err(bad(format!("span must be positive, got {}", options.span)));
    }
    if let Some(b) = batches {
        if b.len() != n_rows {
            return Err(SclabelError::shape(format!("{} batch codes for {} cells", b.len(), n_rows)));
        }
    }
    if let Some(&r) = rows.iter().find(|&&r| r >= n_rows) {
        return Err(SclabelError::shape(format!("row {r} is out of range for {n_rows} cells")));
    }
    if !rows.windows(2).all(|w| w[0] < w[1]) {
        return Err(bad("rows must be ascending and distinct".into()));
    }
    let n_batches = batches.map_or(1, |b| rows.iter().map(|&r| b[r] as usize + 1).max().unwrap_or(1));
    let batch_of = |r: usize| batches.map_or(0, |b| b[r] as usize);
    let mut moments: Vec<GeneMoments> = (0..n_batches).map(|_| GeneMoments::new(n_cols)).collect();
    let transform: fn(f64) -> f64 = match options.flavor {
        HvgFlavor::Seurat => f64::exp_m1,
        HvgFlavor::SeuratV3 => |v| v,
    };
    x.pass(rows, &mut |r, idx, val| moments[batch_of(r)].add_row(idx, val, transform))?;
    // Batch codes that no given row carries are not batches.
    let present: Vec<usize> = (0..n_batches).filter(|&b| moments[b].n_cells > 0).collect();
    if present.is_empty() {
        return Err(bad("no cells to select genes from".into()));
    }
    let n_top = options.n_top_genes.min(n_cols);
    match options.flavor {
        HvgFlavor::Seurat => {
            let per_batch: Vec<SeuratStats> = present.iter().map(|&b| seurat_batch(&moments[b], n_top, options.n_bins, batches.is_some())).collect();
            Ok(combine_seurat(&per_batch, n_top, batches.is_some()))
        }
        HvgFlavor::SeuratV3 => {
            let mut scores = Vec::with_capacity(present.len());
            for &b in &present {
                let m = &moments[b];
                let (mean, reg_std) = v3_regularised_std(m, options.span)?;
                // Second pass over the batch's cells: sums of counts clipped at mean + √N · σ_reg.
                let clip: Vec<f64> = mean.iter().zip(&reg_std).map(|(&mu, &s)| s * (m.n_cells as f64).sqrt() + mu).collect();
                let (mut s1, mut s2) = (vec![0f64; n_cols], vec![0f64; n_cols]);
                let batch_rows: Vec<usize> = rows.iter().copied().filter(|&r| batch_of(r) == b).collect();
                x.pass(&batch_rows, &mut |_, idx, val| {
                    for (&j, &v) in idx.iter().zip(val) {
                        let e = (v as f64).min(clip[j as usize]);
                        s1[j as usize] += e;
                        s2[j as usize] += e * e;
                    }
                })?;
                scores.push(v3_normalised_variance(m.n_cells, &mean, &reg_std, &s1, &s2));
            }
            Ok(combine_v3(&moments, &present, &scores, n_top, batches.is_some()))
        }
    }
}

/// One batch's `seurat` statistics.
struct SeuratStats {
    means: Vec<f64>,
    norm: Vec<f64>,
    selected: Vec<bool>,
}

fn seurat_batch(m: &GeneMoments, n_top: usize, n_bins: usize, batched: bool) -> SeuratStats {
    let g = m.sum.len();
    // scanpy drops genes no cell of the batch expresses before a batched selection (they get
    // zeros); unbatched, they stay and end with a NaN dispersion.
    let kept: Vec<usize> = (0..g).filter(|&j| !batched || m.detected[j] > 0).collect();
    let mut means = vec![0f64; g];
    let mut disp = vec![f64::NAN; g];
    for &j in &kept {
        let mut mean = m.mean(j);
        if mean == 0.0 {
            mean = 1e-12;
        }
        let d = m.variance(j) / mean;
        disp[j] = if d == 0.0 { f64::NAN } else { d.ln() };
        means[j] = mean.ln_1p();
    }
    // pandas.cut(means, bins = n_bins): equal-width bins over [min, max], right-closed, the lowest
    // edge lowered by 0.1% of the range so the minimum falls inside.
    let (lo, hi) = kept.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &j| (a.min(means[j]), b.max(means[j])));
    let bin_of = |x: f64| -> usize {
        // Also for NaN bounds (no kept gene): every gene in one bin.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(hi > lo) {
            return 0;
        }
        let width = (hi - lo) / n_bins as f64;
        // Edges as numpy.linspace makes them; the bin is the first whose upper edge is ≥ x.
        (1..=n_bins).find(|&k| x <= if k == n_bins { hi } else { lo + k as f64 * width }).map_or(n_bins - 1, |k| k - 1)
    };
    let bins: Vec<usize> = (0..g).map(|j| bin_of(means[j])).collect();
    let (mut count, mut sum, mut sum_sq) = (vec![0usize; n_bins], vec![0f64; n_bins], vec![0f64; n_bins]);
    for &j in &kept {
        if disp[j].is_finite() {
            count[bins[j]] += 1;
            sum[bins[j]] += disp[j];
        }
    }
    let avg: Vec<f64> = (0..n_bins).map(|b| sum[b] / count[b] as f64).collect();
    for &j in &kept {
        if disp[j].is_finite() {
            sum_sq[bins[j]] += (disp[j] - avg[bins[j]]).powi(2);
        }
    }
    let mut norm = vec![f64::NAN; g];
    for &j in &kept {
        let b = bins[j];
        // A bin with one gene has no standard deviation: scanpy then divides by the bin mean and
        // subtracts 0, which makes that gene's normalised dispersion 1.
        let (a, s) = if count[b] >= 2 { (avg[b], (sum_sq[b] / (count[b] - 1) as f64).sqrt()) } else { (0.0, avg[b]) };
        norm[j] = (disp[j] - a) / s;
    }
    // Every gene at or above the n-th highest normalised dispersion (ties all kept, as scanpy).
    let mut finite: Vec<f64> = kept.iter().map(|&j| norm[j]).filter(|v| !v.is_nan()).collect();
    finite.sort_by(|a, b| b.total_cmp(a));
    let selected = match finite.get(n_top.min(finite.len()).saturating_sub(1)) {
        Some(&cut) => norm.iter().map(|&v| !v.is_nan() && v >= cut).collect(),
        None => vec![false; g],
    };
    if batched {
        // Genes the batch does not express count with zeros in the average over batches.
        for j in 0..g {
            if m.detected[j] == 0 {
                norm[j] = 0.0;
            }
        }
    }
    SeuratStats { means, norm, selected }
}

fn combine_seurat(per_batch: &[SeuratStats], n_top: usize, batched: bool) -> Hvg {
    let g = per_batch[0].means.len();
    if !batched {
        let s = &per_batch[0];
        let selected: Vec<usize> = (0..g).filter(|&j| s.selected[j]).collect();
        return Hvg {
            flavor: HvgFlavor::Seurat,
            selected,
            highly_variable: s.selected.clone(),
            means: s.means.clone(),
            score: s.norm.clone(),
            n_batches: None,
        };
    }
    let nb = per_batch.len() as f64;
    let means: Vec<f64> = (0..g).map(|j| per_batch.iter().map(|s| s.means[j]).sum::<f64>() / nb).collect();
    // pandas' mean skips NaN.
    let score: Vec<f64> = (0..g)
        .map(|j| {
            let v: Vec<f64> = per_batch.iter().map(|s| s.norm[j]).filter(|x| !x.is_nan()).collect();
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        })
        .collect();
    let counts: Vec<u32> = (0..g).map(|j| per_batch.iter().filter(|s| s.selected[j]).count() as u32).collect();
    let mut order: Vec<usize> = (0..g).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then_with(|| nan_last(score[a], score[b], true)).then(a.cmp(&b)));
    finish(HvgFlavor::Seurat, &order[..n_top], means, score, Some(counts))
}

/// Ascending (or `descending`) order with NaN last either way, as pandas' `na_position="last"`.
fn nan_last(a: f64, b: f64, descending: bool) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if descending => b.total_cmp(&a),
        _ => a.total_cmp(&b),
    }
}

fn finish(flavor: HvgFlavor, top: &[usize], means: Vec<f64>, score: Vec<f64>, n_batches: Option<Vec<u32>>) -> Hvg {
    let mut highly_variable = vec![false; means.len()];
    top.iter().for_each(|&j| highly_variable[j] = true);
    let selected = (0..means.len()).filter(|&j| highly_variable[j]).collect();
    Hvg { flavor, selected, highly_variable, means, score, n_batches }
}

/// Per gene: the mean count and the loess-regularised standard deviation (10^(fit / 2); 1 for
/// genes of zero variance, which the fit leaves out).
fn v3_regularised_std(m: &GeneMoments, span: f64) -> Result<(Vec<f64>, Vec<f64>)> {
    let g = m.sum.len();
    let mean: Vec<f64> = (0..g).map(|j| m.mean(j)).collect();
    let var: Vec<f64> = (0..g).map(|j| m.variance(j)).collect();
    let fitted: Vec<usize> = (0..g).filter(|&j| var[j] > 0.0).collect();
    let xs: Vec<f64> = fitted.iter().map(|&j| mean[j].log10()).collect();
    let ys: Vec<f64> = fitted.iter().map(|&j| var[j].log10()).collect();
    let fit = loess_quadratic(&xs, &ys, span)?;
    let mut reg_std = vec![1.0f64; g];
    for (k, &j) in fitted.iter().enumerate() {
        reg_std[j] = 10f64.powf(fit[k]).sqrt();
    }
    Ok((mean, reg_std))
}

fn v3_normalised_variance(n: usize, mean: &[f64], reg_std: &[f64], s1: &[f64], s2: &[f64]) -> Vec<f64> {
    let n = n as f64;
    (0..mean.len())
        .map(|j| {
            let denom = (n - 1.0) * reg_std[j] * reg_std[j];
            if denom > 0.0 {
                (n * mean[j] * mean[j] + s2[j] - 2.0 * s1[j] * mean[j]) / denom
            } else {
                0.0
            }
        })
        .collect()
}

fn combine_v3(moments: &[GeneMoments], present: &[usize], scores: &[Vec<f64>], n_top: usize, batched: bool) -> Hvg {
    let g = scores[0].len();
    // Rank within each batch (0 = most variable), ties by gene order.
    let ranks: Vec<Vec<usize>> = scores
        .iter()
        .map(|s| {
            let mut order: Vec<usize> = (0..g).collect();
            order.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
            let mut rank = vec![0usize; g];
            order.iter().enumerate().for_each(|(k, &j)| rank[j] = k);
            rank
        })
        .collect();
    let counts: Vec<u32> = (0..g).map(|j| ranks.iter().filter(|r| r[j] < n_top).count() as u32).collect();
    let median_rank: Vec<f64> = (0..g)
        .map(|j| {
            let mut v: Vec<f64> = ranks.iter().map(|r| r[j]).filter(|&k| k < n_top).map(|k| k as f64).collect();
            v.sort_by(f64::total_cmp);
            match v.len() {
                0 => f64::NAN,
                l if l % 2 == 1 => v[l / 2],
                l => 0.5 * (v[l / 2 - 1] + v[l / 2]),
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..g).collect();
    order.sort_by(|&a, &b| nan_last(median_rank[a], median_rank[b], false).then(counts[b].cmp(&counts[a])).then(a.cmp(&b)));
    let nb = scores.len() as f64;
    let score: Vec<f64> = (0..g).map(|j| scores.iter().map(|s| s[j]).sum::<f64>() / nb).collect();
    // Means over all the cells given, as scanpy reports them.
    let n_all: f64 = present.iter().map(|&b| moments[b].n_cells as f64).sum();
    let means: Vec<f64> = (0..g).map(|j| present.iter().map(|&b| moments[b].sum[j]).sum::<f64>() / n_all).collect();
    finish(HvgFlavor::SeuratV3, &order[..n_top], means, score, batched.then_some(counts))
}

/// Local quadratic regression (loess, degree 2, tricube weights, no robustness iterations) of `y`
/// on `x`, evaluated at every `x`: each point's fit uses its ⌊span·n⌋ nearest neighbours (all
/// points, with the bandwidth widened by `span`, when span > 1).
pub fn loess_quadratic(x: &[f64], y: &[f64], span: f64) -> Result<Vec<f64>> {
    let n = x.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    if x.iter().chain(y).any(|v| !v.is_finite()) {
        return Err(SclabelError::values("loess: non-finite input"));
    }
    let q = ((span * n as f64).floor() as usize).clamp(1, n);
    if q < 3 {
        return Err(SclabelError::InvalidOption {
            option: "hvg.span".into(),
            reason: format!("span {span} of {n} genes leaves {q} neighbours per fit; a quadratic needs at least 3 (too few variable genes, or raise the span)"),
        });
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let xs: Vec<f64> = order.iter().map(|&i| x[i]).collect();
    let ys: Vec<f64> = order.iter().map(|&i| y[i]).collect();
    let mut out = vec![0f64; n];
    // Window [lo, lo + q) of the q nearest sorted points; it only moves right as x0 grows.
    let mut lo = 0usize;
    for k in 0..n {
        let x0 = xs[k];
        while lo + q < n && x0 - xs[lo] > xs[lo + q] - x0 {
            lo += 1;
        }
        let mut h = (x0 - xs[lo]).max(xs[lo + q - 1] - x0);
        if span > 1.0 {
            h *= span;
        }
        out[order[k]] = local_fit(&xs, &ys, x0, h, lo, lo + q, k);
    }
    Ok(out)
}

/// Weighted least squares of a quadratic in (x − x0) over xs[a..b], value at x0.
fn local_fit(xs: &[f64], ys: &[f64], x0: f64, h: f64, a: usize, b: usize, k: usize) -> f64 {
    if h <= 0.0 {
        // Every neighbour sits at x0: their mean.
        return ys[a..b].iter().sum::<f64>() / (b - a) as f64;
    }
    // Moments of the weighted design, with t = (x − x0) / h to keep the system well scaled.
    let (mut s, mut sy) = ([0f64; 5], [0f64; 3]);
    for i in a..b {
        let t = (xs[i] - x0) / h;
        let u = 1.0 - t.abs().powi(3);
        if u <= 0.0 {
            continue;
        }
        let w = u * u * u;
        let mut p = w;
        for (d, sd) in s.iter_mut().enumerate() {
            *sd += p;
            if d < 3 {
                sy[d] += p * ys[i];
            }
            p *= t;
        }
    }
    let m = [[s[0], s[1], s[2]], [s[1], s[2], s[3]], [s[2], s[3], s[4]]];
    match solve3(m, sy) {
        Some(beta) => beta[0],
        // Too few distinct points for a quadratic: a weighted line, then a weighted mean.
        None => {
            let det = s[0] * s[2] - s[1] * s[1];
            if det.abs() > 1e-12 * s[0] * s[2].max(1e-300) {
                (s[2] * sy[0] - s[1] * sy[1]) / det
            } else if s[0] > 0.0 {
                sy[0] / s[0]
            } else {
                ys[k]
            }
        }
    }
}

/// Solves a symmetric 3 × 3 system by Gaussian elimination with partial pivoting; `None` when it
/// is (numerically) singular.
fn solve3(mut m: [[f64; 3]; 3], mut r: [f64; 3]) -> Option<[f64; 3]> {
    let scale = m.iter().flatten().fold(0f64, |a, &v| a.max(v.abs()));
    if scale == 0.0 {
        return None;
    }
    for c in 0..3 {
        let p = (c..3).max_by(|&i, &j| m[i][c].abs().total_cmp(&m[j][c].abs()))?;
        if m[p][c].abs() <= 1e-10 * scale {
            return None;
        }
        m.swap(c, p);
        r.swap(c, p);
        for i in c + 1..3 {
            let f = m[i][c] / m[c][c];
            for j in c..3 {
                m[i][j] -= f * m[c][j];
            }
            r[i] -= f * r[c];
        }
    }
    let mut x = [0f64; 3];
    for c in (0..3).rev() {
        x[c] = (r[c] - (c + 1..3).map(|j| m[c][j] * x[j]).sum::<f64>()) / m[c][c];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cells × genes of counts where gene 0 is variable across two groups, gene 1 flat, gene 2
    /// noisy and low, gene 3 never expressed.
    fn counts() -> CsrMatrix {
        let mut v = Vec::new();
        for i in 0..40 {
            let hi = i % 2 == 0;
            v.extend_from_slice(&[if hi { 30.0 } else { 1.0 }, 5.0, (i % 3) as f32, 0.0]);
        }
        CsrMatrix::from_dense(40, 4, &v).unwrap()
    }

    #[test]
    fn loess_reproduces_a_quadratic_and_smooths_noise() {
        let x: Vec<f64> = (0..200).map(|i| i as f64 / 20.0).collect();
        let y: Vec<f64> = x.iter().map(|&t| 1.0 + 0.5 * t - 0.1 * t * t).collect();
        let fit = loess_quadratic(&x, &y, 0.3).unwrap();
        for (f, t) in fit.iter().zip(&y) {
            assert!((f - t).abs() < 1e-8, "{f} vs {t}");
        }
        // Alternating noise around a line is averaged away away from the ends.
        let y2: Vec<f64> = x.iter().enumerate().map(|(i, &t)| t + if i % 2 == 0 { 0.3 } else { -0.3 }).collect();
        let fit = loess_quadratic(&x, &y2, 0.3).unwrap();
        for i in 40..160 {
            assert!((fit[i] - x[i]).abs() < 0.05, "{} at {}", fit[i], x[i]);
        }
        // Unsorted input gives the same values per point.
        let mut perm: Vec<usize> = (0..200).collect();
        perm.reverse();
        let xr: Vec<f64> = perm.iter().map(|&i| x[i]).collect();
        let yr: Vec<f64> = perm.iter().map(|&i| y2[i]).collect();
        let fr = loess_quadratic(&xr, &yr, 0.3).unwrap();
        for (k, &i) in perm.iter().enumerate() {
            assert!((fr[k] - fit[i]).abs() < 1e-9);
        }
        assert!(loess_quadratic(&x[..5], &y[..5], 0.3).is_err(), "too few neighbours is an error");
    }

    #[test]
    fn seurat_ranks_the_bimodal_gene_first_and_keeps_ties() {
        let (y, _) =
            crate::data::normalize::to_log_normalized(&counts(), &["a", "b", "c", "d"].map(String::from), crate::data::normalize::TargetScale::Cp10k).unwrap();
        let rows: Vec<usize> = (0..40).collect();
        let h = highly_variable_genes(&y, &rows, None, &HvgOptions { n_top_genes: 1, n_bins: 1, ..HvgOptions::default() }).unwrap();
        assert_eq!(h.selected, vec![0]);
        // The unexpressed gene has no dispersion and is never selected, even when all are asked for.
        let h = highly_variable_genes(&y, &rows, None, &HvgOptions { n_top_genes: 10, n_bins: 1, ..HvgOptions::default() }).unwrap();
        assert!(!h.highly_variable[3] && h.score[3].is_nan());
        assert!(highly_variable_genes(&y, &rows, None, &HvgOptions { n_top_genes: 0, ..HvgOptions::default() }).is_err());
    }

    #[test]
    fn seurat_bins_are_pandas_cut_and_single_gene_bins_score_one() {
        // Two genes far apart in mean, each alone in its bin: normalised dispersion is 1 for both.
        let mut m = GeneMoments::new(2);
        for i in 0..10 {
            let a = if i % 2 == 0 { 1.0f32 } else { 0.0 };
            m.add_row(&[0, 1], &[a, 5.0 + a], |v| v);
        }
        let s = seurat_batch(&m, 2, 20, false);
        assert!((s.norm[0] - 1.0).abs() < 1e-12 && (s.norm[1] - 1.0).abs() < 1e-12, "{:?}", s.norm);
    }

    #[test]
    fn batched_selection_counts_batches() {
        let (y, _) =
            crate::data::normalize::to_log_normalized(&counts(), &["a", "b", "c", "d"].map(String::from), crate::data::normalize::TargetScale::Cp10k).unwrap();
        let rows: Vec<usize> = (0..40).collect();
        let batches: Vec<u32> = (0..40).map(|i| (i / 20) as u32).collect();
        let h = highly_variable_genes(&y, &rows, Some(&batches), &HvgOptions { n_top_genes: 1, n_bins: 1, ..HvgOptions::default() }).unwrap();
        assert_eq!(h.selected, vec![0]);
        assert_eq!(h.n_batches.as_ref().unwrap()[0], 2);
    }

    #[test]
    fn seurat_v3_on_counts() {
        // 300 genes with Poisson variance = mean, plus 5 of mean 5 and variance 75.
        let (n_cells, n_genes) = (200usize, 305usize);
        let mut v = vec![0f32; n_cells * n_genes];
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as f64 / (1u64 << 31) as f64
        };
        for i in 0..n_cells {
            for j in 0..n_genes {
                let mean = 0.1 + (j % 300) as f64 * 0.05;
                let value = if j >= 300 {
                    if i % 4 == 0 {
                        20.0
                    } else {
                        0.0
                    }
                } else {
                    // Poisson by inversion.
                    let (mut k, mut p, u) = (0.0, (-mean).exp(), next());
                    let mut cdf = p;
                    while u > cdf && k < 100.0 {
                        k += 1.0;
                        p *= mean / k;
                        cdf += p;
                    }
                    k
                };
                v[i * n_genes + j] = value as f32;
            }
        }
        let x = CsrMatrix::from_dense(n_cells, n_genes, &v).unwrap();
        let rows: Vec<usize> = (0..n_cells).collect();
        let h = highly_variable_genes(&x, &rows, None, &HvgOptions { flavor: HvgFlavor::SeuratV3, n_top_genes: 5, ..HvgOptions::default() }).unwrap();
        assert_eq!(h.selected, vec![300, 301, 302, 303, 304], "{:?}", &h.score[295..]);
        // Per batch (two halves): the same genes, selected in both.
        let batches: Vec<u32> = (0..n_cells).map(|i| (i * 2 / n_cells) as u32).collect();
        let opts = HvgOptions { flavor: HvgFlavor::SeuratV3, n_top_genes: 5, ..HvgOptions::default() };
        let h = highly_variable_genes(&x, &rows, Some(&batches), &opts).unwrap();
        assert_eq!(h.selected, vec![300, 301, 302, 303, 304]);
        assert!(h.selected.iter().all(|&j| h.n_batches.as_ref().unwrap()[j] == 2));
    }
}

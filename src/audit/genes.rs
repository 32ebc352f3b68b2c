//! Genes associated with trainability (Annotatability's `rank_genes_conf_min_counts`): each gene,
//! centred and scaled to unit L2 norm over cells, weighted by the cells' (normalised) confidence.
//! With power 1 `conf_score_high` is a positive multiple of the gene's Pearson correlation with
//! confidence. Computed from CSR column sums, without densifying the matrix.
use serde::{Deserialize, Serialize};

use crate::data::matrix::CsrMatrix;
use crate::error::{Result, SclabelError};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct GeneScoreOptions {
    /// Exponent of the confidence weights in `conf_score_high`.
    pub power: f64,
    /// Exponent of the (1 − confidence) weights in `conf_score_low`.
    pub power_low: f64,
    /// Genes whose column sum (of the matrix as given, usually log-normalised) is below this are
    /// left out (scanpy's `filter_genes(min_counts=…)`).
    pub min_counts: f64,
}

impl Default for GeneScoreOptions {
    fn default() -> Self {
        Self { power: 1.0, power_low: 1.0, min_counts: 100.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneScores {
    /// The genes that passed `min_counts`, in the matrix's order.
    pub genes: Vec<String>,
    /// Positive association with trainability.
    pub conf_score_high: Vec<f32>,
    /// Negative association (weights 1 − confidence).
    pub conf_score_low: Vec<f32>,
    /// Sum over "ambiguous" cells: weights within mean ± *variance* of the normalised confidence
    /// weights, as the reference defines it (a band so narrow that it holds few cells).
    pub conf_score_mid: Vec<f32>,
}

impl GeneScores {
    /// Indices into `genes` of the `n` highest values of `scores`, highest first.
    pub fn top(scores: &[f32], n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        order.truncate(n);
        order
    }
}

/// Scores the genes of `x` (rows = the cells `confidence` describes).
pub fn gene_scores(x: &CsrMatrix, genes: &[String], confidence: &[f32], options: &GeneScoreOptions) -> Result<GeneScores> {
    let n = x.n_rows;
    if confidence.len() != n || genes.len() != x.n_cols {
        return Err(SclabelError::shape(format!(
            "gene scores: {} confidences and {} gene names for a {n} × {} matrix",
            confidence.len(),
            genes.len(),
            x.n_cols
        )));
    }
    if let Some(i) = confidence.iter().position(|c| !(0.0..=1.0).contains(c)) {
        return Err(SclabelError::values(format!("confidence of cell {i} is {}, not a probability", confidence[i])));
    }
    for (name, p) in [("power", options.power), ("power_low", options.power_low)] {
        if !p.is_finite() || p <= 0.0 {
            return Err(SclabelError::InvalidOption { option: name.into(), reason: format!("must be positive, got {p}") });
        }
    }
    let c: Vec<f64> = confidence.iter().map(|&v| v as f64).collect();
    let (sum_hi, sum_lo) = (c.iter().sum::<f64>(), c.iter().map(|v| 1.0 - v).sum::<f64>());
    if sum_hi <= 0.0 || sum_lo <= 0.0 {
        return Err(SclabelError::values("gene scores need confidences that are neither all 0 nor all 1"));
    }
    let w_hi: Vec<f64> = c.iter().map(|v| v / sum_hi).collect();
    let w_lo: Vec<f64> = c.iter().map(|v| (1.0 - v) / sum_lo).collect();
    let mean = w_hi.iter().sum::<f64>() / n as f64;
    let var = w_hi.iter().map(|w| (w - mean).powi(2)).sum::<f64>() / n as f64;
    let ambiguous: Vec<f64> = w_hi.iter().map(|&w| f64::from(u8::from(mean - var <= w && w <= mean + var))).collect();
    let weights = [w_hi.iter().map(|w| w.powf(options.power)).collect::<Vec<f64>>(), w_lo.iter().map(|w| w.powf(options.power_low)).collect(), ambiguous];
    let weight_sums: Vec<f64> = weights.iter().map(|w| w.iter().sum()).collect();

    // Per gene: Σx, Σx², and Σ x·w for each weight vector.
    let g = x.n_cols;
    let (mut s1, mut s2) = (vec![0f64; g], vec![0f64; g]);
    let mut sw = vec![[0f64; 3]; g];
    for i in 0..n {
        let (idx, val) = x.row(i);
        for (&j, &v) in idx.iter().zip(val) {
            let (j, v) = (j as usize, v as f64);
            s1[j] += v;
            s2[j] += v * v;
            for k in 0..3 {
                sw[j][k] += v * weights[k][i];
            }
        }
    }
    let mut out = GeneScores { genes: Vec::new(), conf_score_high: Vec::new(), conf_score_low: Vec::new(), conf_score_mid: Vec::new() };
    for j in 0..g {
        if !s1[j].is_finite() || !s2[j].is_finite() {
            return Err(SclabelError::values(format!("gene '{}' has non-finite values", genes[j])).at_gene(&genes[j]));
        }
        if s1[j] < options.min_counts {
            continue;
        }
        let mu = s1[j] / n as f64;
        let norm = (s2[j] - n as f64 * mu * mu).max(0.0).sqrt();
        // Σ_i (x_ij − μ_j)/‖x_j − μ_j‖ · w_i; a constant gene (norm 0) scores 0, as in sklearn.
        let score = |k: usize| if norm > 0.0 { ((sw[j][k] - mu * weight_sums[k]) / norm) as f32 } else { 0.0 };
        out.genes.push(genes[j].clone());
        out.conf_score_high.push(score(0));
        out.conf_score_low.push(score(1));
        out.conf_score_mid.push(score(2));
    }
    if out.genes.is_empty() {
        return Err(SclabelError::genes(format!("no gene has a column sum of at least min_counts = {}", options.min_counts)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> (CsrMatrix, Vec<String>, Vec<f32>) {
        // 6 cells × 4 genes; gene 0 rises with confidence, gene 1 falls, gene 2 constant, gene 3
        // nearly empty.
        let conf = vec![0.1, 0.2, 0.4, 0.6, 0.8, 0.9];
        let mut dense = Vec::new();
        for (i, &c) in conf.iter().enumerate() {
            dense.extend([3.0 * c + 0.1 * (i % 2) as f32, 2.0 - 2.0 * c, 1.0, if i == 0 { 0.5 } else { 0.0 }]);
        }
        let x = CsrMatrix::from_dense(6, 4, &dense).unwrap();
        (x, (0..4).map(|g| format!("g{g}")).collect(), conf)
    }

    #[test]
    fn high_score_is_a_scaled_correlation_and_low_its_mirror_at_power_one() {
        let (x, genes, conf) = data();
        let s = gene_scores(&x, &genes, &conf, &GeneScoreOptions { min_counts: 0.0, ..Default::default() }).unwrap();
        let (sc, s1c): (f64, f64) = (conf.iter().map(|&c| c as f64).sum(), conf.iter().map(|&c| 1.0 - c as f64).sum());
        for g in 0..4 {
            let expected = -(sc / s1c) as f32 * s.conf_score_high[g];
            assert!((s.conf_score_low[g] - expected).abs() < 1e-6, "gene {g}: {} vs {expected}", s.conf_score_low[g]);
        }
        assert!(s.conf_score_high[0] > 0.0 && s.conf_score_high[1] < 0.0);
        assert_eq!(s.conf_score_high[2], 0.0, "a constant gene scores 0");
        // Reference value for gene 0 from the definition, written out densely.
        let col: Vec<f64> = (0..6).map(|i| 3.0 * conf[i] as f64 + 0.1 * (i % 2) as f64).collect();
        let mu = col.iter().sum::<f64>() / 6.0;
        let norm = col.iter().map(|v| (v - mu).powi(2)).sum::<f64>().sqrt();
        let want: f64 = col.iter().zip(&conf).map(|(v, &c)| (v - mu) / norm * c as f64 / sc).sum();
        assert!((s.conf_score_high[0] as f64 - want).abs() < 1e-6);
        assert_eq!(GeneScores::top(&s.conf_score_high, 4), vec![0, 2, 3, 1], "rises, constant, only in the least confident cell, falls");
    }

    #[test]
    fn min_counts_filters_and_powers_break_the_mirror() {
        let (x, genes, conf) = data();
        let s = gene_scores(&x, &genes, &conf, &GeneScoreOptions { min_counts: 1.0, ..Default::default() }).unwrap();
        assert_eq!(s.genes, vec!["g0", "g1", "g2"]);
        let p = gene_scores(&x, &genes, &conf, &GeneScoreOptions { min_counts: 1.0, power: 2.0, power_low: 1.0 }).unwrap();
        assert!((p.conf_score_high[0] - s.conf_score_high[0]).abs() > 1e-4);
        assert!(gene_scores(&x, &genes, &conf, &GeneScoreOptions { min_counts: 1e9, ..Default::default() }).is_err());
        assert!(gene_scores(&x, &genes, &[0.5; 3], &GeneScoreOptions::default()).is_err());
    }
}

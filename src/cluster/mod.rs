//! Over-clustering and majority voting, as CellTypist's `majority_voting` does it
//! (`Classifier.over_cluster`, `majority_vote`): the query is over-clustered on a kNN graph and
//! each cluster takes the label most of its cells were given.
//!
//! The over-clustering follows scanpy's pipeline that CellTypist runs when the query has no
//! neighbour graph: genes detected in ≥ 5 cells; the 2,500 highly variable ones (`seurat`) of
//! ln(CP10k+1); each scaled to unit variance and clipped at 10; 50 principal components; a 10-nearest-neighbour
//! graph (the cell itself counted, as scanpy counts it) with UMAP's fuzzy connectivities; Leiden
//! on modularity with CellTypist's resolution for the cell count, 2 iterations (scanpy's igraph
//! flavour). Differences: the PCA is randomised SVD
//! (`audit::pca`) rather than ARPACK; the neighbours are exact (`knn`; scanpy: pynndescent above
//! 4,096 cells); Leiden's refinement takes the best merge rather than a random one. Clusters therefore
//! differ cell by cell from scanpy's; how much is measured in docs/celltypist.md.
pub mod knn;
pub mod leiden;

use serde::{Deserialize, Serialize};

use crate::audit::pca::{pca, PcaOptions};
use crate::data::hvg::{highly_variable_genes_of, HvgFlavor, HvgOptions, RowPasses};
use crate::data::matrix::CsrMatrix;
use crate::data::normalize::{detect_from_stats, log_factor, rescale_in_place, TargetScale, ValueStats};
use crate::error::{Result, SclabelError};
use crate::train::progress::Observer;
use knn::knn;
use leiden::{leiden, Graph, LeidenOptions};

/// The label of a cluster whose most common label has fewer than `min_prop` of its cells.
pub const HETEROGENEOUS: &str = "Heterogeneous";

/// How the query is over-clustered (CellTypist's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(default, deny_unknown_fields)]
pub struct OverClusterOptions {
    /// Leiden's resolution. `None`: CellTypist's for the cell count — 5 below 5,000 cells, 10
    /// below 20,000, 15 below 40,000, 20 below 100,000, 25 below 200,000, else 30.
    pub resolution: Option<f64>,
    /// Highly variable genes the graph is built on.
    pub n_top_genes: usize,
    /// Principal components.
    pub n_pcs: usize,
    /// Neighbours per cell, the cell itself counted (scanpy's `n_neighbors`).
    pub n_neighbors: usize,
    pub seed: u64,
}

impl Default for OverClusterOptions {
    fn default() -> Self {
        Self { resolution: None, n_top_genes: 2500, n_pcs: 50, n_neighbors: 10, seed: 0 }
    }
}

/// CellTypist's resolution for `n` cells.
pub fn default_resolution(n: usize) -> f64 {
    match n {
        0..5_000 => 5.0,
        5_000..20_000 => 10.0,
        20_000..40_000 => 15.0,
        40_000..100_000 => 20.0,
        100_000..200_000 => 25.0,
        _ => 30.0,
    }
}

/// An over-clustering: a cluster per cell (0 the largest) and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverClustering {
    pub clusters: Vec<u32>,
    pub n_clusters: usize,
    pub resolution: f64,
    pub description: String,
}

/// Over-clusters the cells of `x` (cells × all genes, on whatever scale `stats` says: counts, ln
/// or log2; `stats` of `x`, `var_names` for errors).
pub async fn over_cluster<O: Observer>(
    x: &CsrMatrix,
    var_names: &[String],
    stats: &ValueStats,
    options: &OverClusterOptions,
    observer: &mut O,
) -> Result<OverClustering> {
    let n = x.n_rows;
    let bad = |option: &str, reason: String| SclabelError::InvalidOption { option: option.into(), reason };
    if n < 3 {
        return Err(bad("majority_voting", format!("over-clustering needs at least 3 cells (the data have {n})")));
    }
    if options.n_neighbors < 2 || options.n_pcs == 0 || options.n_top_genes == 0 {
        return Err(bad("over_cluster", "n_neighbors must be at least 2, n_pcs and n_top_genes at least 1".into()));
    }
    let resolution = options.resolution.unwrap_or_else(|| default_resolution(n));
    let report = detect_from_stats(stats, var_names)?;
    let factor = log_factor(&report)?;
    let totals = stats.totals(&report.normalization);

    // Genes detected in at least 5 cells (scanpy's filter_genes(min_cells=5)).
    let mut detected = vec![0u32; x.n_cols];
    for (&j, &v) in x.indices.iter().zip(&x.data) {
        if v != 0.0 {
            detected[j as usize] += 1;
        }
    }
    let kept: Vec<usize> = (0..x.n_cols).filter(|&j| detected[j] >= 5).collect();
    if kept.len() < 2 {
        return Err(SclabelError::values(format!("only {} genes are detected in 5 or more cells: too few to over-cluster the cells", kept.len())));
    }
    let mut rows = LogRows { x, factor, totals, column: column_map(x.n_cols, &kept), n_kept: kept.len() };
    let hvg = HvgOptions { flavor: HvgFlavor::Seurat, n_top_genes: options.n_top_genes.min(kept.len()), ..Default::default() };
    let all: Vec<usize> = (0..n).collect();
    let selected: Vec<usize> = highly_variable_genes_of(&mut rows, &all, None, &hvg)?.selected.iter().map(|&k| kept[k]).collect();

    // ln(CP10k+1) of the selected genes, each scaled to unit variance (ddof 1, as scanpy).
    let mut y = x.select_cols(&selected);
    rescale_in_place(&mut y, factor, totals, TargetScale::Cp10k);
    let g = selected.len();
    let (mut sum, mut sum_sq) = (vec![0f64; g], vec![0f64; g]);
    for (&j, &v) in y.indices.iter().zip(&y.data) {
        sum[j as usize] += v as f64;
        sum_sq[j as usize] += (v as f64) * (v as f64);
    }
    // z = (x − μ)/σ clipped at 10 (scanpy's max_value) is, before centring, x/σ clipped at
    // μ/σ + 10: only stored values can pass it, so the clip keeps the matrix sparse, and the PCA
    // centres the clipped columns as scanpy's PCA does.
    for (&j, v) in y.indices.iter().zip(y.data.iter_mut()) {
        let j = j as usize;
        let mean = sum[j] / n as f64;
        let var = (sum_sq[j] - n as f64 * mean * mean).max(0.0) / (n as f64 - 1.0);
        let std = if var > 0.0 { var.sqrt() } else { 1.0 };
        *v = (*v as f64 / std).min(mean / std + 10.0) as f32;
    }
    let n_pcs = options.n_pcs.min(g - 1).min(n - 1).max(1);
    let scores = pca(&y, &PcaOptions { n_components: n_pcs, seed: options.seed, ..Default::default() })?.scores;
    drop(y);

    // Exact k nearest neighbours (the cell itself not among them), then UMAP's weights.
    let k = (options.n_neighbors - 1).min(n - 1);
    let near = knn(&scores, n, n_pcs, k, observer).await?;
    let graph = fuzzy_connectivities(&near, options.n_neighbors);
    let clusters = leiden(&graph, &LeidenOptions { resolution, n_iterations: 2, seed: options.seed })?;
    let n_clusters = clusters.iter().max().map_or(0, |m| *m as usize + 1);
    let description = format!(
        "{n_clusters} clusters: Leiden (modularity, resolution {resolution}, 2 iterations) on a {}-nearest-neighbour graph of {n_pcs} principal components of {g} highly variable genes",
        options.n_neighbors
    );
    Ok(OverClustering { clusters, n_clusters, resolution, description })
}

/// Position of each column among `kept` (u32::MAX: dropped).
fn column_map(n_cols: usize, kept: &[usize]) -> Vec<u32> {
    let mut map = vec![u32::MAX; n_cols];
    for (k, &j) in kept.iter().enumerate() {
        map[j] = k as u32;
    }
    map
}

/// A matrix's rows at ln(CP10k+1) (whole-cell totals), restricted to some of its genes, for the
/// gene selection's passes without a rescaled copy of the whole matrix.
struct LogRows<'a> {
    x: &'a CsrMatrix,
    factor: Option<f64>,
    totals: Option<&'a [f64]>,
    column: Vec<u32>,
    n_kept: usize,
}

impl RowPasses for LogRows<'_> {
    fn n_rows(&self) -> usize {
        self.x.n_rows
    }
    fn n_cols(&self) -> usize {
        self.n_kept
    }
    fn pass(&mut self, rows: &[usize], visit: &mut dyn FnMut(usize, &[u32], &[f32])) -> Result<()> {
        let (mut idx, mut val) = (Vec::new(), Vec::new());
        for &r in rows {
            let (i, v) = self.x.row(r);
            idx.clear();
            val.clear();
            for (&j, &value) in i.iter().zip(v) {
                if self.column[j as usize] != u32::MAX {
                    idx.push(self.column[j as usize]);
                    val.push(value);
                }
            }
            // One row through the same rescaling as every other path (its whole-cell total).
            let mut row = CsrMatrix { n_rows: 1, n_cols: self.n_kept, indptr: vec![0, idx.len() as u64], indices: Vec::new(), data: std::mem::take(&mut val) };
            rescale_in_place(&mut row, self.factor, self.totals.map(|t| &t[r..r + 1]), TargetScale::Cp10k);
            val = row.data;
            visit(r, &idx, &val);
        }
        Ok(())
    }
}

/// UMAP's fuzzy simplicial set (scanpy's `connectivities`, method 'umap') from each cell's nearest
/// neighbours with their distances: per cell ρ (the nearest distance) and σ (Σ exp(−(d − ρ)/σ) =
/// log2(n_neighbors)), w = exp(−(d − ρ)/σ), then W + Wᵀ − W∘Wᵀ.
fn fuzzy_connectivities(neighbours: &[Vec<(u32, f64)>], n_neighbors: usize) -> Graph {
    let n = neighbours.len();
    let target = (n_neighbors as f64).log2();
    let mut directed: Vec<Vec<(u32, f64)>> = Vec::with_capacity(n);
    for near in neighbours {
        let rho = near.iter().map(|e| e.1).find(|&v| v > 0.0).unwrap_or(0.0);
        let (mut lo, mut hi, mut sigma) = (0.0f64, f64::INFINITY, 1.0f64);
        for _ in 0..64 {
            let psum: f64 = near.iter().map(|e| if e.1 - rho > 0.0 { (-(e.1 - rho) / sigma).exp() } else { 1.0 }).sum();
            if (psum - target).abs() < 1e-5 {
                break;
            }
            if psum > target {
                hi = sigma;
                sigma = (lo + hi) / 2.0;
            } else {
                lo = sigma;
                sigma = if hi.is_infinite() { sigma * 2.0 } else { (lo + hi) / 2.0 };
            }
        }
        // UMAP's floor on σ: 1e-3 of the mean distance (the cell's own 0 included, as scanpy's).
        let mean = near.iter().map(|e| e.1).sum::<f64>() / (near.len() + 1) as f64;
        sigma = sigma.max(1e-3 * mean);
        directed.push(near.iter().map(|&(j, d)| (j, if d - rho <= 0.0 || sigma == 0.0 { 1.0 } else { (-(d - rho) / sigma).exp() })).collect());
    }
    // Symmetrise: w_ij + w_ji − w_ij·w_ji.
    let mut rows: Vec<Vec<(u32, f64)>> = vec![Vec::new(); n];
    for (i, near) in directed.iter().enumerate() {
        for &(j, w) in near {
            let back = directed[j as usize].iter().find(|e| e.0 as usize == i).map_or(0.0, |e| e.1);
            let sym = w + back - w * back;
            rows[i].push((j, sym));
            if back == 0.0 {
                rows[j as usize].push((i as u32, sym));
            }
        }
    }
    let mut g = Graph { indptr: vec![0], indices: Vec::new(), weights: Vec::new() };
    for mut r in rows {
        r.sort_by_key(|e| e.0);
        r.dedup_by_key(|e| e.0);
        for (j, w) in r {
            g.indices.push(j);
            g.weights.push(w);
        }
        g.indptr.push(g.indices.len());
    }
    g
}

/// CellTypist's majority vote: each cluster takes its most common label (ties: the first label
/// in name order, as pandas' crosstab orders them); `Heterogeneous` where that label has fewer
/// than `min_prop` of the cluster's cells.
pub fn majority_vote(labels: &[String], clusters: &[u32], min_prop: f64) -> Result<Vec<String>> {
    if labels.len() != clusters.len() {
        return Err(SclabelError::shape(format!("{} labels for {} clustered cells", labels.len(), clusters.len())));
    }
    if !(0.0..=1.0).contains(&min_prop) {
        return Err(SclabelError::InvalidOption { option: "min_prop".into(), reason: format!("must be between 0 and 1 (got {min_prop})") });
    }
    let n_c = clusters.iter().max().map_or(0, |m| *m as usize + 1);
    let mut counts: Vec<std::collections::BTreeMap<&str, usize>> = vec![Default::default(); n_c];
    for (l, &c) in labels.iter().zip(clusters) {
        *counts[c as usize].entry(l.as_str()).or_default() += 1;
    }
    let winners: Vec<String> = counts
        .iter()
        .map(|votes| {
            let total: usize = votes.values().sum();
            // BTreeMap iterates in name order; the first of the largest wins.
            let (label, &count) = votes.iter().fold(("", &0usize), |best, (l, c)| if c > best.1 { (l, c) } else { best });
            if (count as f64) < min_prop * total as f64 {
                HETEROGENEOUS.to_string()
            } else {
                label.to_string()
            }
        })
        .collect();
    Ok(clusters.iter().map(|&c| winners[c as usize].clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;
    use crate::data::synthetic::{synthetic_counts, SyntheticSpec};
    use crate::train::progress::Silent;

    #[test]
    fn majority_vote_follows_celltypist() {
        let labels: Vec<String> = ["B", "A", "A", "B", "C", "C", "C", "A"].iter().map(|s| s.to_string()).collect();
        let clusters = [0, 0, 0, 0, 1, 1, 1, 1];
        // Cluster 0: A 2, B 2 → A (name order); cluster 1: C 3 of 4.
        assert_eq!(majority_vote(&labels, &clusters, 0.0).unwrap(), ["A", "A", "A", "A", "C", "C", "C", "C"]);
        let strict = majority_vote(&labels, &clusters, 0.6).unwrap();
        assert_eq!(strict[..4], [HETEROGENEOUS; 4]);
        assert_eq!(strict[4..], ["C"; 4]);
        assert!(majority_vote(&labels, &clusters[..3], 0.0).is_err());
        assert!(majority_vote(&labels, &clusters, 1.5).is_err());
    }

    #[test]
    fn resolution_follows_the_cell_count() {
        assert_eq!([4_999, 5_000, 19_999, 39_999, 99_999, 199_999, 200_000].map(default_resolution), [5.0, 10.0, 10.0, 15.0, 20.0, 25.0, 30.0]);
    }

    #[test]
    fn over_clusters_synthetic_types_within_their_type() {
        let data = synthetic_counts(&SyntheticSpec { n_cells: 600, n_genes: 300, n_classes: 3, seed: 4, ..Default::default() });
        let (x, var_names) = data.matrix(false).unwrap();
        let stats = data.value_stats(false).unwrap();
        let options = OverClusterOptions { resolution: Some(2.0), ..Default::default() };
        let oc = block_on(over_cluster(x, var_names, &stats, &options, &mut Silent)).unwrap();
        assert!(oc.n_clusters >= 3, "{}", oc.description);
        // Clusters are pure: voting recovers every cell's type.
        let truth: Vec<String> = data.obs.get("cell_type").unwrap().to_strings().into_iter().map(Option::unwrap).collect();
        let voted = majority_vote(&truth, &oc.clusters, 0.0).unwrap();
        let agree = voted.iter().zip(&truth).filter(|(a, b)| a == b).count();
        assert!(agree as f64 >= 0.98 * truth.len() as f64, "{agree} of {}", truth.len());
        // Seeded.
        let again = block_on(over_cluster(x, var_names, &stats, &options, &mut Silent)).unwrap();
        assert_eq!(oc.clusters, again.clusters);
    }
}

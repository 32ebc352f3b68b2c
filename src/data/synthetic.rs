//! Seeded synthetic count data with known cell types, for tests and demos that must run without
//! any downloaded data: each class raises its own block of marker genes over a shared background.
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::data::anndata::{AnnData, Column, ObsTable};
use crate::data::matrix::CsrMatrix;

#[derive(Debug, Clone)]
pub struct SyntheticSpec {
    pub n_cells: usize,
    pub n_genes: usize,
    pub n_classes: usize,
    /// Marker genes per class.
    pub markers_per_class: usize,
    /// Mean count of a marker gene in its own class (background mean is 1).
    pub marker_mean: f64,
    pub seed: u64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self { n_cells: 600, n_genes: 200, n_classes: 4, markers_per_class: 10, marker_mean: 6.0, seed: 0 }
    }
}

/// Knuth's Poisson sampler; fine for the small means used here.
fn poisson(rng: &mut StdRng, mean: f64) -> u32 {
    let l = (-mean).exp();
    let (mut k, mut p) = (0u32, 1.0f64);
    loop {
        p *= rng.random::<f64>();
        if p <= l {
            return k;
        }
        k += 1;
    }
}

/// Raw counts (CSR), obs `cell_type` (categorical `type_0` …) and `batch` (two batches).
pub fn synthetic_counts(spec: &SyntheticSpec) -> AnnData {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut dense = vec![0f32; spec.n_cells * spec.n_genes];
    let mut codes = Vec::with_capacity(spec.n_cells);
    for i in 0..spec.n_cells {
        let class = i % spec.n_classes;
        codes.push(class as i32);
        let markers = class * spec.markers_per_class..(class + 1) * spec.markers_per_class;
        for g in 0..spec.n_genes {
            let mean = if markers.contains(&g) { spec.marker_mean } else { 1.0 };
            dense[i * spec.n_genes + g] = poisson(&mut rng, mean) as f32;
        }
    }
    let x = CsrMatrix::from_dense(spec.n_cells, spec.n_genes, &dense).expect("shape is consistent");
    let obs = ObsTable {
        columns: vec![
            ("cell_type".into(), Column::Categorical { codes, categories: (0..spec.n_classes).map(|c| format!("type_{c}")).collect() }),
            ("batch".into(), Column::Categorical { codes: (0..spec.n_cells).map(|i| (i % 2) as i32).collect(), categories: vec!["a".into(), "b".into()] }),
        ],
    };
    AnnData {
        x,
        obs,
        obs_names: (0..spec.n_cells).map(|i| format!("cell_{i}")).collect(),
        var_names: (0..spec.n_genes).map(|g| format!("gene_{g}")).collect(),
        var_ids: Vec::new(),
        x_stats: None,
        raw: None,
    }
}

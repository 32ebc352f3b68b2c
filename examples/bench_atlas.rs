//! Atlas matrix benchmark (issue 7): for each stored-value encoding (q8, f16, f32) — file size
//! against the source h5ad, parse time against reading the h5ad (same process, ratios), and the
//! accuracy of the shipped model (instant annotation) on the symphony-loco folds
//! (../shared/data/README.md): atlas = two chemistries, query = the third.
//!   cargo run --features ndarray,cli --example bench_atlas   (the dev profile is optimised: Cargo.toml)
//! Writes bench/results/atlas_matrix.json. With `package-10k`: the 10k × 2000 package size case only.
use std::time::Instant;

use sclabel::atlas::build::{build_atlas, AtlasOptions};
use sclabel::atlas::matrix::{AtlasMatrix, ValueEncoding};
use sclabel::backend::{cpu, BackendRequest};
use sclabel::block_on;
use sclabel::data::anndata::AnnData;
use sclabel::io::h5ad::read_h5ad;
use sclabel::scnym::api::{predict_adata, prepare_input};
use sclabel::scnym::predict::PredictOptions;
use sclabel::train::progress::Silent;
use serde_json::json;

fn strings(ad: &AnnData, key: &str) -> Vec<String> {
    ad.obs.get(key).unwrap().to_strings().into_iter().map(|v| v.unwrap_or_default()).collect()
}

/// Median of `reps` timings of `f`, in seconds.
fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            std::hint::black_box(f());
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[reps / 2]
}

/// The size target's case: 10k cells × 2000 genes. pbmc3k's labelled cells resampled to 10,000
/// (a random cell's counts, each gene Poisson around it: real sparsity and library sizes), ln(CPM+1)
/// over all genes, then the 2000 highly variable genes of the pbmc3k-audit task. Writes the package
/// to bench/tmp/atlas-10k/ (for bench/atlas_browser.mjs) and its sizes to
/// bench/results/atlas_package_10k.json.
fn package_10k(device: &burn::prelude::Device) {
    use rand::{RngExt, SeedableRng};
    use rand_distr::{Distribution, Poisson};
    use sclabel::data::align::align_genes;
    use sclabel::data::anndata::{Column, ObsTable};
    use sclabel::data::matrix::CsrMatrix;
    let root = env!("CARGO_MANIFEST_DIR");
    let src = read_h5ad(&std::fs::read(format!("{root}/../shared/data/pbmc3k_raw_labeled.h5ad")).unwrap(), "pbmc3k").unwrap();
    let hvg: Vec<String> = std::fs::read_to_string(format!("{root}/../shared/reference-outputs/annotatability-pbmc3k-audit/pbmc3k_hvg2000.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let labels = strings(&src, "cell_type");
    let cells: Vec<usize> = (0..src.n_obs()).filter(|&i| labels[i] != "unlabeled_QCfail").collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let n = 10_000;
    let (mut indptr, mut indices, mut data, mut obs) = (vec![0u64], Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let c = cells[rng.random_range(0..cells.len())];
        let (idx, val) = src.x.row(c);
        for (&g, &v) in idx.iter().zip(val) {
            let k: f64 = Poisson::new(v as f64).unwrap().sample(&mut rng);
            if k > 0.0 {
                indices.push(g);
                data.push(k as f32);
            }
        }
        indptr.push(indices.len() as u64);
        obs.push(labels[c].clone());
    }
    let counts = CsrMatrix::new(n, src.n_vars(), indptr, indices, data).unwrap();
    let (x, _) = prepare_input(&counts, &src.var_names, true, "resampled").unwrap();
    let (x, _) = align_genes(&x, &src.var_names, &hvg).unwrap();
    let ad = AnnData {
        x,
        obs: ObsTable { columns: vec![("cell_type".into(), Column::Strings(obs))] },
        obs_names: (0..n).map(|i| format!("cell{i}")).collect(),
        var_names: hvg,
        var_ids: Vec::new(),
        x_stats: None,
        raw: None,
    };
    let options = AtlasOptions { id: "pbmc3k-resampled-10k".into(), config: Some(json!({ "n_epochs": 20 })), ..Default::default() };
    let package = block_on(build_atlas(&ad, &options, device, &mut Silent)).unwrap();
    let dir = format!("{root}/bench/tmp/atlas-10k");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/{}", sclabel::atlas::build::MATRIX_FILE), &package.matrix).unwrap();
    std::fs::write(format!("{dir}/{}", sclabel::atlas::build::MODEL_FILE), &package.model).unwrap();
    let manifest = serde_json::to_string_pretty(&package.manifest).unwrap();
    std::fs::write(format!("{dir}/atlas.json"), &manifest).unwrap();
    let total = package.matrix.len() + package.model.len() + manifest.len();
    let out = json!({
        "case": "pbmc3k resampled to 10,000 cells × 2000 HVG, q8 values, default scNym architecture",
        "cells": n, "genes": ad.n_vars(), "nnz": ad.x.data.len(),
        "matrix_bytes": package.matrix.len(), "model_bytes": package.model.len(), "manifest_bytes": manifest.len(),
        "package_bytes": total, "target_bytes": 5_000_000, "within_target": total <= 5_000_000,
    });
    println!("{out}");
    std::fs::write(format!("{root}/bench/results/atlas_package_10k.json"), serde_json::to_string_pretty(&out).unwrap()).unwrap();
}

fn main() {
    let device = cpu(BackendRequest::Cpu, "bench").unwrap().device;
    if std::env::args().any(|a| a == "package-10k") {
        return package_10k(&device);
    }
    let encodings = [("q8", ValueEncoding::Q8), ("f16", ValueEncoding::F16), ("f32", ValueEncoding::F32)];
    let mut sizes = Vec::new();
    for file in ["pbmc_symphony_3chemistries.h5ad", "pbmc3k_raw_labeled.h5ad", "pbmc8k_200hvg.h5ad"] {
        let path = format!("{}/../shared/data/{file}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e} (benchmarks need ../shared/data)"));
        let h5ad_secs = time(5, || read_h5ad(&bytes, file).unwrap());
        let ad = read_h5ad(&bytes, file).unwrap();
        let (x, _) = prepare_input(&ad.x, &ad.var_names, true, "reference").unwrap();
        let m = AtlasMatrix::from_reference(&ad, &x, &ad.var_names, "cell_type", None, None, 0).unwrap();
        for (name, enc) in encodings {
            let out = m.to_bytes(enc).unwrap();
            let parse_secs = time(5, || AtlasMatrix::from_bytes(&out).unwrap());
            sizes.push(json!({
                "file": file, "cells": ad.n_obs(), "genes": ad.n_vars(), "nnz": x.data.len(), "values": name,
                "h5ad_bytes": bytes.len(), "matrix_bytes": out.len(), "size_ratio": out.len() as f64 / bytes.len() as f64,
                "bytes_per_stored_value": out.len() as f64 / x.data.len() as f64,
                "parse_vs_h5ad_read": parse_secs / h5ad_secs,
            }));
            println!("{}", sizes.last().unwrap());
        }
    }

    let path = format!("{}/../shared/data/pbmc_symphony_3chemistries.h5ad", env!("CARGO_MANIFEST_DIR"));
    let ad = read_h5ad(&std::fs::read(&path).unwrap(), "symphony").unwrap();
    let donor = strings(&ad, "donor");
    let truth = strings(&ad, "cell_type");
    let mut folds = Vec::new();
    let mut folds_names: Vec<String> = donor.clone();
    folds_names.sort();
    folds_names.dedup();
    for fold in &folds_names {
        let r: Vec<usize> = (0..ad.n_obs()).filter(|&i| &donor[i] != fold).collect();
        let q: Vec<usize> = (0..ad.n_obs()).filter(|&i| &donor[i] == fold).collect();
        let (reference, query) = (ad.select_obs(&r).unwrap(), ad.select_obs(&q).unwrap());
        let mut row = json!({ "fold": fold, "query_cells": q.len() });
        for (name, enc) in encodings {
            let options = AtlasOptions { id: "symphony".into(), normalize: true, domain_key: Some("donor".into()), values: enc, ..Default::default() };
            let package = block_on(build_atlas(&reference, &options, &device, &mut Silent)).unwrap();
            let model = sclabel::scnym::bundle::ScnymModel::from_bytes(&package.model, &device).unwrap();
            let (pred, _) =
                block_on(predict_adata(&model, &query, &PredictOptions { normalize: true, use_raw: false, ..Default::default() }, &device, &mut Silent))
                    .unwrap();
            let acc = pred.labels.iter().zip(q.iter()).filter(|(p, &i)| **p == truth[i]).count() as f64 / q.len() as f64;
            row[name] = json!(acc);
        }
        println!("{row}");
        folds.push(row);
    }
    let out = json!({ "sizes": sizes, "symphony_loco_instant_accuracy": folds });
    let dir = format!("{}/bench/results", env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/atlas_matrix.json"), serde_json::to_string_pretty(&out).unwrap()).unwrap();
}

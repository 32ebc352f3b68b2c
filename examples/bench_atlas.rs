//! Atlas matrix benchmark (issue 7): for each stored-value encoding (q8, f16, f32) — file size
//! against the source h5ad, parse time against reading the h5ad (same process, ratios), and the
//! accuracy of the shipped model (instant annotation) on the symphony-loco folds
//! (../shared/data/README.md): atlas = two chemistries, query = the third.
//!   cargo run --features ndarray,cli --example bench_atlas   (the dev profile is optimised: Cargo.toml)
//! Writes bench/results/atlas_matrix.json.
use std::time::Instant;

use sclabel::atlas::build::{build_atlas, AtlasOptions};
use sclabel::atlas::matrix::{AtlasMatrix, ValueEncoding};
use sclabel::backend::{cpu, BackendRequest};
use sclabel::block_on;
use sclabel::data::anndata::AnnData;
use sclabel::data::h5ad::read_h5ad;
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

fn main() {
    let device = cpu(BackendRequest::Cpu, "bench").unwrap().device;
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
            let (pred, _) = block_on(predict_adata(&model, &query, true, false, &PredictOptions::default(), &device, &mut Silent)).unwrap();
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

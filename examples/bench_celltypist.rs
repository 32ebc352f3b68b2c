//! CellTypist prediction and majority voting at real size: an `.h5ad` of N cells × all genes
//! (e.g. scripts/make-big-h5ad.py's 100k × 32,738 PBMC resample) annotated with a fixture model
//! (tests/fixtures/celltypist/pbmc3k_lr.pkl), without and with majority voting, on one thread
//! (RAYON_NUM_THREADS=1 for the one-core figure). Times are reported as ratios to the prediction
//! alone in the same process, with the absolute seconds beside them. Writes
//! bench/results/celltypist_<cells>.json.
//!   cargo run --release --features ndarray --example bench_celltypist -- /tmp/big100k.h5ad
use std::time::Instant;

use sclabel::block_on;
use sclabel::celltypist::{annotate, CelltypistModel, CelltypistOptions};
use sclabel::io::h5ad::read_h5ad;
use sclabel::train::progress::Silent;
use serde_json::json;

fn main() {
    let path = std::env::args().nth(1).expect("usage: bench_celltypist FILE.h5ad");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let model_path = root.join("tests/fixtures/celltypist/pbmc3k_lr.pkl");
    let model = CelltypistModel::from_bytes(&std::fs::read(&model_path).unwrap(), "pbmc3k_lr.pkl").unwrap();
    let t = Instant::now();
    let data = read_h5ad(&std::fs::read(&path).unwrap(), &path).unwrap();
    let load = t.elapsed().as_secs_f64();
    let time = |options: &CelltypistOptions| {
        let t = Instant::now();
        let (p, _) = block_on(annotate(&model, &data, options, &mut Silent)).unwrap();
        (t.elapsed().as_secs_f64(), p)
    };
    let (predict, p) = time(&CelltypistOptions::default());
    eprintln!("{} cells × {} genes: loaded in {load:.1} s; prediction {predict:.2} s", data.n_obs(), data.n_vars());
    let (voting, v) = time(&CelltypistOptions { majority_voting: true, ..Default::default() });
    let clustering = v.clustering.clone().unwrap();
    eprintln!("with majority voting: {voting:.1} s ({:.1}× the prediction alone); {clustering}", voting / predict);
    let changed = v.majority_voting.as_ref().unwrap().iter().zip(&p.predicted_labels).filter(|(a, b)| a != b).count();
    let out = json!({
        "file": path, "n_cells": data.n_obs(), "n_genes": data.n_vars(), "model": "pbmc3k_lr.pkl (10 types × 300 genes)",
        "threads": std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into()),
        "seconds": {"load": load, "predict": predict, "predict_and_majority_voting": voting},
        "majority_voting_over_predict": voting / predict,
        "clustering": clustering, "labels_changed_by_voting": changed,
        "command": "cargo run --release --features ndarray --example bench_celltypist -- FILE.h5ad",
    });
    let file = root.join(format!("bench/results/celltypist_{}.json", data.n_obs()));
    std::fs::write(&file, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    eprintln!("wrote {}", file.display());
}

//! scNym benchmarks (../shared/data/README.md): `symphony-loco` (leave one chemistry out, three
//! folds), `pancreas-novel` (Xin → Wang with novel types) and `speed` (seconds per epoch on
//! synthetic cells resampled from Symphony, 1767 genes, 10k and 100k cells). The two tasks also
//! report CellTypist's majority voting of scNym's labels (sclabel's over-clustering of the query).
//! Writes JSON under
//! bench/results/.
//!   cargo run --example bench_scnym -- [symphony-loco] [pancreas-novel] [speed [--cells 10000] [--no-baseline]] [--seeds N]
//! For one-thread timings run with RAYON_NUM_THREADS=1.
use std::collections::BTreeMap;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Poisson};
use sclabel::audit::categories::auroc;
use sclabel::backend::{cpu, BackendRequest};
use sclabel::block_on;
use sclabel::cluster::{majority_vote, over_cluster, OverClusterOptions};
use sclabel::data::anndata::{AnnData, Column, ObsTable};
use sclabel::data::matrix::CsrMatrix;
use sclabel::data::normalize::{rescale_to_log, TargetScale};
use sclabel::scnym::api::{predict_adata, train_transfer, TransferOptions};
use sclabel::scnym::predict::PredictOptions;
use sclabel::train::progress::{FnObserver, Silent};
use serde_json::json;

#[path = "common/mod.rs"]
mod common;
use common::{load, scores};

fn strings(ad: &AnnData, key: &str) -> Vec<String> {
    ad.obs.get(key).unwrap().to_strings().into_iter().map(|v| v.unwrap_or_default()).collect()
}

fn subset(ad: &AnnData, rows: &[usize]) -> AnnData {
    ad.select_obs(rows).unwrap()
}

fn transfer(reference: &AnnData, query: &AnnData, options: &TransferOptions) -> (Vec<String>, Vec<f32>, f64, serde_json::Value) {
    let device = cpu(BackendRequest::Cpu, "bench").unwrap().device;
    let t = Instant::now();
    let (model, warnings) = block_on(train_transfer(reference, Some(query), options, &device, &mut Silent)).unwrap();
    let secs = t.elapsed().as_secs_f64();
    let (pred, _) = block_on(predict_adata(
        &model,
        query,
        &PredictOptions { normalize: options.normalize, use_raw: false, embedding: false, ..Default::default() },
        &device,
        &mut Silent,
    ))
    .unwrap();
    let m = model.metrics.unwrap();
    let info = json!({"best_epoch": m.best_epoch, "epochs_run": m.epochs.len(), "mode": m.mode, "n_genes": model.genes.len(), "warnings": warnings});
    (pred.labels, pred.confidence, secs, info)
}

/// CellTypist's majority voting of `labels` (sclabel's over-clustering of the query, default
/// options), and the number of clusters.
fn voted(query: &AnnData, labels: &[String]) -> (Vec<String>, usize) {
    let (x, names) = query.matrix(false).unwrap();
    let stats = query.value_stats(false).unwrap();
    let oc = block_on(over_cluster(x, names, &stats, &OverClusterOptions::default(), &mut Silent)).unwrap();
    (majority_vote(labels, &oc.clusters, 0.0).unwrap(), oc.n_clusters)
}

fn config(seed: u64) -> serde_json::Value {
    json!({ "seed": seed })
}

fn symphony_loco(seeds: u64) -> serde_json::Value {
    let ad = load("pbmc_symphony_3chemistries.h5ad");
    let donor = strings(&ad, "donor");
    let mut folds = Vec::new();
    for fold in ["3pv1", "3pv2", "5p"] {
        for seed in 0..seeds {
            let r: Vec<usize> = (0..ad.n_obs()).filter(|&i| donor[i] != fold).collect();
            let q: Vec<usize> = (0..ad.n_obs()).filter(|&i| donor[i] == fold).collect();
            let (reference, query) = (subset(&ad, &r), subset(&ad, &q));
            let options = TransferOptions {
                label_key: "cell_type".into(),
                domain_key: Some("donor".into()),
                preset: "no_new_identity".into(),
                normalize: true,
                config: Some(config(seed)),
                ..Default::default()
            };
            let (pred, _, secs, info) = transfer(&reference, &query, &options);
            let (acc, kappa, f1) = scores(&strings(&query, "cell_type"), &pred);
            let (vote, n_clusters) = voted(&query, &pred);
            let (v_acc, v_kappa, v_f1) = scores(&strings(&query, "cell_type"), &vote);
            eprintln!("symphony-loco {fold} seed {seed}: accuracy {acc:.4} kappa {kappa:.4} macro-F1 {f1:.4} ({secs:.1} s); majority voting ({n_clusters} clusters): {v_acc:.4} {v_kappa:.4} {v_f1:.4}");
            folds.push(
                json!({"fold": fold, "seed": seed, "n_query": q.len(), "accuracy": acc, "kappa": kappa, "macro_f1": f1, "train_seconds": secs, "info": info,
                "majority_voting": {"n_clusters": n_clusters, "accuracy": v_acc, "kappa": v_kappa, "macro_f1": v_f1}}),
            );
        }
    }
    let mean = |k: &str| folds.iter().map(|f| f[k].as_f64().unwrap()).sum::<f64>() / folds.len() as f64;
    let voted_mean = |k: &str| folds.iter().map(|f| f["majority_voting"][k].as_f64().unwrap()).sum::<f64>() / folds.len() as f64;
    json!({"task": "symphony-loco", "preset": "no_new_identity", "folds": folds,
           "mean": {"accuracy": mean("accuracy"), "kappa": mean("kappa"), "macro_f1": mean("macro_f1")},
           "majority_voting_mean": {"accuracy": voted_mean("accuracy"), "kappa": voted_mean("kappa"), "macro_f1": voted_mean("macro_f1")},
           "reference_scnym_0_4": {"accuracy": 0.940, "kappa": 0.924, "macro_f1": 0.772}})
}

/// X as the task definitions (../shared/data/README.md) normalise log data of another scale:
/// expm1, each cell to 1e6, log1p — the natural-log inverse whatever the file's base, as the
/// reference runs did. (The pancreas files are log2: sclabel's own `normalize` inverts them with
/// 2^x − 1, the benchmark's second set of runs.)
fn task_normalized(ad: &AnnData) -> AnnData {
    AnnData { x: rescale_to_log(&ad.x, Some(1.0), TargetScale::Cpm).unwrap(), ..ad.clone() }
}

fn pancreas_novel(seeds: u64) -> serde_json::Value {
    let (xin, wang) = (load("pancreas_xin.h5ad"), load("pancreas_wang.h5ad"));
    let (xin_task, wang_task) = (task_normalized(&xin), task_normalized(&wang));
    let shared = ["alpha", "beta", "gamma", "delta"];
    let truth = strings(&wang, "cell_type");
    let is_shared: Vec<bool> = truth.iter().map(|t| shared.contains(&t.as_str())).collect();
    let novel: Vec<bool> = is_shared.iter().map(|s| !s).collect();
    let mut result = json!({"task": "pancreas-novel", "preset": "new_identity_discovery",
                            "reference_scnym_0_4": {"shared_accuracy": 1.0, "novel_auroc": 0.986}});
    // the task's normalisation (what the targets were measured with), then sclabel's own
    for (key, (reference, query, normalize)) in [("task_normalization", (&xin_task, &wang_task, false)), ("sclabel_normalize", (&xin, &wang, true))] {
        let mut runs = Vec::new();
        for seed in 0..seeds {
            let options = TransferOptions {
                label_key: "cell_type".into(),
                preset: "new_identity_discovery".into(),
                normalize,
                config: Some(config(seed)),
                ..Default::default()
            };
            let (pred, conf, secs, info) = transfer(reference, query, &options);
            let hits = (0..truth.len()).filter(|&i| is_shared[i] && pred[i] == truth[i]).count();
            let acc = hits as f64 / is_shared.iter().filter(|&&s| s).count() as f64;
            let auc = auroc(&conf.iter().map(|&c| 1.0 - c as f64).collect::<Vec<_>>(), &novel).expect("novel and shared cells");
            // Voting moves labels, not confidences: the novel-type AUROC stays as it is.
            let (vote, n_clusters) = voted(query, &pred);
            let v_acc = (0..truth.len()).filter(|&i| is_shared[i] && vote[i] == truth[i]).count() as f64 / is_shared.iter().filter(|&&s| s).count() as f64;
            eprintln!("pancreas-novel ({key}) seed {seed}: shared-type accuracy {acc:.4}, novel AUROC {auc:.4} ({secs:.1} s); majority voting ({n_clusters} clusters): {v_acc:.4}");
            runs.push(json!({"seed": seed, "shared_accuracy": acc, "novel_auroc": auc, "train_seconds": secs, "info": info,
                "majority_voting": {"n_clusters": n_clusters, "shared_accuracy": v_acc}}));
        }
        let mean = |k: &str| runs.iter().map(|f| f[k].as_f64().unwrap()).sum::<f64>() / runs.len() as f64;
        let voted_acc = runs.iter().map(|f| f["majority_voting"]["shared_accuracy"].as_f64().unwrap()).sum::<f64>() / runs.len() as f64;
        result[key] = json!({"runs": runs, "mean": {"shared_accuracy": mean("shared_accuracy"), "novel_auroc": mean("novel_auroc")},
                             "majority_voting_mean": {"shared_accuracy": voted_acc}});
    }
    result
}

/// n cells resampled from Symphony: pick a cell, Poisson counts around its profile at a
/// library size of 2500, then ln(CPM+1). 80% keep their label, 20% are Unlabeled (domain B).
fn resampled(src: &AnnData, n: usize, seed: u64) -> AnnData {
    let mut rng = StdRng::seed_from_u64(seed);
    let labels = strings(src, "cell_type");
    let (mut indptr, mut indices, mut data) = (vec![0u64], Vec::new(), Vec::new());
    let mut obs_labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = rng.random_range(0..src.n_obs());
        let (idx, val) = src.x.row(c);
        let total: f64 = val.iter().map(|&v| (v as f64).exp_m1()).sum();
        for (&g, &v) in idx.iter().zip(val) {
            let lambda = (v as f64).exp_m1() / total * 2500.0;
            let k: f64 = Poisson::new(lambda.max(1e-9)).unwrap().sample(&mut rng);
            if k > 0.0 {
                indices.push(g);
                data.push(k as f32);
            }
        }
        indptr.push(indices.len() as u64);
        obs_labels.push(if i % 5 == 4 { "Unlabeled".to_string() } else { labels[c].clone() });
    }
    let x = CsrMatrix::new(n, src.n_vars(), indptr, indices, data).unwrap();
    AnnData {
        x,
        obs: ObsTable { columns: vec![("cell_type".into(), Column::Strings(obs_labels))] },
        obs_names: (0..n).map(|i| format!("cell{i}")).collect(),
        var_names: src.var_names.clone(),
        var_ids: Vec::new(),
        x_stats: None,
        raw: None,
    }
}

/// Seconds per epoch of one training run (the first epoch is warm-up when there are more).
fn epoch_seconds(ad: &AnnData, epochs: usize, host_network: bool) -> serde_json::Value {
    let options = TransferOptions {
        label_key: "cell_type".into(),
        preset: "default".into(),
        normalize: true,
        config: Some(json!({"n_epochs": epochs, "seed": 0, "host_network": host_network})),
        ..Default::default()
    };
    let device = cpu(BackendRequest::Cpu, "bench").unwrap().device;
    let mut marks: Vec<Instant> = Vec::new();
    let mut last_epoch = usize::MAX;
    let mut obs = FnObserver(|p: &sclabel::train::progress::Progress| {
        if p.epoch != last_epoch {
            marks.push(Instant::now());
            last_epoch = p.epoch;
        }
        Ok(())
    });
    let t = Instant::now();
    let (model, _) = block_on(train_transfer(ad, None, &options, &device, &mut obs)).unwrap();
    let total = t.elapsed().as_secs_f64();
    // Epoch k runs from its first progress event to the next epoch's first.
    let per: Vec<f64> = marks.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    let steady = if per.is_empty() { total / epochs as f64 } else { per.iter().sum::<f64>() / per.len() as f64 };
    let m = model.metrics.unwrap();
    json!({"seconds_per_epoch": steady, "epoch_seconds": per, "total_seconds": total, "steps_per_epoch": m.n_train / 256, "mode": m.mode, "n_train": m.n_train, "n_unlabeled": m.n_unlabeled})
}

fn speed(sizes: &[usize], baseline: bool) -> serde_json::Value {
    let src = load("pbmc_symphony_3chemistries.h5ad");
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    let mut out = Vec::new();
    for (n, epochs) in [(10_000usize, 3usize), (100_000, 2)].into_iter().filter(|(n, _)| sizes.contains(n)) {
        let ad = resampled(&src, n, 1);
        let mut run = epoch_seconds(&ad, epochs, true);
        let steady = run["seconds_per_epoch"].as_f64().unwrap();
        eprintln!("speed {n} cells: {steady:.2} s/epoch ({} steps/epoch, mode {}, threads {threads})", run["steps_per_epoch"], run["mode"]);
        // Baseline in this process: the whole step in burn's autodiff, the first layer a dense matmul
        // (10k only: time).
        if n == 10_000 && baseline {
            let dense = epoch_seconds(&ad, epochs, false)["seconds_per_epoch"].as_f64().unwrap();
            eprintln!("  burn autodiff, dense first layer (baseline): {dense:.2} s/epoch → host network {:.2}× faster", dense / steady);
            run["burn_seconds_per_epoch"] = json!(dense);
            run["host_network_speedup"] = json!(dense / steady);
        }
        run["cells"] = json!(n);
        out.push(run);
    }
    json!({"task": "speed", "genes": 1767, "threads": threads, "backend": "flex (CPU), native", "runs": out,
           "reference_scnym_0_4_one_torch_thread": {"10000": 1.8, "100000": 18.0}})
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seeds = args.iter().position(|a| a == "--seeds").and_then(|i| args.get(i + 1)).map(|s| s.parse().unwrap()).unwrap_or(1u64);
    let want = |t: &str| args.is_empty() || args.iter().any(|a| a == t);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    std::fs::create_dir_all(&dir).unwrap();
    let mut results = BTreeMap::new();
    if want("symphony-loco") {
        results.insert("symphony-loco", symphony_loco(seeds));
    }
    if want("pancreas-novel") {
        results.insert("pancreas-novel", pancreas_novel(seeds));
    }
    if want("speed") {
        // --cells N: one of the two sizes only; --no-baseline: skip the dense baseline (profiling).
        let sizes = match args.iter().position(|a| a == "--cells").and_then(|i| args.get(i + 1)) {
            Some(n) => vec![n.parse().unwrap()],
            None => vec![10_000, 100_000],
        };
        results.insert("speed", speed(&sizes, !args.iter().any(|a| a == "--no-baseline")));
    }
    for (name, v) in results {
        let path = dir.join(format!("scnym_{}.json", name.replace('-', "_")));
        std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        eprintln!("wrote {}", path.display());
    }
}

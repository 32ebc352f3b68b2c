//! Annotatability benchmark `pbmc3k-audit` (../shared/data/README.md) and fidelity against the
//! reference outputs in ../shared/reference-outputs/annotatability-pbmc3k-audit: the same cells,
//! the same 2000 genes and the same 264 flipped labels.
//!   cargo run --features ndarray,cli --example bench_audit -- [--seeds N]
//! Prints and writes bench/results/audit_pbmc3k.json: AUROC of (1 − confidence) for the flipped
//! cells per seed, wall time of each 50-epoch run, Spearman correlation of confidence with the
//! reference's (noisy and clean runs) and the top-20 genes by conf_score_high / conf_score_low with
//! their overlap with the reference's. Run with RAYON_NUM_THREADS=1 for one-thread timings
//! (written to audit_pbmc3k_1thread.json). With `--own-hvg` the 2000 genes are sclabel's own
//! selection (`data::hvg`, seurat on the same ln(CP10k+1) data) instead of the reference's list
//! (written to audit_pbmc3k_own_hvg.json).
use std::collections::HashMap;
use std::time::Instant;

use sclabel::audit::categories::{auroc, mid_ranks};
use sclabel::audit::dynamics::{follow_training_dynamics, Dynamics};
use sclabel::audit::genes::{gene_scores, GeneScoreOptions, GeneScores};
use sclabel::backend::{cpu, cpu_of, Backend, BackendRequest};
use sclabel::block_on;
use sclabel::data::align::align_genes;
use sclabel::data::hvg::{highly_variable_genes, HvgOptions};
use sclabel::data::matrix::CsrMatrix;
use sclabel::data::normalize::{to_log_normalized, TargetScale};
use sclabel::io::h5ad::read_h5ad;
use sclabel::train::classifier::TrainOptions;
use sclabel::train::progress::Silent;
use serde_json::json;

fn shared(path: &str) -> String {
    format!("{}/../shared/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn read_csv(path: &str) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(shared(path)).unwrap_or_else(|e| panic!("{path}: {e} (the benchmark needs ../shared)"));
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    lines.map(|l| header.iter().cloned().zip(l.split(',').map(str::to_string)).collect()).collect()
}

fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (mid_ranks(a), mid_ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let (va, vb): (f64, f64) = (ra.iter().map(|x| (x - ma).powi(2)).sum(), rb.iter().map(|y| (y - mb).powi(2)).sum());
    cov / (va * vb).sqrt()
}

struct Task {
    x: CsrMatrix,
    genes: Vec<String>,
    classes: Vec<String>,
    true_codes: Vec<i32>,
    given_codes: Vec<i32>,
    flipped: Vec<bool>,
    ref_noisy_conf: Vec<f64>,
    ref_clean_conf: Vec<f64>,
}

fn load_task(own_hvg: bool) -> Task {
    let file = "pbmc3k_raw_labeled.h5ad";
    let bytes = std::fs::read(shared(&format!("data/{file}"))).expect("../shared/data/pbmc3k_raw_labeled.h5ad");
    let ad = read_h5ad(&bytes, file).unwrap();
    let dir = "reference-outputs/annotatability-pbmc3k-audit";
    let noisy = read_csv(&format!("{dir}/annotatability_noisy_run.csv"));
    let clean = read_csv(&format!("{dir}/annotatability_clean_run.csv"));
    let hvg: Vec<String> = std::fs::read_to_string(shared(&format!("{dir}/pbmc3k_hvg2000.txt"))).unwrap().lines().map(str::to_string).collect();
    // The reference's cells, in its order (the file without unlabeled_QCfail).
    let row_of: HashMap<&str, usize> = ad.obs_names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let rows: Vec<usize> = noisy.iter().map(|r| row_of[r["cell"].as_str()]).collect();
    let sub = ad.select_obs(&rows).unwrap();
    // ln(CP10k + 1) over all genes, then the 2000 genes (scanpy's order of operations).
    let (log, _) = to_log_normalized(&sub.x, &sub.var_names, TargetScale::Cp10k).unwrap();
    let hvg = if own_hvg {
        let rows: Vec<usize> = (0..log.n_rows).collect();
        let h = highly_variable_genes(&log, &rows, None, &HvgOptions::default()).unwrap();
        let listed: std::collections::HashSet<&String> = hvg.iter().collect();
        let own: Vec<String> = h.selected.iter().map(|&j| sub.var_names[j].clone()).collect();
        println!("own HVG selection: {} genes, {} in the reference's list", own.len(), own.iter().filter(|g| listed.contains(g)).count());
        own
    } else {
        hvg
    };
    let (x, _) = align_genes(&log, &sub.var_names, &hvg).unwrap();
    let mut classes: Vec<String> = noisy.iter().map(|r| r["true"].clone()).collect();
    classes.sort();
    classes.dedup();
    let code = |s: &str| classes.iter().position(|c| c == s).unwrap() as i32;
    Task {
        true_codes: noisy.iter().map(|r| code(&r["true"])).collect(),
        given_codes: noisy.iter().map(|r| code(&r["given_label"])).collect(),
        flipped: noisy.iter().map(|r| r["corrupted"] == "True").collect(),
        ref_noisy_conf: noisy.iter().map(|r| r["conf"].parse().unwrap()).collect(),
        ref_clean_conf: clean.iter().map(|r| r["conf"].parse().unwrap()).collect(),
        x,
        genes: hvg,
        classes,
    }
}

fn run(task: &Task, codes: &[i32], seed: u64) -> (Dynamics, f64) {
    run_with(task, codes, seed, true)
}

/// `host_network: false` is the baseline the host network is measured against: burn's autodiff
/// and optimiser with the dense first layer.
fn run_with(task: &Task, codes: &[i32], seed: u64, host_network: bool) -> (Dynamics, f64) {
    // SCLABEL_CPU=ndarray compares burn's older CPU backend.
    let device = match std::env::var("SCLABEL_CPU").as_deref() {
        Ok("ndarray") => cpu_of(Backend::Ndarray, BackendRequest::Cpu, "bench").unwrap().device,
        _ => cpu(BackendRequest::Cpu, "bench").unwrap().device,
    };
    let rows: Vec<usize> = (0..task.x.n_rows).collect();
    let options = TrainOptions { n_epochs: 50, seed, host_network, ..TrainOptions::default() };
    let t = Instant::now();
    let out = block_on(follow_training_dynamics(&task.x, codes, task.classes.len(), &rows, &[codes], &options, &device, &mut Silent)).unwrap();
    (out.dynamics.into_iter().next().unwrap(), t.elapsed().as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n_seeds: u64 = args.iter().position(|a| a == "--seeds").map_or(3, |i| args[i + 1].parse().unwrap());
    let own_hvg = args.iter().any(|a| a == "--own-hvg");
    let task = load_task(own_hvg);
    println!(
        "pbmc3k-audit: {} cells × {} genes ({:.0} stored values per cell), {} flipped",
        task.x.n_rows,
        task.x.n_cols,
        task.x.data.len() as f64 / task.x.n_rows as f64,
        task.flipped.iter().filter(|&&f| f).count()
    );

    let mut per_seed = Vec::new();
    for seed in 0..n_seeds {
        let (d, secs) = run(&task, &task.given_codes, seed);
        let score: Vec<f64> = d.confidence.iter().map(|&c| 1.0 - c as f64).collect();
        let a = auroc(&score, &task.flipped).unwrap();
        let conf: Vec<f64> = d.confidence.iter().map(|&c| c as f64).collect();
        let rho = spearman(&conf, &task.ref_noisy_conf);
        println!("seed {seed}: AUROC {a:.4}, {secs:.2} s, Spearman(conf, reference) {rho:.4}");
        per_seed.push(json!({"seed": seed, "auroc": a, "seconds": secs, "spearman_conf_vs_reference": rho}));
    }
    // Same run through burn's autodiff with the dense first layer, in this process: the speed-up
    // of the host network (sparse first layer, direct matrix products).
    let (_, dense_secs) = run_with(&task, &task.given_codes, 0, false);
    let speedup = dense_secs / per_seed[0]["seconds"].as_f64().unwrap();
    println!("burn autodiff, dense first layer (baseline): {dense_secs:.2} s → host network {speedup:.2}× faster");
    let mean = |k: &str| per_seed.iter().map(|v| v[k].as_f64().unwrap()).sum::<f64>() / per_seed.len() as f64;

    // Clean run: fidelity of confidence and the gene rankings.
    let (clean, clean_secs) = run(&task, &task.true_codes, 0);
    let conf: Vec<f64> = clean.confidence.iter().map(|&c| c as f64).collect();
    let rho_clean = spearman(&conf, &task.ref_clean_conf);
    let t = Instant::now();
    let scores = gene_scores(&task.x, &task.genes, &clean.confidence, &GeneScoreOptions::default()).unwrap();
    let gene_secs = t.elapsed().as_secs_f64();
    let top = |s: &[f32]| GeneScores::top(s, 20).into_iter().map(|g| scores.genes[g].clone()).collect::<Vec<_>>();
    let (high, low) = (top(&scores.conf_score_high), top(&scores.conf_score_low));
    let reference = read_csv("reference-outputs/annotatability-pbmc3k-audit/rank_genes_conf_top20.csv");
    let ref_high: Vec<String> = reference.iter().map(|r| r["gene_conf_score_high"].clone()).collect();
    let ref_low: Vec<String> = reference.iter().map(|r| r["gene_conf_score_low"].clone()).collect();
    let overlap = |a: &[String], b: &[String]| a.iter().filter(|g| b.contains(g)).count();
    println!("clean run: {clean_secs:.2} s, Spearman(conf, reference) {rho_clean:.4}; gene scores {gene_secs:.3} s");
    println!("top conf_score_high: {} (overlap with reference {}/20)", high.join(" "), overlap(&high, &ref_high));
    println!("top conf_score_low:  {} (overlap with reference {}/20)", low.join(" "), overlap(&low, &ref_low));
    println!("mean over {n_seeds} seeds: AUROC {:.4}, {:.2} s per 50-epoch run", mean("auroc"), mean("seconds"));

    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into());
    let result = json!({
        "task": "pbmc3k-audit",
        "genes": if own_hvg { "sclabel's own 2000 HVGs (seurat on ln(CP10k+1))" } else { "the reference's 2000 HVGs (scanpy)" },
        "setup": "reference cells and flipped labels; 50 epochs, SGD lr 1e-3 momentum 0.9, balanced sampling, batch 256, 3 layers; CPU backend",
        "threads": threads,
        "noisy_runs": per_seed,
        "mean_auroc": mean("auroc"),
        "mean_seconds": mean("seconds"),
        "mean_spearman_conf_vs_reference": mean("spearman_conf_vs_reference"),
        "burn_dense_seconds_seed0": dense_secs,
        "host_network_speedup_vs_burn_dense": speedup,
        "clean_run": {"seconds": clean_secs, "spearman_conf_vs_reference": rho_clean},
        "gene_scores_seconds": gene_secs,
        "top20_conf_score_high": high, "top20_conf_score_high_overlap": overlap(&high, &ref_high),
        "top20_conf_score_low": low, "top20_conf_score_low_overlap": overlap(&low, &ref_low),
        "reference": {"auroc": 0.985, "seconds_one_thread": 26.5},
    });
    let suffix = if own_hvg {
        "_own_hvg"
    } else if threads == "1" {
        "_1thread"
    } else {
        ""
    };
    let out = format!("{}/bench/results/audit_pbmc3k{suffix}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::write(&out, serde_json::to_string_pretty(&result).unwrap()).unwrap();
    println!("wrote {out}");
}

//! Scale benchmark of the trainability-aware graph (`audit::graph`) and of the CSR PCA
//! (`audit::pca`) on synthetic data:
//!   cargo run --features ndarray,cli --example bench_graph -- [--cells N] [--backend flex|ndarray]
//!       [--block B] [--no-pca] [--pca-cells N] [--pca-genes G]
//! Graph: N cells (default 100 000) in clustered Gaussian blobs in 50 dimensions, uniform random
//! confidences, k = 15, α = 0.9, on a CPU backend. PCA: N × G (default 100 000 × 2000) CSR at ~10 %
//! density, 50 components. Prints and writes bench/results/graph_<N>.json with wall times and
//! peak resident memory (VmHWM, reset before each phase through /proc/self/clear_refs).
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use sclabel::audit::graph::{make_conf_graph, ConfGraphOptions};
use sclabel::audit::pca::{pca, PcaOptions};
use sclabel::backend::{cpu_of, Backend, BackendRequest};
use sclabel::block_on;
use sclabel::data::matrix::CsrMatrix;
use sclabel::train::progress::{FnObserver, Progress};
use serde_json::json;

fn status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so each phase's peak is its own.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mb(kb: Option<u64>) -> Option<f64> {
    kb.map(|k| k as f64 / 1024.0)
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
}

fn blobs(n: usize, d: usize, n_blobs: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..n_blobs * d)
        .map(|_| {
            let z: f32 = StandardNormal.sample(&mut rng);
            5.0 * z
        })
        .collect();
    let mut emb = Vec::with_capacity(n * d);
    for _ in 0..n {
        let b = rng.random_range(0..n_blobs);
        for c in 0..d {
            let z: f64 = StandardNormal.sample(&mut rng);
            emb.push(centres[b * d + c] + z as f32);
        }
    }
    let conf = (0..n).map(|_| rng.random::<f32>()).collect();
    (emb, conf)
}

/// Rank-10 signal seen through ~10 % of the entries (geometric gaps between stored genes).
fn sparse_low_rank(n: usize, g: usize, density: f64, seed: u64) -> CsrMatrix {
    let mut rng = StdRng::seed_from_u64(seed);
    let rank = 10;
    let u: Vec<f32> = (0..n * rank).map(|_| StandardNormal.sample(&mut rng)).collect();
    let v: Vec<f32> = (0..rank * g).map(|_| StandardNormal.sample(&mut rng)).collect();
    let (mut indptr, mut indices, mut data) = (vec![0u64], Vec::new(), Vec::new());
    let ln_q = (1.0 - density).ln();
    for i in 0..n {
        let mut j = 0usize;
        loop {
            let gap = (rng.random::<f64>().max(1e-300).ln() / ln_q).floor() as usize;
            j += gap;
            if j >= g {
                break;
            }
            let s: f32 = (0..rank).map(|r| u[i * rank + r] * v[r * g + j] / (1.0 + r as f32)).sum();
            let z: f32 = StandardNormal.sample(&mut rng);
            indices.push(j as u32);
            data.push((s + 0.5 * z).abs() + 0.1);
            j += 1;
        }
        indptr.push(data.len() as u64);
    }
    CsrMatrix::new(n, g, indptr, indices, data).expect("valid synthetic CSR")
}

fn main() -> sclabel::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = arg(&args, "--cells").unwrap_or(100_000);
    let d = 50;
    let backend = match arg::<String>(&args, "--backend").as_deref() {
        Some("ndarray") => Backend::Ndarray,
        _ => Backend::Flex,
    };
    let block_size: Option<usize> = arg(&args, "--block");
    let device = cpu_of(backend, BackendRequest::Cpu, "bench")?.device;
    let options = ConfGraphOptions { alpha: 0.9, k: 15, block_size };
    let threads = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1);
    let profile = if cfg!(debug_assertions) { "dev (crate opt-level 1, deps 3)" } else { "release" };

    let (emb, conf) = blobs(n, d, 20, 1);
    let rss_before = mb(status_kb("VmRSS:"));
    let reset = reset_peak();
    let t = Instant::now();
    let mut last_pass = usize::MAX;
    let mut observer = FnObserver(|p: &Progress| {
        if p.epoch != last_pass || p.step == p.steps_per_epoch {
            eprintln!("  pass {} block {}/{} ({:.1} s)", p.epoch, p.step, p.steps_per_epoch, t.elapsed().as_secs_f64());
            last_pass = p.epoch;
        }
        Ok(())
    });
    let graph = block_on(make_conf_graph(&emb, d, &conf, &options, &device, &mut observer))?;
    let graph_s = t.elapsed().as_secs_f64();
    let graph_peak = mb(status_kb("VmHWM:"));
    let edges = graph.connectivities.nnz();
    println!(
        "graph: {n} cells × {d} dims, k = 15, {backend:?}: {graph_s:.1} s, peak RSS {:.0} MB (before: {:.0} MB), {edges} edges ({:.1} per cell)",
        graph_peak.unwrap_or(f64::NAN),
        rss_before.unwrap_or(f64::NAN),
        edges as f64 / n as f64
    );
    drop(graph);
    drop(emb);

    let mut pca_json = serde_json::Value::Null;
    if !args.iter().any(|a| a == "--no-pca") {
        let (pn, pg) = (arg(&args, "--pca-cells").unwrap_or(100_000usize), arg(&args, "--pca-genes").unwrap_or(2000usize));
        let x = sparse_low_rank(pn, pg, 0.1, 2);
        let rss_before = mb(status_kb("VmRSS:"));
        reset_peak();
        let t = Instant::now();
        let p = pca(&x, &PcaOptions::default())?;
        let pca_s = t.elapsed().as_secs_f64();
        let peak = mb(status_kb("VmHWM:"));
        let top: Vec<f64> = p.explained_variance_ratio.iter().take(5).copied().collect();
        println!(
            "pca: {pn} × {pg} CSR ({} stored, {:.1} %), 50 components: {pca_s:.1} s, peak RSS {:.0} MB (before: {:.0} MB); top variance ratios {top:.4?}",
            x.nnz(),
            100.0 * x.nnz() as f64 / (pn * pg) as f64,
            peak.unwrap_or(f64::NAN),
            rss_before.unwrap_or(f64::NAN)
        );
        pca_json = json!({
            "cells": pn, "genes": pg, "stored_values": x.nnz(), "n_components": 50,
            "oversampling": 10, "power_iterations": 4,
            "seconds": pca_s, "peak_rss_mb": peak, "rss_before_mb": rss_before,
            "explained_variance_ratio_top5": top,
        });
    }

    let label = if n == 100_000 { "100k".to_string() } else { n.to_string() };
    let out = json!({
        "benchmark": "trainability-aware graph (audit::graph::make_conf_graph) and CSR PCA (audit::pca::pca) on synthetic data",
        "command": format!("cargo run --features ndarray,cli --example bench_graph{}", if args.len() > 1 { format!(" -- {}", args[1..].join(" ")) } else { String::new() }),
        "profile": profile,
        "threads_available": threads,
        "graph": {
            "cells": n, "dims": d, "blobs": 20, "k": 15, "alpha": 0.9,
            "backend": format!("{backend:?}").to_lowercase(),
            "block_size": block_size.map_or_else(|| "auto".to_string(), |b| b.to_string()),
            "seconds": graph_s, "peak_rss_mb": graph_peak, "rss_before_mb": rss_before,
            "peak_reset_per_phase": reset,
            "edges": edges,
        },
        "pca": pca_json,
    });
    let path = format!("{}/bench/results/graph_{label}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap_or_default() + "\n")
        .map_err(|e| sclabel::SclabelError::InvalidOption { option: "output".into(), reason: format!("{path}: {e}") })?;
    println!("wrote {path}");
    Ok(())
}
